// Package termprogress shows the progress of a long terminal command
// (export, import, check --download): a bar redrawn in place when the output
// is a terminal, plain lines every few seconds otherwise (a log, a pipe, CI).
package termprogress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/customstream/customstream/internal/units"
)

// Default intervals between two outputs.
const (
	TerminalInterval = 200 * time.Millisecond
	PlainInterval    = 5 * time.Second
)

// barWidth is the number of cells of the terminal bar.
const barWidth = 30

// Options set what New detects or defaults; tests set them all.
type Options struct {
	Terminal bool             // redraw one line with \r instead of printing lines
	Interval time.Duration    // least time between two outputs; 0 takes the default of the mode
	Now      func() time.Time // nil means time.Now
}

// Printer prints the progress of one task. Its methods are safe for
// concurrent use; a nil *Printer does nothing.
type Printer struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	o        Options
	start    time.Time
	last     time.Time // of the last output; zero before the first
	done     int64
	total    int64
	lineLen  int // length of the bar line drawn last, to blank it out
	finished bool
}

// IsTerminal reports whether w is a terminal (a character device).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && (fi.Mode()&os.ModeCharDevice) != 0
}

// New returns a printer for label on w, a bar when w is a terminal.
func New(w io.Writer, label string) *Printer {
	return NewWith(w, label, Options{Terminal: IsTerminal(w)})
}

// NewWith returns a printer with explicit options.
func NewWith(w io.Writer, label string, o Options) *Printer {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Interval <= 0 {
		o.Interval = PlainInterval
		if o.Terminal {
			o.Interval = TerminalInterval
		}
	}
	return &Printer{w: w, label: label, o: o, start: o.Now()}
}

// Update records done of total bytes and prints when the interval has passed
// since the last output (the first update prints at once). Its signature
// suits the progress callbacks of the domain packages.
func (p *Printer) Update(done, total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	now := p.o.Now()
	if p.finished || (!p.last.IsZero() && now.Sub(p.last) < p.o.Interval) {
		return
	}
	p.last = now
	p.print(now, false)
}

// Finish prints the final state once, ending the bar's line; a printer
// that was never updated prints nothing.
func (p *Printer) Finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished || p.last.IsZero() {
		return // ended already, or never started: nothing to end
	}
	p.finished = true
	p.print(p.o.Now(), true)
}

func (p *Printer) print(now time.Time, final bool) {
	elapsed := now.Sub(p.start)
	var rate float64
	if elapsed > 0 {
		rate = float64(p.done) / elapsed.Seconds()
	}
	percent := 100.0
	if p.total > 0 {
		percent = 100 * float64(min(p.done, p.total)) / float64(p.total)
	}
	counts := fmt.Sprintf("%s of %s", units.Bytes(p.done), units.Bytes(p.total))
	speed := units.Bytes(int64(rate)) + "/s"
	tail := "ETA " + eta(p.done, p.total, rate, elapsed)
	if final {
		tail = "in " + elapsed.Round(time.Second).String()
	}
	if !p.o.Terminal {
		fmt.Fprintf(p.w, "%s: %3.0f%% (%s), %s, %s\n", p.label, percent, counts, speed, tail)
		return
	}
	filled := int(percent / 100 * barWidth)
	bar := strings.Repeat("#", filled) + strings.Repeat("-", barWidth-filled)
	line := fmt.Sprintf("%s [%s] %3.0f%%  %s  %s  %s", p.label, bar, percent, counts, speed, tail)
	pad := max(p.lineLen-len(line), 0)
	p.lineLen = len(line)
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r%s%s%s", line, strings.Repeat(" ", pad), end)
}

// eta is the time left at rate, or "?" while it is unknown (the rate of
// the first second says little).
func eta(done, total int64, rate float64, elapsed time.Duration) string {
	switch {
	case total <= done:
		return "0s"
	case rate <= 0 || elapsed < time.Second:
		return "?"
	}
	left := time.Duration(float64(total-done) / rate * float64(time.Second))
	return left.Round(time.Second).String()
}
