package embedredis

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeysExpire(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := Start(ctx)
	require.NoError(t, err)
	defer m.Close()
	assert.Contains(t, m.Addr(), "127.0.0.1:", "loopback only")
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	require.NoError(t, rdb.Set(ctx, "k", "v", time.Second).Err())
	// Bounded wait, not a timing assertion: the key must go at some point.
	require.Eventually(t, func() bool {
		return rdb.Exists(ctx, "k").Val() == 0
	}, 10*time.Second, 100*time.Millisecond, "a key with a TTL expires")
}
