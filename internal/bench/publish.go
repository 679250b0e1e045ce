package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
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
	svc, st, b := fx.svc, fx.st, fx.blobs
	// The 5,000 blobs just written are flushed first: their write-back
	// would otherwise compete with the publish for the file system journal.
	syscall.Sync()
	start := time.Now()
	if err := svc.Republish(); err != nil {
		return err
	}
	full := time.Since(start)
	versions := fmt.Sprintf("%d local versions", n)
	r.add(atMost("publish", versions+": full publish (signed), into an empty tree", secs(full), "500 ms (target)", full.Seconds()/0.5, 1))

	img, err := localVersion(b, n)
	if err != nil {
		return err
	}
	if err := st.CreateImages([]*store.Image{img}); err != nil {
		return err
	}
	start = time.Now()
	if err := svc.Republish(); err != nil {
		return err
	}
	one := time.Since(start)
	r.add(atMost("publish", versions+": publish after one new version", secs(one), "50 ms (target)", one.Seconds()/0.05, 1))
	return ctx.Err()
}

// publishFixture is a data directory holding n recorded local versions,
// not yet published, and the service that publishes them.
type publishFixture struct {
	st    *store.Store
	blobs *blobs.Store
	svc   *images.Service
}

func newPublishFixture(dir string, n int) (*publishFixture, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(filepath.Join(dir, "customstream.db"), time.Second)
	if err != nil {
		return nil, err
	}
	fx := &publishFixture{st: st}
	if err := fx.fill(dir, n, log); err != nil {
		st.Close()
		return nil, err
	}
	return fx, nil
}

func (fx *publishFixture) fill(dir string, n int, log *slog.Logger) error {
	b, err := blobs.Open(dir)
	if err != nil {
		return err
	}
	pub, err := publish.New(dir, b, log)
	if err != nil {
		return err
	}
	signer, err := signing.Open(dir, log)
	if err != nil {
		return err
	}
	pub.SignWith(signer.Sign, signer.Keyring())
	fx.blobs, fx.svc = b, images.NewService(fx.st, b, pub, log)
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
