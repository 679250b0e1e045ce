// Package embedredis runs the Redis-compatible server "customstream all"
// embeds when REDIS_URL is empty, so a first run needs nothing installed.
package embedredis

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Start starts miniredis on loopback; the caller closes it. Its clock only
// moves when told, so a goroutine (until ctx ends) advances it and keys
// with a TTL expire.
func Start(ctx context.Context) (*miniredis.Miniredis, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				m.SetTime(now)
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return m, nil
}
