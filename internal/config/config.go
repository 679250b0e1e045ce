// Package config reads customstream's settings from the environment.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config holds every setting; both processes load the same one.
type Config struct {
	// Addr is where the web process listens (CUSTOMSTREAM_ADDR).
	Addr string
	// DataDir holds the database, blobs, staging and the published tree.
	DataDir string
	// RedisURL is the Redis the processes share; empty means embedded (all only).
	RedisURL string
	// PublicURL is the base URL MAAS uses to reach this server; empty means
	// the request's own host is shown on the setup page.
	PublicURL string
	// APIToken is a bearer token for /api besides those made in the portal.
	APIToken string
	// AdminPassword is the portal password; empty means generated at first
	// start and stored as a hash in the data directory.
	AdminPassword string
	// TLSCert and TLSKey, both set, make the server speak HTTPS only.
	TLSCert string
	TLSKey  string
	// MaxUploadSize caps one uploaded file, in bytes.
	MaxUploadSize int64
	// WorkerConcurrency is how many jobs one worker runs at once.
	WorkerConcurrency int
	// DownloadParallel is how many files one mirror job downloads at once.
	DownloadParallel int
	// KeepVersions is how many versions of each mirrored product are kept.
	KeepVersions int
	// UpstreamAllow, when not empty, lists the only upstream hosts allowed.
	UpstreamAllow []string
	// SyncInterval is how often sync rules run.
	SyncInterval time.Duration
	// ScrubInterval is how often every blob is re-hashed; 0 turns it off.
	ScrubInterval time.Duration
	// UpstreamKeyring is a keyring file verifying signed upstreams; empty
	// means the Ubuntu cloud image key built in.
	UpstreamKeyring string
	// LogFormat is "text" or "json"; LogLevel is debug, info, warn or error.
	LogFormat string
	LogLevel  string
	// MinFree is the free space of the data directory below which /healthz
	// fails: MinFreeBytes bytes, or (when MinFreePercent > 0) that percentage
	// of the filesystem's size (CUSTOMSTREAM_MIN_FREE).
	MinFreeBytes   int64
	MinFreePercent float64
	// AuditMaxAge and AuditMaxEntries bound the audit log: older entries,
	// and the oldest beyond the count, are dropped.
	AuditMaxAge     time.Duration
	AuditMaxEntries int

	// env is each variable's value in effect, for Env.
	env map[string]string
}

// EnvValue is one environment variable as the server read it.
type EnvValue struct {
	Name, Value, Default, Help string
	// Set is true when the environment gave a value.
	Set bool
}

// secretEnv are variables whose values are never shown.
var secretEnv = map[string]bool{"CUSTOMSTREAM_API_TOKEN": true, "CUSTOMSTREAM_ADMIN_PASSWORD": true}

// Env lists every variable with the value in effect, for the portal:
// secrets show only whether they are set, and a Redis URL hides its password.
func (c *Config) Env() []EnvValue {
	out := make([]EnvValue, 0, len(settings))
	for _, s := range settings {
		raw, set := c.env[s.env]
		v := EnvValue{Name: s.env, Default: s.def, Help: s.help, Set: set}
		if !set {
			raw = s.def
		}
		switch {
		case secretEnv[s.env] && raw != "":
			raw = "(set, not shown)"
		case s.env == "REDIS_URL" && raw != "":
			if u, err := url.Parse(raw); err == nil {
				raw = u.Redacted()
			}
		}
		v.Value = raw
		out = append(out, v)
	}
	return out
}

// MinFreeOf returns the free-space threshold in bytes for a filesystem of
// total bytes.
func (c *Config) MinFreeOf(total int64) int64 {
	if c.MinFreePercent > 0 {
		return int64(float64(total) * c.MinFreePercent / 100)
	}
	return c.MinFreeBytes
}

type setting struct {
	env  string
	def  string
	help string
	set  func(c *Config, v string) error
}

// settings is the one table of environment variables, their defaults and parsers.
var settings = []setting{
	{"CUSTOMSTREAM_ADDR", ":8000", "listen address, host:port", func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("want host:port such as :8000 or 127.0.0.1:8000")
		}
		c.Addr = v
		return nil
	}},
	{"CUSTOMSTREAM_DATA_DIR", "./data", "data directory", func(c *Config, v string) error {
		c.DataDir = v
		return nil
	}},
	{"REDIS_URL", "", "redis://host:port/db; empty starts an embedded server (customstream all only)", func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return fmt.Errorf("want redis://host:port[/db], got %q", v)
		}
		c.RedisURL = v
		return nil
	}},
	{"CUSTOMSTREAM_PUBLIC_URL", "", "URL MAAS uses to reach this server", func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("want an http:// or https:// URL, got %q", v)
		}
		c.PublicURL = strings.TrimRight(v, "/")
		return nil
	}},
	{"CUSTOMSTREAM_API_TOKEN", "", "an API bearer token besides those created in the portal (empty: none)", func(c *Config, v string) error {
		if v != "" && len(v) < 16 {
			return fmt.Errorf("must be at least 16 characters")
		}
		c.APIToken = v
		return nil
	}},
	{"CUSTOMSTREAM_ADMIN_PASSWORD", "", "portal password of user admin; empty: generated at first start and logged once", func(c *Config, v string) error {
		if v != "" && len(v) < 12 {
			return fmt.Errorf("must be at least 12 characters")
		}
		c.AdminPassword = v
		return nil
	}},
	{"CUSTOMSTREAM_TLS_CERT", "", "PEM certificate (chain) file: serve HTTPS; needs CUSTOMSTREAM_TLS_KEY", func(c *Config, v string) error {
		c.TLSCert = v
		return readable(v)
	}},
	{"CUSTOMSTREAM_TLS_KEY", "", "PEM private key file of CUSTOMSTREAM_TLS_CERT", func(c *Config, v string) error {
		c.TLSKey = v
		if (v == "") != (c.TLSCert == "") {
			return fmt.Errorf("set both CUSTOMSTREAM_TLS_CERT and CUSTOMSTREAM_TLS_KEY, or neither")
		}
		return readable(v)
	}},
	{"CUSTOMSTREAM_MAX_UPLOAD", "64GiB", "largest accepted file, e.g. 20GiB or 500MiB", func(c *Config, v string) error {
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		if n < 1024 {
			return fmt.Errorf("must be at least 1KiB")
		}
		c.MaxUploadSize = n
		return nil
	}},
	{"CUSTOMSTREAM_WORKER_CONCURRENCY", "4", "jobs a worker runs at once", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 256 {
			return fmt.Errorf("want a whole number from 1 to 256, got %q", v)
		}
		c.WorkerConcurrency = n
		return nil
	}},
	{"CUSTOMSTREAM_DOWNLOAD_PARALLEL", "4", "files one mirror job downloads at once", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			return fmt.Errorf("want a whole number from 1 to 64, got %q", v)
		}
		c.DownloadParallel = n
		return nil
	}},
	{"CUSTOMSTREAM_KEEP_VERSIONS", "2", "versions of each mirrored product to keep (0 keeps all)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a whole number, 0 or more, got %q", v)
		}
		c.KeepVersions = n
		return nil
	}},
	{"CUSTOMSTREAM_UPSTREAM_ALLOW", "", "comma-separated upstream hosts (name or name:port) allowed; empty allows any", func(c *Config, v string) error {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h == "" {
				continue
			}
			if strings.ContainsAny(h, "/ @") {
				return fmt.Errorf("want host names such as images.maas.io, got %q", h)
			}
			c.UpstreamAllow = append(c.UpstreamAllow, h)
		}
		return nil
	}},
	{"CUSTOMSTREAM_SYNC_INTERVAL", "6h", "how often sync rules mirror new upstream versions (e.g. 30m, 6h)", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute {
			return fmt.Errorf("want a duration of at least 1m, such as 6h, got %q", v)
		}
		c.SyncInterval = d.Truncate(time.Second)
		return nil
	}},
	{"CUSTOMSTREAM_SCRUB_INTERVAL", "7d", "how often a scrub re-hashes every file (e.g. 7d, 36h); 0 turns it off", func(c *Config, v string) error {
		d, err := parseDays(v)
		if err != nil || (d != 0 && d < time.Minute) {
			return fmt.Errorf("want 0 (off) or a duration of at least 1m, such as 7d or 36h, got %q", v)
		}
		c.ScrubInterval = d.Truncate(time.Second)
		return nil
	}},
	{"CUSTOMSTREAM_UPSTREAM_KEYRING", "", "keyring (armored or binary) for signed upstreams; empty: the Ubuntu cloud image key", func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		c.UpstreamKeyring = v
		return readable(v)
	}},
	{"CUSTOMSTREAM_LOG_FORMAT", "text", "text or json", func(c *Config, v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("want text or json, got %q", v)
		}
		c.LogFormat = v
		return nil
	}},
	{"CUSTOMSTREAM_LOG_LEVEL", "info", "debug, info, warn or error", func(c *Config, v string) error {
		switch v {
		case "debug", "info", "warn", "error":
			c.LogLevel = v
			return nil
		}
		return fmt.Errorf("want debug, info, warn or error, got %q", v)
	}},
	{"CUSTOMSTREAM_MIN_FREE", "1GiB", "free space of the data directory below which /healthz fails: a size (1GiB) or a percentage of the filesystem (2%)", func(c *Config, v string) error {
		if pct, ok := strings.CutSuffix(v, "%"); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
			if err != nil || f <= 0 || f >= 100 {
				return fmt.Errorf("want a percentage above 0 and below 100, such as 2%%, got %q", v)
			}
			c.MinFreePercent = f
			return nil
		}
		n, err := ParseSize(v)
		if err != nil {
			return fmt.Errorf("want a size such as 1GiB or a percentage such as 2%%, got %q", v)
		}
		c.MinFreeBytes = n
		return nil
	}},
	{"CUSTOMSTREAM_AUDIT_DAYS", "365", "days the audit log keeps an entry", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 36500 {
			return fmt.Errorf("want a whole number of days from 1 to 36500, got %q", v)
		}
		c.AuditMaxAge = time.Duration(n) * 24 * time.Hour
		return nil
	}},
	{"CUSTOMSTREAM_AUDIT_MAX_ENTRIES", "100000", "entries the audit log keeps at most; the oldest go first", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 10_000_000 {
			return fmt.Errorf("want a whole number from 100 to 10000000, got %q", v)
		}
		c.AuditMaxEntries = n
		return nil
	}},
}

// Load reads the environment through getenv (os.Getenv in production) and
// returns every problem at once, so an admin fixes them in one go.
func Load(getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := &Config{env: map[string]string{}}
	var errs []error
	for _, s := range settings {
		v := strings.TrimSpace(getenv(s.env))
		if v == "" {
			v = s.def
		} else {
			c.env[s.env] = v
		}
		if err := s.set(c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.env, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// parseDays is time.ParseDuration that also reads whole days: "7d".
func parseDays(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 3650 {
			return 0, fmt.Errorf("bad number of days %q", v)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// readable checks that a configured file can be read; empty is fine.
func readable(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	return f.Close()
}

// Help lists the environment variables with their defaults, for --help.
func Help() string {
	var b strings.Builder
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(&b, "  %-32s %s [default %s]\n", s.env, s.help, def)
	}
	return b.String()
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
}

// ParseSize reads "64GiB", "500MB", "1048576" and the like.
func ParseSize(s string) (int64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, unit := range sizeUnits {
		if strings.HasSuffix(u, unit.suffix) {
			u = strings.TrimSpace(strings.TrimSuffix(u, unit.suffix))
			mult = unit.mult
			break
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a size such as 64GiB or 500MiB, got %q", s)
	}
	return n * mult, nil
}
