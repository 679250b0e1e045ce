package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(envOf(nil))
	require.NoError(t, err)
	assert.Equal(t, ":8000", c.Addr)
	assert.Equal(t, "./data", c.DataDir)
	assert.Equal(t, "", c.RedisURL)
	assert.Equal(t, int64(64<<30), c.MaxUploadSize)
	assert.Equal(t, 4, c.WorkerConcurrency)
	assert.Equal(t, "text", c.LogFormat)
	assert.Equal(t, 365*24*time.Hour, c.AuditMaxAge)
	assert.Equal(t, 100_000, c.AuditMaxEntries)
}

func TestLoadValues(t *testing.T) {
	c, err := Load(envOf(map[string]string{
		"CUSTOMSTREAM_ADDR":              "127.0.0.1:9000",
		"REDIS_URL":                      "redis://127.0.0.1:6379/2",
		"CUSTOMSTREAM_PUBLIC_URL":        "http://mirror.example:8000/",
		"CUSTOMSTREAM_MAX_UPLOAD":        "500MiB",
		"CUSTOMSTREAM_AUDIT_DAYS":        "90",
		"CUSTOMSTREAM_AUDIT_MAX_ENTRIES": "5000",
	}))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9000", c.Addr)
	assert.Equal(t, "redis://127.0.0.1:6379/2", c.RedisURL)
	assert.Equal(t, "http://mirror.example:8000", c.PublicURL)
	assert.Equal(t, int64(500<<20), c.MaxUploadSize)
	assert.Equal(t, 90*24*time.Hour, c.AuditMaxAge)
	assert.Equal(t, 5000, c.AuditMaxEntries)
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, env, value, want string
	}{
		{"addr", "CUSTOMSTREAM_ADDR", "8000", "CUSTOMSTREAM_ADDR: want host:port"},
		{"redis scheme", "REDIS_URL", "http://x:1", "REDIS_URL: want redis://"},
		{"public url", "CUSTOMSTREAM_PUBLIC_URL", "mirror.example", "CUSTOMSTREAM_PUBLIC_URL: want an http://"},
		{"short token", "CUSTOMSTREAM_API_TOKEN", "abc", "CUSTOMSTREAM_API_TOKEN: must be at least 16"},
		{"max upload", "CUSTOMSTREAM_MAX_UPLOAD", "lots", "CUSTOMSTREAM_MAX_UPLOAD: want a size"},
		{"concurrency", "CUSTOMSTREAM_WORKER_CONCURRENCY", "0", "CUSTOMSTREAM_WORKER_CONCURRENCY: want a whole number"},
		{"log format", "CUSTOMSTREAM_LOG_FORMAT", "xml", "CUSTOMSTREAM_LOG_FORMAT: want text or json"},
		{"allow list", "CUSTOMSTREAM_UPSTREAM_ALLOW", "images.maas.io,http://x/", "CUSTOMSTREAM_UPSTREAM_ALLOW: want host names"},
		{"sync interval", "CUSTOMSTREAM_SYNC_INTERVAL", "10s", "CUSTOMSTREAM_SYNC_INTERVAL: want a duration of at least 1m"},
		{"scrub interval short", "CUSTOMSTREAM_SCRUB_INTERVAL", "10s", "CUSTOMSTREAM_SCRUB_INTERVAL: want 0 (off) or a duration of at least 1m"},
		{"scrub interval days", "CUSTOMSTREAM_SCRUB_INTERVAL", "1.5d", "CUSTOMSTREAM_SCRUB_INTERVAL: want 0 (off)"},
		{"scrub interval negative", "CUSTOMSTREAM_SCRUB_INTERVAL", "-7d", "CUSTOMSTREAM_SCRUB_INTERVAL: want 0 (off)"},
		{"audit days", "CUSTOMSTREAM_AUDIT_DAYS", "0", "CUSTOMSTREAM_AUDIT_DAYS: want a whole number of days"},
		{"audit entries", "CUSTOMSTREAM_AUDIT_MAX_ENTRIES", "lots", "CUSTOMSTREAM_AUDIT_MAX_ENTRIES: want a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(envOf(map[string]string{tt.env: tt.value}))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestScrubInterval(t *testing.T) {
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 7 * 24 * time.Hour},
		{"0", 0},
		{"1d", 24 * time.Hour},
		{"36h", 36 * time.Hour},
		{"90m", 90 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, err := Load(envOf(map[string]string{"CUSTOMSTREAM_SCRUB_INTERVAL": tt.value}))
			require.NoError(t, err)
			assert.Equal(t, tt.want, c.ScrubInterval)
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	_, err := Load(envOf(map[string]string{"CUSTOMSTREAM_ADDR": "x", "CUSTOMSTREAM_LOG_LEVEL": "loud"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CUSTOMSTREAM_ADDR")
	assert.Contains(t, err.Error(), "CUSTOMSTREAM_LOG_LEVEL")
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1024", 1024, true},
		{"64GiB", 64 << 30, true},
		{"2gb", 2e9, true},
		{"10M", 10 << 20, true},
		{"-1", 0, false},
		{"GiB", 0, false},
		{"99999999999TiB", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if !tt.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestMinFree(t *testing.T) {
	tests := []struct {
		value     string
		total     int64
		want      int64
		wantError string
	}{
		{"", 1 << 40, 1 << 30, ""},
		{"500MiB", 1 << 40, 500 << 20, ""},
		{"2%", 100 << 30, 2 << 30, ""},
		{" 0.5 %", 1000, 5, ""},
		{"0%", 0, 0, "want a percentage above 0"},
		{"100%", 0, 0, "want a percentage above 0"},
		{"lots", 0, 0, "CUSTOMSTREAM_MIN_FREE: want a size such as 1GiB or a percentage"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, err := Load(envOf(map[string]string{"CUSTOMSTREAM_MIN_FREE": tt.value}))
			if tt.wantError != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantError)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, c.MinFreeOf(tt.total))
		})
	}
}

func TestEnvHidesSecrets(t *testing.T) {
	c, err := Load(envOf(map[string]string{
		"REDIS_URL":                   "redis://user:hunter2@127.0.0.1:6379/0",
		"CUSTOMSTREAM_API_TOKEN":      "a-long-secret-token-value",
		"CUSTOMSTREAM_ADMIN_PASSWORD": "correct horse battery",
		"CUSTOMSTREAM_SYNC_INTERVAL":  "30m",
	}))
	require.NoError(t, err)
	got := map[string]EnvValue{}
	for _, v := range c.Env() {
		got[v.Name] = v
		assert.NotContains(t, v.Value, "hunter2", v.Name)
		assert.NotContains(t, v.Value, "secret-token", v.Name)
		assert.NotContains(t, v.Value, "horse", v.Name)
	}
	assert.Len(t, got, len(settings), "every variable is listed")
	assert.Equal(t, EnvValue{Name: "CUSTOMSTREAM_SYNC_INTERVAL", Value: "30m", Default: "6h", Help: got["CUSTOMSTREAM_SYNC_INTERVAL"].Help, Set: true},
		got["CUSTOMSTREAM_SYNC_INTERVAL"])
	assert.Equal(t, "(set, not shown)", got["CUSTOMSTREAM_API_TOKEN"].Value)
	assert.Equal(t, "redis://user:xxxxx@127.0.0.1:6379/0", got["REDIS_URL"].Value)
	assert.Equal(t, ":8000", got["CUSTOMSTREAM_ADDR"].Value, "unset variables show their default")
	assert.False(t, got["CUSTOMSTREAM_ADDR"].Set)
	assert.Equal(t, "", got["CUSTOMSTREAM_TLS_CERT"].Value)
}
