// Package bench measures customstream beside the tools an administrator
// would use instead (nginx, curl, sha256sum, a minimal Go upload handler) in
// one run on one machine, and reports each target of issue 7 with its ratio.
// It runs the real binary; `make bench` drives it, `make test` never does.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/customstream/customstream/internal/units"
)

// Sizes are the workloads; Defaults are the issue's.
type Sizes struct {
	Upload          int64 // bytes of the multipart upload and the hash job
	Get             int64 // bytes of the single large GET
	Mirror          int64 // bytes of the 12 mirrored items
	DedupItem       int64 // squashfs size of the dedup tree
	CatalogProducts int   // synthetic upstream products
	PublishVersions int   // local versions published
	WrkSeconds      int   // duration of each wrk run
}

// Defaults returns the sizes.
func Defaults() Sizes {
	return Sizes{Upload: 4 << 30, Get: 1 << 30, Mirror: 1 << 30, DedupItem: 64 << 20, CatalogProducts: 20000,
		PublishVersions: 5000, WrkSeconds: 5}
}

// Quick returns sizes for a run of a minute or two: every row, smaller numbers.
func Quick() Sizes {
	return Sizes{Upload: 256 << 20, Get: 128 << 20, Mirror: 128 << 20, DedupItem: 8 << 20, CatalogProducts: 20000,
		PublishVersions: 5000, WrkSeconds: 2}
}

// Options configure a run.
type Options struct {
	Sizes Sizes
	// Bin is the customstream binary to measure.
	Bin string
	// Work is a scratch directory, removed by the caller.
	Work string
	// Log receives progress lines.
	Log io.Writer
	// Only runs the sections whose names contain one of these (empty: all).
	Only []string
}

// Row is one line of the result table.
type Row struct {
	What    string // the row
	Measure string
	Ours    string // customstream's figure
	Ref     string // the reference figure (a tool, or the target itself)
	Ratio   float64
	Target  string // e.g. "≥ 0.9×"
	Pass    bool
	Note    string
}

// run is the state of one benchmark run.
type run struct {
	Options
	rows []Row
}

// section is one group of rows that shares set-up.
type section struct {
	name string
	fn   func(r *run, ctx context.Context) error
}

// Run measures every section and returns the rows; a section that fails
// adds a MISS row saying why, and the others still run.
func Run(ctx context.Context, o Options) ([]Row, error) {
	r := &run{Options: o}
	sections := []section{
		{"upload", (*run).uploadAndHash},
		{"serving", (*run).serving},
		{"mirror", (*run).mirror},
		{"catalog", (*run).catalogAndIdle},
		{"publish", (*run).publish},
	}
	for _, s := range sections {
		if !r.selected(s.name) {
			continue
		}
		start := time.Now()
		r.logf("== %s", s.name)
		if err := s.fn(r, ctx); err != nil {
			r.logf("%s failed: %v", s.name, err)
			r.rows = append(r.rows, Row{What: s.name, Measure: "the section did not finish", Note: err.Error()})
		}
		r.logf("== %s took %s", s.name, time.Since(start).Round(100*time.Millisecond))
		if ctx.Err() != nil {
			return r.rows, ctx.Err()
		}
	}
	return r.rows, nil
}

func (r *run) selected(name string) bool {
	if len(r.Only) == 0 {
		return true
	}
	for _, o := range r.Only {
		if strings.Contains(name, o) {
			return true
		}
	}
	return false
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (r *run) add(row Row) {
	r.logf("%s / %s: %s vs %s = %.2f (%s) %s", row.What, row.Measure, row.Ours, row.Ref, row.Ratio, row.Target, verdict(row.Pass))
	r.rows = append(r.rows, row)
}

// atLeast is a row whose ratio must reach min.
func atLeast(what, measure, ours, ref string, ratio, min float64) Row {
	return Row{What: what, Measure: measure, Ours: ours, Ref: ref, Ratio: ratio, Target: fmt.Sprintf("≥ %g×", min), Pass: ratio >= min}
}

// atMost is a row whose ratio must not exceed max.
func atMost(what, measure, ours, ref string, ratio, max float64) Row {
	return Row{What: what, Measure: measure, Ours: ours, Ref: ref, Ratio: ratio, Target: fmt.Sprintf("≤ %g×", max), Pass: ratio <= max}
}

func verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "MISS"
}

// Table renders rows as a markdown table, ready for docs/BENCHMARKS.md.
func Table(rows []Row) string {
	var b strings.Builder
	b.WriteString("| what | measure | customstream | reference | ratio | target | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, row := range rows {
		ratio := "–"
		if row.Target != "" {
			ratio = fmt.Sprintf("%.2f×", row.Ratio)
		}
		result := verdict(row.Pass)
		if row.Note != "" {
			result += " (" + row.Note + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", row.What, row.Measure, row.Ours, row.Ref, ratio, row.Target, result)
	}
	return b.String()
}

// Machine describes where the numbers come from, for the record.
func Machine(ctx context.Context, dir string) string {
	out := func(name string, args ...string) string {
		b, err := exec.CommandContext(ctx, name, args...).Output()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(b))
	}
	cpu := "?"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if kb, err := meminfo("MemTotal"); err == nil {
		mem = units.Bytes(kb << 10)
	}
	fs := out("df", "-h", "--output=source,fstype,size,avail", dir)
	if lines := strings.Split(fs, "\n"); len(lines) > 1 {
		fs = strings.Join(strings.Fields(lines[len(lines)-1]), " ")
	}
	return fmt.Sprintf("- CPU: %s, nproc %s\n- memory: %s\n- disk (work dir): %s\n- kernel: %s\n- Go: %s\n- load average at the end: %s\n",
		cpu, out("nproc"), mem, fs, out("uname", "-r"), runtime.Version(), loadavg())
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func meminfo(key string) (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/meminfo", key)
}

func mbps(bytes int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MB/s", float64(bytes)/d.Seconds()/1e6)
}

func secs(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// dir makes a directory under the work directory.
func (r *run) dir(name string) (string, error) {
	d := filepath.Join(r.Work, name)
	return d, os.MkdirAll(d, 0o755)
}
