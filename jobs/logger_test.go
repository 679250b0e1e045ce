package jobs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// asynq's messages come out in the process's log format, with their level,
// tagged as asynq's.
func TestLoggerWritesThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	l := Logger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Debug("dequeue", " ", 1)
	l.Info("started")
	l.Warn("lease expired")
	l.Error("redis down")

	want := []struct{ level, msg string }{{"DEBUG", "dequeue 1"}, {"INFO", "started"}, {"WARN", "lease expired"}, {"ERROR", "redis down"}}
	sc := bufio.NewScanner(&buf)
	var got []struct{ level, msg string }
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line), "not JSON: %s", sc.Text())
		assert.Equal(t, "asynq", line["component"])
		got = append(got, struct{ level, msg string }{line["level"].(string), line["msg"].(string)})
	}
	assert.Equal(t, want, got)
}
