package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/catalog"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/upstream"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

func TestSyncRulesMirrorNewVersions(t *testing.T) {
	e := newEnv(t)
	tree, err := upstreamtest.Generate(t.TempDir(), upstreamtest.DefaultOptions())
	require.NoError(t, err)
	srv := upstreamtest.NewServer(t, tree.Dir)
	url := srv.URL + "/streams/v1/index.json"
	h := &SyncHandler{Store: e.Store, Catalog: catalog.New(e.Store, upstream.New(upstream.Options{}), e.Log),
		Images: e.Images, Queue: e.Queue, Log: e.Log}

	var jammyAMD64 []string
	for id, p := range tree.Products[upstreamtest.BootContentID].Products {
		if p.Fields["arch"] == "amd64" && strings.Contains(p.Fields["release"], "jammy") {
			jammyAMD64 = append(jammyAMD64, id)
		}
	}
	require.NotEmpty(t, jammyAMD64)
	require.NoError(t, e.Store.PutSyncRule(&store.SyncRule{ID: "r1", URL: url, Filters: []string{"arch=amd64", "release~jammy"},
		ProductIDs: []string{"com.example:gone"}, CreatedAt: time.Now()}))

	require.NoError(t, h.ProcessTask(context.Background(), NewSyncTask()))
	imgs, err := e.Store.ListImages()
	require.NoError(t, err)
	var got []string
	for _, img := range imgs {
		got = append(got, img.ProductID)
		assert.Equal(t, store.StatusDownloading, img.Status)
		_, err := e.Inspector.GetTaskInfo(QueueMirror, img.JobID)
		assert.NoError(t, err, "the job is queued")
	}
	assert.ElementsMatch(t, jammyAMD64, got)
	rules, err := e.Store.ListSyncRules()
	require.NoError(t, err)
	assert.Equal(t, len(jammyAMD64), rules[0].LastStarted)
	assert.False(t, rules[0].LastRun.IsZero())
	assert.Contains(t, rules[0].LastError, "com.example:gone", "a product the upstream dropped is reported, not deleted")

	// Nothing new upstream: nothing new here.
	require.NoError(t, h.ProcessTask(context.Background(), NewSyncTask()))
	imgs, err = e.Store.ListImages()
	require.NoError(t, err)
	assert.Len(t, imgs, len(jammyAMD64))

	// A new upstream version is picked up.
	require.NoError(t, tree.AddVersion("20251001"))
	require.NoError(t, h.ProcessTask(context.Background(), NewSyncTask()))
	imgs, err = e.Store.ListImages()
	require.NoError(t, err)
	newer := 0
	for _, img := range imgs {
		if img.VersionName == "20251001" {
			newer++
		}
	}
	assert.Equal(t, len(jammyAMD64), newer)
}

func TestSyncTaskIsUnique(t *testing.T) {
	e := newEnv(t)
	_, err := e.Queue.Enqueue(NewSyncTask())
	require.NoError(t, err)
	_, err = e.Queue.Enqueue(NewSyncTask())
	assert.ErrorIs(t, err, asynq.ErrDuplicateTask)
}

// TestSyncRunIsRecordedAsAJob: each run with rules shows on the Jobs page,
// failed when a rule failed; a run without rules records nothing.
func TestSyncRunIsRecordedAsAJob(t *testing.T) {
	e := newEnv(t)
	h := &SyncHandler{Store: e.Store, Catalog: catalog.New(e.Store, upstream.New(upstream.Options{}), e.Log),
		Images: e.Images, Queue: e.Queue, Log: e.Log}
	require.NoError(t, h.ProcessTask(context.Background(), NewSyncTask()))
	list, err := e.Store.ListJobs()
	require.NoError(t, err)
	assert.Empty(t, list, "no rule, no run to show")

	require.NoError(t, e.Store.PutSyncRule(&store.SyncRule{ID: "r1", URL: "http://127.0.0.1:1/streams/v1/index.json",
		Filters: []string{"arch=amd64"}, CreatedAt: time.Now()}))
	require.NoError(t, h.ProcessTask(context.Background(), NewSyncTask()))
	list, err = e.Store.ListJobs()
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, TypeSyncUpstreams, list[0].Type)
	assert.Equal(t, "Sync 1 rule", list[0].Title)
	assert.Equal(t, store.JobFailed, list[0].State, "the upstream cannot be reached")
	assert.Contains(t, list[0].Error, "http://127.0.0.1:1/streams/v1/index.json")
	assert.False(t, list[0].FinishedAt.IsZero())
}
