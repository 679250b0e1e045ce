package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/customstream/customstream/internal/units"
)

// serving: a large GET, small files under wrk and index.json under wrk,
// each from the server and from nginx serving its publish directory.
func (r *run) serving(ctx context.Context) error {
	s, err := r.startServer(ctx, "serving")
	if err != nil {
		return err
	}
	defer s.stop()
	const small = 1 << 20
	for _, f := range []struct {
		release string
		size    int64
	}{{"large", r.Sizes.Get}, {"small", small}} {
		file := filepath.Join(r.Work, f.release+".bin")
		if err := writeRandom(file, f.size, uint64(f.size)); err != nil {
			return err
		}
		_, _, err := s.upload(ctx, file, f.release, "1")
		os.Remove(file)
		if err != nil {
			return err
		}
	}
	publishDir := filepath.Join(s.dataDir, "publish")
	// The publish follows the hash job's result; wait for both files.
	var large, smallRel string
	deadline := time.Now().Add(30 * time.Second)
	for (large == "" || smallRel == "") && time.Now().Before(deadline) {
		large, err = findBySize(publishDir, r.Sizes.Get)
		if err != nil {
			return err
		}
		smallRel, err = findBySize(publishDir, small)
		if err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	if large == "" || smallRel == "" {
		return fmt.Errorf("the uploads were not published under %s", publishDir)
	}
	ng := &site{root: publishDir}
	n, err := r.startNginx(ctx, "nginx-serving", []*site{ng})
	if err != nil {
		return err
	}
	defer n.stop()
	nginxURL := fmt.Sprintf("http://127.0.0.1:%d", ng.port)

	var ours, ref time.Duration
	for i := 0; i < 3; i++ {
		o, err := curlGet(ctx, s.url+"/"+large, os.DevNull)
		if err != nil {
			return err
		}
		n, err := curlGet(ctx, nginxURL+"/"+large, os.DevNull)
		if err != nil {
			return err
		}
		if i == 0 || o < ours {
			ours = o
		}
		if i == 0 || n < ref {
			ref = n
		}
	}
	r.add(atLeast("serving", fmt.Sprintf("%s GET with curl (best of 3, taking turns)", units.Bytes(r.Sizes.Get)),
		mbps(r.Sizes.Get, ours), mbps(r.Sizes.Get, ref)+" (nginx, sendfile on)", ref.Seconds()/ours.Seconds(), 0.9))

	for _, c := range []struct{ measure, path string }{
		{"1 MiB file, 50 connections (wrk), req/s", "/" + smallRel},
		{"index.json, 50 connections (wrk), req/s", "/streams/v1/index.json"},
	} {
		// Taking turns, best of two each: a burst of load elsewhere on the
		// machine then hits both servers, not one.
		var ours, ref float64
		for i := 0; i < 2; i++ {
			o, err := r.wrk(ctx, s.url+c.path, 50)
			if err != nil {
				return err
			}
			n, err := r.wrk(ctx, nginxURL+c.path, 50)
			if err != nil {
				return err
			}
			ours, ref = max(ours, o), max(ref, n)
		}
		r.add(atLeast("serving", c.measure+" (best of 2, taking turns)", fmt.Sprintf("%.0f", ours), fmt.Sprintf("%.0f (nginx)", ref), ours/ref, 0.9))
	}
	return nil
}

// findBySize returns the path, relative to dir, of a regular file of the size.
func findBySize(dir string, size int64) (string, error) {
	var found string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || found != "" || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() == size {
			found, err = filepath.Rel(dir, path)
			found = filepath.ToSlash(found)
		}
		return err
	})
	return found, err
}
