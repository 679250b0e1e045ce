package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRunCommands(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		code     int
		inStdout string
		inStderr string
	}{
		{"version", []string{"version"}, nil, 0, "customstream dev", ""},
		{"help", []string{"--help"}, nil, 0, "CUSTOMSTREAM_DATA_DIR", ""},
		{"no command", nil, nil, 2, "", "Usage:"},
		{"unknown command", []string{"serve"}, nil, 2, "", `unknown command "serve"`},
		{"bad configuration", []string{"web"}, map[string]string{"CUSTOMSTREAM_ADDR": "nowhere", "REDIS_URL": "http://x"}, 2, "",
			"CUSTOMSTREAM_ADDR: want host:port"},
		{"web needs redis", []string{"web"}, map[string]string{"REDIS_URL": ""}, 1, "", "REDIS_URL is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			t.Setenv("CUSTOMSTREAM_DATA_DIR", t.TempDir())
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			assert.Equal(t, tt.code, code, stderr.String())
			assert.Contains(t, stdout.String(), tt.inStdout)
			assert.Contains(t, stderr.String(), tt.inStderr)
		})
	}
}
