// Package units formats sizes for people.
package units

import (
	"fmt"
	"strconv"
	"time"
)

// Bytes renders a size in binary units: 1.5 GiB, 320.0 KiB, 12 B.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Duration returns d rounded for people: "45s", "3m 20s", "2h 5m".
func Duration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// Ago says how long ago something happened d before now, for people:
// "just now", "5 minutes ago", "3 hours ago", "12 days ago". It rounds
// down, as people do about the past.
func Ago(d time.Duration) string {
	if d < time.Minute {
		return "just now"
	}
	return span(d, false) + " ago"
}

// In says how soon something happens d from now: "in 5 minutes", "in 7
// days". It rounds to the nearest unit: a week less a second is "7 days".
func In(d time.Duration) string {
	if d < time.Minute {
		return "in under a minute"
	}
	return "in " + span(d, true)
}

// span is a duration of at least a minute in its largest unit.
func span(d time.Duration, nearest bool) string {
	unit, name := 24*time.Hour, "day"
	switch {
	case d < time.Hour:
		unit, name = time.Minute, "minute"
	case d < 24*time.Hour:
		unit, name = time.Hour, "hour"
	}
	if nearest {
		d += unit / 2
	}
	n := int(d / unit)
	if n == 1 {
		return "1 " + name
	}
	return fmt.Sprintf("%d %ss", n, name)
}

// Count returns n with thousands separators: "100,000".
func Count(n int) string {
	s := strconv.Itoa(n)
	start := 0
	if n < 0 {
		start = 1
	}
	for i := len(s) - 3; i > start; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
