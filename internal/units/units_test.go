package units

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBytes(t *testing.T) {
	tests := map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB", 3 << 40: "3.0 TiB"}
	for in, want := range tests {
		assert.Equal(t, want, Bytes(in), in)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {1499 * time.Millisecond, "1s"}, {59 * time.Second, "59s"},
		{200 * time.Second, "3m 20s"}, {2*time.Hour + 5*time.Minute + 40*time.Second, "2h 05m"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, Duration(tt.d))
		})
	}
}

func TestAgo(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "just now"}, {59 * time.Second, "just now"}, {time.Minute, "1 minute ago"}, {119 * time.Minute, "1 hour ago"},
		{59 * time.Minute, "59 minutes ago"}, {23 * time.Hour, "23 hours ago"}, {25 * time.Hour, "1 day ago"}, {400 * 24 * time.Hour, "400 days ago"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, Ago(tt.d))
		})
	}
}

func TestIn(t *testing.T) {
	tests := map[time.Duration]string{-time.Second: "in under a minute", 30 * time.Second: "in under a minute",
		time.Minute: "in 1 minute", 80 * time.Minute: "in 1 hour", 90 * time.Minute: "in 2 hours",
		7*24*time.Hour - time.Second: "in 7 days", 6*24*time.Hour + 11*time.Hour: "in 6 days"}
	for in, want := range tests {
		assert.Equal(t, want, In(in), in)
	}
}

func TestCount(t *testing.T) {
	tests := map[int]string{0: "0", 999: "999", 1000: "1,000", 100000: "100,000", 1234567: "1,234,567", -1000: "-1,000", -999: "-999"}
	for in, want := range tests {
		assert.Equal(t, want, Count(in), in)
	}
}
