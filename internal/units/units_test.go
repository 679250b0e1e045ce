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

func TestCoarse(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0 s"}, {59 * time.Second, "59 s"}, {-90 * time.Second, "1 min"}, {59 * time.Minute, "59 min"},
		{5*time.Hour + 59*time.Minute, "5 h"}, {47 * time.Hour, "47 h"}, {72 * time.Hour, "3 days"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Coarse(tt.in), tt.in)
	}
}
