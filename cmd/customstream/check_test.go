package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRunCommandsCheckUsage(t *testing.T) {
	for _, args := range [][]string{{"check"}, {"check", "--download"}, {"check", "http://a/", "http://b/"}, {"check", "--nope", "http://a/"}} {
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		assert.Equal(t, 2, code, "%v: %s", args, stderr.String())
		assert.Contains(t, stderr.String(), "customstream check URL", args)
	}
}
