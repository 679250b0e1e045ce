package termprogress

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clock is a fake time that only moves when told.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }
func lines(s string) []string            { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
func printer(buf *bytes.Buffer, c *clock, terminal bool) *Printer {
	return NewWith(buf, "export", Options{Terminal: terminal, Interval: 5 * time.Second, Now: c.now})
}

func TestPlainLinesAtIntervals(t *testing.T) {
	var buf bytes.Buffer
	c := newClock()
	p := printer(&buf, c, false)
	p.Update(0, 4<<20) // the first update prints
	c.advance(time.Second)
	p.Update(1<<20, 4<<20) // within the interval: nothing
	c.advance(4 * time.Second)
	p.Update(2<<20, 4<<20) // 5 s after the first line
	c.advance(3 * time.Second)
	p.Update(4<<20, 4<<20)
	p.Finish()
	p.Finish() // once only
	p.Update(4<<20, 4<<20)

	got := lines(buf.String())
	require.Len(t, got, 3, buf.String())
	assert.Equal(t, "export:   0% (0 B of 4.0 MiB), 0 B/s, ETA ?", got[0])
	assert.Equal(t, "export:  50% (2.0 MiB of 4.0 MiB), 409.6 KiB/s, ETA 5s", got[1])
	assert.Equal(t, "export: 100% (4.0 MiB of 4.0 MiB), 512.0 KiB/s, in 8s", got[2])
	assert.NotContains(t, buf.String(), "\r", "no carriage return outside a terminal")
}

func TestTerminalBarRedrawsOneLine(t *testing.T) {
	var buf bytes.Buffer
	c := newClock()
	p := printer(&buf, c, true)
	p.Update(0, 1000)
	c.advance(5 * time.Second)
	p.Update(500, 1000)
	c.advance(5 * time.Second)
	p.Update(1000, 1000)
	p.Finish()

	out := buf.String()
	assert.Equal(t, 1, strings.Count(out, "\n"), "one line, ended once: %q", out)
	assert.True(t, strings.HasSuffix(out, "\n"))
	draws := strings.Split(strings.TrimPrefix(strings.TrimSuffix(out, "\n"), "\r"), "\r")
	require.Len(t, draws, 4, "%q", out)
	assert.Contains(t, draws[0], "[------------------------------]   0%")
	assert.Contains(t, draws[1], "[###############---------------]  50%")
	assert.Contains(t, draws[3], "[##############################] 100%")
	assert.Contains(t, draws[3], "in 10s")
	for i := 1; i < len(draws); i++ {
		assert.GreaterOrEqual(t, len(draws[i]), len(strings.TrimRight(draws[i-1], " ")), "a redraw blanks out the longer line before it")
	}
}

func TestUnknownTotalAndNilPrinter(t *testing.T) {
	var buf bytes.Buffer
	p := printer(&buf, newClock(), false)
	p.Update(0, 0)
	assert.Equal(t, "export: 100% (0 B of 0 B), 0 B/s, ETA 0s\n", buf.String())
	buf.Reset()
	unused := printer(&buf, newClock(), true)
	unused.Finish()
	assert.Empty(t, buf.String(), "a printer never updated prints nothing")
	var nilPrinter *Printer
	assert.NotPanics(t, func() { nilPrinter.Update(1, 2); nilPrinter.Finish() })
}

func TestIsTerminal(t *testing.T) {
	assert.False(t, IsTerminal(&bytes.Buffer{}), "a buffer")
	f, err := os.CreateTemp(t.TempDir(), "out")
	require.NoError(t, err)
	defer f.Close()
	assert.False(t, IsTerminal(f), "a regular file")
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer null.Close()
	assert.True(t, IsTerminal(null), "/dev/null is a character device, as a terminal is")
}
