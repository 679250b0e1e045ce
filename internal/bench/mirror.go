package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/customstream/customstream/internal/units"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

// mirrorTree generates an upstream of 4 boot products (noble, amd64 and
// arm64, ga and hwe) whose 12 distinct item files total about total bytes:
// per arch a squashfs S, its manifest S/16, and two kernels S/4 and two
// initrds S/2, so 2 × 2.5625 S.
func mirrorTree(dir string, total int64, seed int64, versions ...string) (*upstreamtest.Tree, error) {
	return upstreamtest.Generate(dir, upstreamtest.Options{
		Releases: []upstreamtest.Release{{Name: "noble", Version: "24.04", Codename: "Noble Numbat"}},
		Arches:   []string{"amd64", "arm64"},
		Versions: versions,
		ItemSize: int(float64(total) / 5.125),
		Seed:     seed,
	})
}

// productIDs lists every product of a tree.
func productIDs(t *upstreamtest.Tree) []string {
	var ids []string
	for _, doc := range t.Products {
		ids = append(ids, doc.ProductIDs()...)
	}
	slices.Sort(ids)
	return ids
}

// mirrorAll mirrors every product of the upstream at url and waits for the jobs.
func (s *server) mirrorAll(ctx context.Context, url string, ids []string) (time.Duration, error) {
	start := time.Now()
	if err := s.api(http.MethodPost, "/api/upstream/fetch", map[string]any{"url": url, "refresh": true, "q": "no product matches this"}, nil); err != nil {
		return 0, err
	}
	var answer struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	no := false
	if err := s.api(http.MethodPost, "/api/images/mirror", map[string]any{"url": url, "product_ids": ids, "bootloaders": &no}, &answer); err != nil {
		return 0, err
	}
	var jobIDs []string
	for _, j := range answer.Jobs {
		jobIDs = append(jobIDs, j.ID)
	}
	if len(jobIDs) == 0 {
		return 0, fmt.Errorf("mirroring %s started no job", url)
	}
	if err := s.waitJobs(ctx, jobIDs); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// curlAll fetches every item file of the tree one after another, as an
// admin with curl would, into dir.
func curlAll(ctx context.Context, base string, t *upstreamtest.Tree, dir string) (time.Duration, error) {
	paths := make([]string, 0, len(t.Files))
	for p := range t.Files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	for i, p := range paths {
		if _, err := curlGet(ctx, base+"/"+p, filepath.Join(dir, fmt.Sprint(i))); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func treeBytes(t *upstreamtest.Tree) int64 {
	var n int64
	for _, f := range t.Files {
		n += f.Size
	}
	return n
}

// mirror: the mirror rows (a fast and a capped upstream, against curl one
// file after another) and the dedup row.
func (r *run) mirror(ctx context.Context) error {
	treeDir, err := r.dir("upstream-mirror")
	if err != nil {
		return err
	}
	tree, err := mirrorTree(treeDir, r.Sizes.Mirror, 7, "20250801")
	if err != nil {
		return err
	}
	dedupDir, err := r.dir("upstream-dedup")
	if err != nil {
		return err
	}
	dedup, err := upstreamtest.Generate(dedupDir, upstreamtest.Options{
		Releases: []upstreamtest.Release{{Name: "noble", Version: "24.04", Codename: "Noble Numbat"}},
		Arches:   []string{"amd64", "arm64"}, Versions: []string{"20250801"}, ItemSize: int(r.Sizes.DedupItem),
		Seed: 8, SharedFraction: 0.8,
	})
	if err != nil {
		return err
	}
	fast, slow, dd := &site{root: treeDir}, &site{root: treeDir, limitRate: "20m"}, &site{root: dedupDir}
	n, err := r.startNginx(ctx, "nginx-upstream", []*site{fast, slow, dd})
	if err != nil {
		return err
	}
	defer n.stop()
	base := func(s *site) string { return fmt.Sprintf("http://127.0.0.1:%d", s.port) }
	total := treeBytes(tree)
	ids := productIDs(tree)
	measure := fmt.Sprintf("%d items, %s, %s", len(tree.Files), units.Bytes(total), "from nginx on loopback")

	// A fresh server for each upstream: nothing is in its blob store yet.
	for _, c := range []struct {
		site    *site
		name    string
		measure string
		max     float64
	}{
		{fast, "mirror", measure, 1.15},
		{slow, "mirror, slow upstream", strings.Replace(measure, "from nginx", "from nginx at 20 MB/s per connection", 1), 0.3},
	} {
		syncDisks()
		ref, err := curlAll(ctx, base(c.site), tree, filepath.Join(r.Work, "curl"))
		if err != nil {
			return err
		}
		syncDisks()
		s, err := r.startServer(ctx, "mirror-"+fmt.Sprint(c.site.port))
		if err != nil {
			return err
		}
		ours, err := s.mirrorAll(ctx, base(c.site)+"/streams/v1/index.json", ids)
		s.stop()
		if err != nil {
			return err
		}
		r.add(atMost(c.name, c.measure+", wall time", secs(ours), secs(ref)+" (curl, one file after another)", ours.Seconds()/ref.Seconds(), c.max))
	}
	return r.dedup(ctx, dedup, base(dd), dd.accessLog)
}

// dedup mirrors the first version, adds a second that shares 80 % of its
// files' bytes, mirrors again and counts the item bytes nginx sent for it.
func (r *run) dedup(ctx context.Context, tree *upstreamtest.Tree, base, accessLog string) error {
	s, err := r.startServer(ctx, "dedup")
	if err != nil {
		return err
	}
	defer s.stop()
	url := base + "/streams/v1/index.json"
	ids := productIDs(tree)
	if _, err := s.mirrorAll(ctx, url, ids); err != nil {
		return err
	}
	before := map[string]bool{}
	for _, f := range tree.Files {
		before[f.SHA256] = true
	}
	oldPaths := map[string]bool{}
	for p := range tree.Files {
		oldPaths[p] = true
	}
	if err := tree.AddVersion("20250901"); err != nil {
		return err
	}
	var all, fresh int64
	seen := map[string]bool{}
	for p, f := range tree.Files {
		if oldPaths[p] || seen[f.SHA256] {
			continue
		}
		seen[f.SHA256] = true
		all += f.Size
		if !before[f.SHA256] {
			fresh += f.Size
		}
	}
	_, skip, err := servedBytes(accessLog, 0, func(string) bool { return true })
	if err != nil {
		return err
	}
	if _, err := s.mirrorAll(ctx, url, ids); err != nil {
		return err
	}
	sent, _, err := servedBytes(accessLog, skip, func(uri string) bool { return !strings.HasPrefix(uri, "/streams/") })
	if err != nil {
		return err
	}
	r.add(Row{What: "dedup", Measure: fmt.Sprintf("second version, %s of which %.0f %% is new: item bytes nginx sent",
		units.Bytes(all), 100*float64(fresh)/float64(all)),
		Ours: units.Bytes(sent), Ref: units.Bytes(fresh) + " (the new bytes)", Ratio: float64(sent) / float64(fresh),
		Target: "≤ 1×", Pass: sent <= fresh})
	return nil
}
