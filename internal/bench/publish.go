package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/store"
)

// publish: the publish rows, in process, as the web process publishes after
// a job: list the records, build and sign the tree, collect unused blobs.
func (r *run) publish(ctx context.Context) error {
	dir, err := r.dir("publish")
	if err != nil {
		return err
	}
	n := r.Sizes.PublishVersions
	r.logf("recording %d local versions", n)
	fx, err := newPublishFixture(dir, n)
	if err != nil {
		return err
	}
	defer fx.close()
	// A full publish into an empty tree, three times, each by a new
	// publisher as after a start; the median counts. In turn with each, the
	// same directories and links made alone: what the file system takes.
	fulls := make([]time.Duration, 0, publishRounds)
	floors := make([]time.Duration, 0, publishRounds)
	for range publishRounds {
		floor, err := fx.treeFloor()
		if err != nil {
			return err
		}
		floors = append(floors, floor)
		if err := fx.fresh(); err != nil {
			return err
		}
		took, err := fx.timedPublish()
		if err != nil {
			return err
		}
		fulls = append(fulls, took)
	}
	full := median(fulls)
	versions := fmt.Sprintf("%d local versions", n)
	r.add(atMost("publish", versions+": full publish (signed), into an empty tree (median of 3)", secs(full),
		fmt.Sprintf("500 ms (target); its directories and links alone: %s", secs(median(floors))), full.Seconds()/0.5, 1))

	ones := make([]time.Duration, 0, 2*publishRounds+1)
	for i := range cap(ones) {
		img, err := localVersion(fx.blobs, n+i)
		if err != nil {
			return err
		}
		if err := fx.st.CreateImages([]*store.Image{img}); err != nil {
			return err
		}
		took, err := fx.timedPublish()
		if err != nil {
			return err
		}
		ones = append(ones, took)
	}
	one := median(ones)
	r.add(atMost("publish", fmt.Sprintf("%s: publish after one new version (median of %d)", versions, len(ones)), secs(one), "50 ms (target)", one.Seconds()/0.05, 1))
	return ctx.Err()
}

// publishRounds is how many full publishes the publish rows time.
const publishRounds = 3

// median is the middle of ds (sorted in place).
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// publishFixture is a data directory holding n recorded local versions,
// not yet published, and the service that publishes them.
type publishFixture struct {
	dir    string
	log    *slog.Logger
	st     *store.Store
	blobs  *blobs.Store
	signer *signing.Signer
	svc    *images.Service
	trees  int // trees made, to name the next
}

func newPublishFixture(dir string, n int) (*publishFixture, error) {
	fx := &publishFixture{dir: dir, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	st, err := store.Open(filepath.Join(dir, "customstream.db"), time.Second)
	if err != nil {
		return nil, err
	}
	fx.st = st
	if err := fx.fill(n); err != nil {
		fx.close()
		return nil, err
	}
	return fx, nil
}

func (fx *publishFixture) fill(n int) error {
	b, err := blobs.Open(fx.dir)
	if err != nil {
		return err
	}
	if fx.signer, err = signing.Open(fx.dir, fx.log); err != nil {
		return err
	}
	fx.blobs = b
	if err := fx.fresh(); err != nil {
		return err
	}
	imgs := make([]*store.Image, 0, n)
	for i := 0; i < n; i++ {
		img, err := localVersion(b, i)
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	return fx.st.CreateImages(imgs)
}

// timedPublish publishes and returns how long it took. What was written
// before is flushed first: its write-back would otherwise compete with the
// publish for the file system journal.
func (fx *publishFixture) timedPublish() (time.Duration, error) {
	syncDisks()
	start := time.Now()
	err := fx.svc.Republish()
	return time.Since(start), err
}

// treeFloor makes, in a scratch directory, the directories and hard links
// of the published tree as a publish does (linkWorkers at a time, after a
// sync), and returns how long that took.
func (fx *publishFixture) treeFloor() (time.Duration, error) {
	imgs, err := fx.st.ListImages()
	if err != nil {
		return 0, err
	}
	fx.trees++
	// Kept until the run's scratch directory goes: with the discard mount
	// option (this machine's /), a deletion slows the file system for
	// seconds after it, and would slow the next measurement.
	dir := filepath.Join(fx.dir, fmt.Sprintf("floor-%d", fx.trees))
	syncDisks()
	start := time.Now()
	items := make(chan store.Item)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for it := range items {
				dst := filepath.Join(dir, filepath.FromSlash(it.Path))
				err := os.MkdirAll(filepath.Dir(dst), 0o755)
				if err == nil {
					err = os.Link(fx.blobs.Path(it.SHA256), dst)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for _, img := range imgs {
		for _, it := range img.Items {
			items <- it
		}
	}
	close(items)
	wg.Wait()
	took := time.Since(start)
	select {
	case err := <-errs:
		return 0, fmt.Errorf("tree floor: %w", err)
	default:
		return took, nil
	}
}

// fresh moves the published tree aside (see treeFloor) and starts a new
// publisher on an empty one, with the database opened again: as after a
// start, no record is decoded yet.
func (fx *publishFixture) fresh() error {
	if err := fx.st.Close(); err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(fx.dir, "customstream.db"), time.Second)
	if err != nil {
		return err
	}
	fx.st = st
	fx.trees++
	err = os.Rename(filepath.Join(fx.dir, "publish"), filepath.Join(fx.dir, fmt.Sprintf("publish-%d", fx.trees)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	pub, err := publish.New(fx.dir, fx.blobs, fx.log)
	if err != nil {
		return err
	}
	pub.SignWith(fx.signer.Sign, fx.signer.Keyring())
	fx.svc = images.NewService(fx.st, fx.blobs, pub, fx.log)
	return nil
}

func (fx *publishFixture) close() { fx.st.Close() }

// localVersion records version i of one of 500 custom products: a small
// root-tgz of its own content in the blob store.
func localVersion(b *blobs.Store, i int) (*store.Image, error) {
	release := fmt.Sprintf("r%03d", i%500)
	version := fmt.Sprintf("2025%04d", i/500)
	content := []byte(fmt.Sprintf("root tarball %d", i))
	staging, err := b.StagingDir("bench")
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(staging, "item")
	if err != nil {
		return nil, err
	}
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(content)
	hexSum := hex.EncodeToString(sum[:])
	if err := b.Commit(f.Name(), hexSum); err != nil {
		return nil, err
	}
	dir := fmt.Sprintf("uploads/custom/%s/amd64/generic/stable/%s", release, version)
	return &store.Image{
		ID: images.NewID(), ProductID: "com.customstream.stable:custom:" + release + ":amd64:generic",
		ContentID: "com.customstream:uploads:bases-download", Origin: store.OriginUpload, Kind: store.KindSingle,
		OS: "custom", Release: release, Arch: "amd64", Subarch: "generic", Subarches: "generic",
		Label: "stable", Version: release, ReleaseTitle: release, VersionName: version, Status: store.StatusReady,
		Items:     []store.Item{{Name: "root-tgz", FType: "root-tgz", Path: dir + "/root-tgz", Size: int64(len(content)), SHA256: hexSum}},
		CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC(),
	}, nil
}
