package metrics

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/customstream/customstream/internal/store"
)

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Source is what a scrape reads besides the counters.
type Source struct {
	Version string
	// DataDir is measured for free and total space.
	DataDir string
	// Jobs lists the job records (store.ListJobs); JobTypes are the types
	// shown (at 0) before any job of theirs exists.
	Jobs     func() ([]store.Job, error)
	JobTypes []string
	// Redis holds the Shared counters; nil shows this process's own counts.
	Redis redis.Cmdable
	Log   *slog.Logger
}

// jobStates are every state a job record can be in, so each series exists
// (at 0) before its first job.
var jobStates = []string{store.JobQueued, store.JobRunning, store.JobSucceeded, store.JobFailed, store.JobCanceled}

// Write writes every metric to w. A source that fails (Redis away, a full
// disk's statfs) leaves its metrics out and is logged; the rest is written.
func Write(ctx context.Context, w io.Writer, src Source) error {
	bw := bufio.NewWriter(w)
	e := &encoder{w: bw}

	e.family("customstream_build_info", "gauge", "Always 1; the labels say which build runs.")
	e.sample("customstream_build_info", labels{"version", src.Version, "goversion", runtime.Version()}, 1)

	if src.Jobs != nil {
		jobs, err := src.Jobs()
		if err != nil {
			src.logWarn("metrics: unable to list jobs", err)
		} else {
			e.family("customstream_jobs", "gauge", "Job records by type and state.")
			counts := map[[2]string]int{}
			types := slices.Clone(src.JobTypes)
			for _, j := range jobs {
				counts[[2]string{j.Type, j.State}]++
				if !slices.Contains(types, j.Type) {
					types = append(types, j.Type)
				}
			}
			slices.Sort(types)
			for _, t := range types {
				for _, s := range jobStates {
					e.sample("customstream_jobs", labels{"type", t, "state", s}, float64(counts[[2]string{t, s}]))
				}
			}
		}
	}

	downloaded := DownloadedBytes.pending.Load()
	var err error
	if src.Redis != nil {
		downloaded, err = DownloadedBytes.Total(ctx, src.Redis)
	}
	if err != nil {
		src.logWarn("metrics: unable to read the shared counters", err)
	} else {
		e.counter("customstream_mirror_downloaded_bytes_total", "Bytes mirror downloads received from upstreams, by every worker.", float64(downloaded))
	}
	e.counter("customstream_uploaded_bytes_total", "Bytes of uploaded image files accepted.", float64(UploadedBytes.Value()))
	e.counter("customstream_served_bytes_total", "Bytes of stream documents and image files sent to clients.", float64(ServedBytes.Value()))
	e.counter("customstream_upstream_fetches_total", "Upstream catalog fetches.", float64(UpstreamFetches.Value()))
	e.counter("customstream_upstream_fetch_errors_total", "Upstream catalog fetches that failed.", float64(UpstreamErrors.Value()))

	h := PublishSeconds.snapshot()
	e.family("customstream_publish_last_duration_seconds", "gauge", "How long the last publish of the stream took.")
	e.sample("customstream_publish_last_duration_seconds", nil, h.last)
	e.family("customstream_publish_duration_seconds", "histogram", "How long publishes of the stream took.")
	for i, b := range h.bounds {
		e.sample("customstream_publish_duration_seconds_bucket", labels{"le", formatFloat(b)}, float64(h.cumulative[i]))
	}
	e.sample("customstream_publish_duration_seconds_bucket", labels{"le", "+Inf"}, float64(h.cumulative[len(h.bounds)]))
	e.sample("customstream_publish_duration_seconds_sum", nil, h.sum)
	e.sample("customstream_publish_duration_seconds_count", nil, float64(h.count))

	if src.DataDir != "" {
		d, err := DiskOf(src.DataDir)
		if err != nil {
			src.logWarn("metrics: unable to measure the data directory", err)
		} else {
			e.family("customstream_data_dir_free_bytes", "gauge", "Bytes free (for this process) on the data directory's filesystem.")
			e.sample("customstream_data_dir_free_bytes", nil, float64(d.Free))
			e.family("customstream_data_dir_total_bytes", "gauge", "Size in bytes of the data directory's filesystem.")
			e.sample("customstream_data_dir_total_bytes", nil, float64(d.Total))
		}
	}
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

func (s Source) logWarn(msg string, err error) {
	if s.Log != nil {
		s.Log.Warn(msg, slog.Any("error", err))
	}
}

// labels are name, value pairs in order.
type labels []string

// encoder writes the text format, keeping the first write error.
type encoder struct {
	w   *bufio.Writer
	err error
}

func (e *encoder) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

func (e *encoder) family(name, typ, help string) {
	e.printf("# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
}

func (e *encoder) counter(name, help string, v float64) {
	e.family(name, "counter", help)
	e.sample(name, nil, v)
}

func (e *encoder) sample(name string, l labels, v float64) {
	var b strings.Builder
	b.WriteString(name)
	if len(l) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(l); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(l[i])
			b.WriteString(`="`)
			b.WriteString(escapeLabel(l[i+1]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	e.printf("%s %s\n", b.String(), formatFloat(v))
}

// formatFloat writes integers without exponent and the special values as
// Prometheus spells them.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }
