// Package metricstest reads the Prometheus text exposition format back, so
// tests check what a scraper would see.
package metricstest

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Exposition is a parsed scrape: Types maps each metric family to its type,
// Samples each sample ("name" or `name{a="b",c="d"}` as written) to its value.
type Exposition struct {
	Types   map[string]string
	Samples map[string]float64
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
	helpLine   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$`)
)

// Parse reads an exposition strictly: every line a HELP, TYPE or sample;
// a family typed once, before its samples; a sample named only once; every
// sample of a typed family.
func Parse(r io.Reader) (*Exposition, error) {
	x := &Exposition{Types: map[string]string{}, Samples: map[string]float64{}}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if m := typeLine.FindStringSubmatch(line); m != nil {
			if _, dup := x.Types[m[1]]; dup {
				return nil, fmt.Errorf("line %d: %s typed twice", n, m[1])
			}
			x.Types[m[1]] = m[2]
			continue
		}
		if helpLine.MatchString(line) {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %d: not in the text format: %q", n, line)
		}
		if family(x.Types, m[1]) == "" {
			return nil, fmt.Errorf("line %d: sample %s has no TYPE before it", n, m[1])
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value %q: %w", n, m[3], err)
		}
		key := m[1] + m[2]
		if _, dup := x.Samples[key]; dup {
			return nil, fmt.Errorf("line %d: sample %s twice", n, key)
		}
		x.Samples[key] = v
	}
	return x, sc.Err()
}

// family returns the typed family a sample name belongs to.
func family(types map[string]string, name string) string {
	if _, ok := types[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if t := types[base]; t == "histogram" || t == "summary" {
				return base
			}
		}
	}
	return ""
}

// Value returns a sample's value and whether it is there.
func (x *Exposition) Value(key string) (float64, bool) {
	v, ok := x.Samples[key]
	return v, ok
}
