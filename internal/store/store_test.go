package store

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "customstream.db"), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func newImage(id, product, version string) (*Image, *Job) {
	img := &Image{ID: id, ProductID: product, VersionName: version, Status: StatusHashing, JobID: "job-" + id,
		Items: []Item{{Name: "root-tgz", Size: 10}, {Name: "manifest", Size: 5}}}
	job := &Job{ID: "job-" + id, Type: "image:hash", ImageID: id, State: JobQueued, CreatedAt: time.Now()}
	return img, job
}

func TestOpenLockedGivesClearError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customstream.db")
	s, err := Open(path, time.Second)
	require.NoError(t, err)
	defer s.Close()
	_, err = Open(path, 100*time.Millisecond)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrLocked)
	assert.Contains(t, err.Error(), "another customstream")
}

func TestCreateImageRefusesDuplicateVersion(t *testing.T) {
	s := openTemp(t)
	img, job := newImage("a", "p1", "20260101.01")
	require.NoError(t, s.CreateImage(img, job))
	dup, dupJob := newImage("b", "p1", "20260101.01")
	assert.ErrorIs(t, s.CreateImage(dup, dupJob), ErrConflict)
	other, otherJob := newImage("c", "p1", "20260101.02")
	require.NoError(t, s.CreateImage(other, otherJob))

	imgs, err := s.ListImages()
	require.NoError(t, err)
	require.Len(t, imgs, 2)
	assert.Equal(t, "20260101.01", imgs[0].VersionName)
	assert.Equal(t, int64(15), imgs[0].Size())
}

func TestCreateImagesAllOrNothing(t *testing.T) {
	s := openTemp(t)
	a, _ := newImage("a", "p1", "v1")
	b, _ := newImage("b", "p2", "v1")
	require.NoError(t, s.CreateImages([]*Image{a, b}))

	c, _ := newImage("c", "p3", "v1")
	dup, _ := newImage("d", "p1", "v1")
	assert.ErrorIs(t, s.CreateImages([]*Image{c, dup}), ErrConflict, "p1 v1 exists")
	twice, _ := newImage("e", "p4", "v1")
	again, _ := newImage("f", "p4", "v1")
	assert.ErrorIs(t, s.CreateImages([]*Image{twice, again}), ErrConflict, "one batch holds p4 v1 twice")

	imgs, err := s.ListImages()
	require.NoError(t, err)
	var ids []string
	for _, img := range imgs {
		ids = append(ids, img.ID)
	}
	assert.Equal(t, []string{"a", "b"}, ids, "a refused batch stores nothing")
	jobs, err := s.UnfinishedJobs()
	require.NoError(t, err)
	assert.Empty(t, jobs, "no job comes with them")
}

func TestFinishJobFirstResultWins(t *testing.T) {
	s := openTemp(t)
	img, job := newImage("a", "p1", "v1")
	require.NoError(t, s.CreateImage(img, job))

	got, err := s.FinishJob(job.ID, JobSucceeded, "", func(img *Image) error {
		img.Status = StatusReady
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, StatusReady, got.Status)

	_, err = s.FinishJob(job.ID, JobFailed, "late failure", func(img *Image) error {
		img.Status = StatusFailed
		return nil
	})
	assert.ErrorIs(t, err, ErrFinished)
	stored, err := s.GetImage("a")
	require.NoError(t, err)
	assert.Equal(t, StatusReady, stored.Status)
	j, err := s.GetJob(job.ID)
	require.NoError(t, err)
	assert.Equal(t, JobSucceeded, j.State)
}

func TestFinishJobOfDeletedImage(t *testing.T) {
	s := openTemp(t)
	img, job := newImage("a", "p1", "v1")
	require.NoError(t, s.CreateImage(img, job))
	_, err := s.DeleteImage("a")
	require.NoError(t, err)
	j, err := s.GetJob(job.ID)
	require.NoError(t, err)
	assert.Equal(t, JobCanceled, j.State, "deleting an image cancels its job")
	_, err = s.FinishJob(job.ID, JobSucceeded, "", func(*Image) error { return errors.New("must not be called") })
	assert.ErrorIs(t, err, ErrFinished, "a late result of a deleted image changes nothing")
}

func TestUnfinishedJobsAndCancel(t *testing.T) {
	s := openTemp(t)
	for _, id := range []string{"a", "b"} {
		img, job := newImage(id, "p-"+id, "v1")
		require.NoError(t, s.CreateImage(img, job))
	}
	require.NoError(t, s.CancelJob("job-a"))
	jobs, err := s.UnfinishedJobs()
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	assert.Equal(t, "job-b", jobs[0].ID)

	_, err = s.GetImage("missing")
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.DeleteImage("missing")
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestUpstreamsAndCatalogs(t *testing.T) {
	s := openTemp(t)
	_, err := s.GetCatalog("http://a/streams/v1/index.json")
	assert.ErrorIs(t, err, ErrNotFound)
	old := time.Now().Add(-time.Hour)
	require.NoError(t, s.PutUpstream(&Upstream{URL: "http://a/streams/v1/index.json", Products: 3, LastUsed: old}, []byte("A")))
	require.NoError(t, s.PutUpstream(&Upstream{URL: "http://b/streams/v1/index.sjson", Signed: true, LastUsed: old.Add(time.Minute)}, []byte("B")))
	ups, err := s.ListUpstreams()
	require.NoError(t, err)
	require.Len(t, ups, 2)
	assert.Equal(t, "http://b/streams/v1/index.sjson", ups[0].URL)

	require.NoError(t, s.TouchUpstream("http://a/streams/v1/index.json"))
	ups, err = s.ListUpstreams()
	require.NoError(t, err)
	assert.Equal(t, "http://a/streams/v1/index.json", ups[0].URL, "the one used last comes first")
	data, err := s.GetCatalog("http://a/streams/v1/index.json")
	require.NoError(t, err)
	assert.Equal(t, []byte("A"), data)
	assert.ErrorIs(t, s.TouchUpstream("http://nowhere/"), ErrNotFound)
}

func TestSyncRules(t *testing.T) {
	s := openTemp(t)
	now := time.Now()
	require.NoError(t, s.PutSyncRule(&SyncRule{ID: "b", URL: "http://u/", Filters: []string{"arch=amd64"}, CreatedAt: now}))
	require.NoError(t, s.PutSyncRule(&SyncRule{ID: "a", URL: "http://u/", ProductIDs: []string{"p"}, CreatedAt: now.Add(-time.Hour)}))
	rules, err := s.ListSyncRules()
	require.NoError(t, err)
	require.Len(t, rules, 2)
	assert.Equal(t, "a", rules[0].ID, "oldest first")
	rules[0].LastError = "boom"
	require.NoError(t, s.PutSyncRule(&rules[0]))
	deleted, err := s.DeleteSyncRule("b")
	require.NoError(t, err)
	assert.Equal(t, "b", deleted.ID)
	_, err = s.DeleteSyncRule("b")
	assert.ErrorIs(t, err, ErrNotFound)
	rules, err = s.ListSyncRules()
	require.NoError(t, err)
	require.Len(t, rules, 1)
	assert.Equal(t, "boom", rules[0].LastError)
}

// ListImages answers from decoded copies of unchanged records: an update, a
// delete and a caller's changes to what it got must all show correctly.
func TestListImagesSeesEveryChange(t *testing.T) {
	s := openTemp(t)
	a, job := newImage("a", "p", "1")
	require.NoError(t, s.CreateImage(a, job))
	b, job := newImage("b", "p", "2")
	require.NoError(t, s.CreateImage(b, job))
	d, job := newImage("d", "p", "4")
	require.NoError(t, s.CreateImage(d, job))

	imgs, err := s.ListImages()
	require.NoError(t, err)
	require.Len(t, imgs, 3)
	// A caller changing its copy changes nothing stored or cached.
	for i := range imgs {
		imgs[i].Status = StatusFailed
		imgs[i].Items[0].SHA256 = "changed"
		imgs[i].Items = append(imgs[i].Items, Item{Name: "extra"})
	}

	_, err = s.FinishJob("job-a", JobSucceeded, "", func(img *Image) error {
		img.Status = StatusReady
		img.Items[1].SHA256 = "abc"
		return nil
	})
	require.NoError(t, err)
	_, err = s.DeleteImage("b")
	require.NoError(t, err)
	c, job := newImage("c", "p", "3")
	require.NoError(t, s.CreateImage(c, job))

	imgs, err = s.ListImages()
	require.NoError(t, err)
	require.Len(t, imgs, 3)
	assert.Equal(t, "a", imgs[0].ID)
	assert.Equal(t, StatusReady, imgs[0].Status)
	require.Len(t, imgs[0].Items, 2)
	assert.Empty(t, imgs[0].Items[0].SHA256)
	assert.Equal(t, "abc", imgs[0].Items[1].SHA256)
	assert.Equal(t, "c", imgs[1].ID)
	for _, img := range imgs {
		got, err := s.GetImage(img.ID)
		require.NoError(t, err)
		assert.Equal(t, *got, img)
	}
}

// Lists keep their order when a few records change, move or go between
// them: the changed ones are moved into place, not sorted again.
func TestListImagesOrderAfterChanges(t *testing.T) {
	s := openTemp(t)
	for i := range 40 {
		img, job := newImage(fmt.Sprintf("id%02d", (i*7)%40), fmt.Sprintf("p%d", i%5), fmt.Sprintf("v%02d", i))
		require.NoError(t, s.CreateImage(img, job))
	}
	check := func(t *testing.T) {
		imgs, err := s.ListImages()
		require.NoError(t, err)
		assert.True(t, slices.IsSortedFunc(imgs, func(a, b Image) int {
			return cmp.Or(strings.Compare(a.ProductID, b.ProductID), strings.Compare(a.VersionName, b.VersionName))
		}))
		ids := map[string]bool{}
		for _, img := range imgs {
			got, err := s.GetImage(img.ID)
			require.NoError(t, err)
			assert.Equal(t, *got, img)
			ids[img.ID] = true
		}
		var stored int
		require.NoError(t, s.db.View(func(tx *bolt.Tx) error { stored = tx.Bucket(bucketImages).Stats().KeyN; return nil }))
		assert.Len(t, ids, stored)
	}
	check(t)
	tests := []struct {
		name   string
		change func(t *testing.T)
	}{
		{"a new version", func(t *testing.T) {
			img, job := newImage("new", "p2", "v99")
			require.NoError(t, s.CreateImage(img, job))
		}},
		{"a version that moves", func(t *testing.T) {
			require.NoError(t, s.db.Update(func(tx *bolt.Tx) error {
				var img Image
				require.NoError(t, get(tx, bucketImages, "id07", &img))
				img.ProductID, img.VersionName = "p0", "v00a"
				return put(tx, bucketImages, img.ID, &img)
			}))
		}},
		{"a deleted version", func(t *testing.T) {
			_, err := s.DeleteImage("id14")
			require.NoError(t, err)
		}},
		{"a changed field", func(t *testing.T) {
			_, err := s.FinishJob("job-id21", JobFailed, "broken", func(img *Image) error {
				img.Status, img.Error = StatusFailed, "broken"
				return nil
			})
			require.NoError(t, err)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.change(t)
			check(t)
		})
	}
}

// A record that does not decode fails the list with its id, and a list
// after it is repaired sees every record again.
func TestListImagesBadRecord(t *testing.T) {
	s := openTemp(t)
	var imgs []*Image
	for i := range 600 { // enough to decode on several cores
		img, _ := newImage(fmt.Sprintf("id%03d", i), "p", fmt.Sprintf("v%03d", i))
		imgs = append(imgs, img)
	}
	require.NoError(t, s.CreateImages(imgs))
	_, err := s.ListImages()
	require.NoError(t, err)
	put := func(data string) {
		require.NoError(t, s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketImages).Put([]byte("id123"), []byte(data)) }))
	}
	put("{not json")
	_, err = s.ListImages()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "images id123")
	put(`{"id":"id123","product_id":"p","version_name":"v123"}`)
	listed, err := s.ListImages()
	require.NoError(t, err)
	assert.Len(t, listed, 600)
}
