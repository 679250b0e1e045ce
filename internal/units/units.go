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
// "just now", "5 minutes ago", "3 hours ago", "12 days ago".
func Ago(d time.Duration) string {
	if d < time.Minute {
		return "just now"
	}
	return span(d) + " ago"
}

// In says how soon something happens d from now: "in 5 minutes".
func In(d time.Duration) string {
	if d < time.Minute {
		return "in under a minute"
	}
	return "in " + span(d)
}

// span is a positive duration of at least a minute in its largest unit.
func span(d time.Duration) string {
	n, unit := int(d/(24*time.Hour)), "day"
	switch {
	case d < time.Hour:
		n, unit = int(d/time.Minute), "minute"
	case d < 24*time.Hour:
		n, unit = int(d/time.Hour), "hour"
	}
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
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
