package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/customstream/customstream/internal/units"
)

// writeRandom writes size random bytes to path: random, so neither the
// hash nor the disk can take a shortcut.
func writeRandom(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8(key), size); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// curlUpload posts file as a multipart upload with curl and returns the wall
// time and the answer.
func curlUpload(ctx context.Context, url, file string, fields ...string) (time.Duration, []byte, error) {
	args := []string{"-sSf", "-H", "Authorization: Bearer " + benchToken}
	for _, f := range fields {
		args = append(args, "-F", f)
	}
	args = append(args, "-F", "rootfs=@"+file, url)
	return timed(ctx, "curl", args...)
}

// uploadFields are the form fields of a custom single-file image.
func uploadFields(release, version string) []string {
	return []string{"os=custom", "release=" + release, "arch=amd64", "version=" + version, "rootfs_type=root-tgz"}
}

// upload posts file to s and waits for its hash job; it returns the upload
// time and the time from the upload's answer to the job's success.
func (s *server) upload(ctx context.Context, file, release, version string) (up, hash time.Duration, err error) {
	up, out, err := curlUpload(ctx, s.url+"/api/images/upload", file, uploadFields(release, version)...)
	if err != nil {
		return 0, 0, err
	}
	answered := time.Now()
	var answer struct {
		Job struct {
			ID string `json:"id"`
		} `json:"job"`
	}
	if err := json.Unmarshal(out, &answer); err != nil || answer.Job.ID == "" {
		return 0, 0, fmt.Errorf("upload answered %s", out)
	}
	if err := s.waitJobs(ctx, []string{answer.Job.ID}); err != nil {
		return 0, 0, err
	}
	return up, time.Since(answered), nil
}

// copyServer is the reference upload handler: it copies the request body
// to a file and syncs it, the guarantee the server gives before it answers
// (a file still in the page cache is not on disk yet).
func copyServer(dst string) (url string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Create(dst)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, err = io.Copy(f, r.Body)
		if serr := f.Sync(); err == nil {
			err = serr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "{}")
	})}
	go srv.Serve(l)
	return "http://" + l.Addr().String() + "/", func() { srv.Close() }, nil
}

// hashFile is the reference hash: crypto/sha256 over the file.
func hashFile(path string) (time.Duration, error) {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// uploadAndHash: the upload rows (peak RSS, throughput against copyServer)
// and the hash job rows (against crypto/sha256 and sha256sum).
func (r *run) uploadAndHash(ctx context.Context) error {
	size := r.Sizes.Upload
	file := filepath.Join(r.Work, "upload.bin")
	r.logf("writing %s of random data", units.Bytes(size))
	if err := writeRandom(file, size, 1); err != nil {
		return err
	}
	defer os.Remove(file)

	// The reference first, its copy removed before the server's turn so both
	// write to a disk in the same state.
	baseDst := filepath.Join(r.Work, "copy-handler.body")
	baseURL, stopBase, err := copyServer(baseDst)
	if err != nil {
		return err
	}
	syncDisks()
	baseTime, err := bestOf(1, func() (time.Duration, error) {
		d, _, err := curlUpload(ctx, baseURL, file, uploadFields("bench", "1")...)
		return d, err
	})
	stopBase()
	os.Remove(baseDst)
	if err != nil {
		return fmt.Errorf("reference upload: %w", err)
	}
	syncDisks()

	s, err := r.startServer(ctx, "upload")
	if err != nil {
		return err
	}
	defer s.stop()
	time.Sleep(time.Second)
	idle, err := procStatus(s.pid(), "VmRSS")
	if err != nil {
		return err
	}
	up, hash, err := s.upload(ctx, file, "bench", "1")
	if err != nil {
		return err
	}
	peak, err := procStatus(s.pid(), "VmHWM")
	if err != nil {
		return err
	}
	above := (peak - idle) << 10
	r.add(Row{What: "upload", Measure: fmt.Sprintf("%s multipart with curl: server peak RSS above idle", units.Bytes(size)),
		Ours: units.Bytes(above), Ref: "64 MiB (target)", Ratio: float64(above) / (64 << 20), Target: "≤ 1×", Pass: above <= 64<<20})
	r.add(atLeast("upload", fmt.Sprintf("%s multipart with curl: throughput", units.Bytes(size)), mbps(size, up),
		mbps(size, baseTime)+" (Go handler: body to file, fsync)", baseTime.Seconds()/up.Seconds(), 0.8))

	raw, err := bestOf(2, func() (time.Duration, error) { return hashFile(file) })
	if err != nil {
		return err
	}
	sum, err := bestOf(1, func() (time.Duration, error) {
		d, _, err := timed(ctx, "sha256sum", file)
		return d, err
	})
	if err != nil {
		return err
	}
	measure := fmt.Sprintf("sha256 of the %s upload, end to end", units.Bytes(size))
	r.add(atLeast("hash job", measure, mbps(size, hash), mbps(size, raw)+" (crypto/sha256)", raw.Seconds()/hash.Seconds(), 0.9))
	r.add(atLeast("hash job", measure, mbps(size, hash), mbps(size, sum)+" (sha256sum)", sum.Seconds()/hash.Seconds(), 3))
	return nil
}

// syncDisks writes dirty pages out, so one measurement does not pay for the
// previous one's writes.
func syncDisks() { syscall.Sync() }
