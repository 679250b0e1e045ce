package web

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/metrics"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/jobs"
)

// recentFailures is how far back the dashboard looks for failed jobs.
const recentFailures = 7 * 24 * time.Hour

// diskPanel is the data directory's filesystem.
type diskPanel struct {
	metrics.Disk
	Used, MinFree int64
	Percent       int
	// Level is "ok", "low" (less than twice the minimum) or "critical".
	Level string
	Error string
}

// statePanel counts the image versions in one state.
type statePanel struct {
	State, Label, Badge string
	Count               int
}

// syncPanel is what sync rules did last and do next.
type syncPanel struct {
	Rules   int
	LastRun time.Time
	Failing []store.SyncRule
	Next    time.Time
}

// workerPanel says whether any worker serves the hash and mirror queues.
type workerPanel struct {
	Known   bool
	Servers int
	// Slots is how many jobs they run at once, together.
	Slots int
	Error string
}

// dashboardData is everything the home page shows.
type dashboardData struct {
	Disk               diskPanel
	Stored             int64
	StoredFiles        int
	Images             int
	Uploaded, Mirrored int
	Imported           int
	States             []statePanel
	Products, Versions int
	Sync               syncPanel
	ActiveJobs         int
	Failing            []store.Job
	FailedImages       int
	Workers            workerPanel
	// LastScrub is the newest scrub job; NextScrub when the schedule runs
	// one next (zero when it is off).
	LastScrub            *store.Job
	NextScrub            time.Time
	SignedURL, IndexURL  string
	KeyringURL, SetupURL string
}

// disk reads the data directory's space and how it compares with
// CUSTOMSTREAM_MIN_FREE.
func (h *handler) disk() diskPanel {
	d, err := metrics.DiskOf(h.Config.DataDir)
	if err != nil {
		return diskPanel{Level: "critical", Error: err.Error()}
	}
	p := diskPanel{Disk: d, Used: d.Total - d.Free, MinFree: h.Config.MinFreeOf(d.Total), Level: "ok"}
	if d.Total > 0 {
		p.Percent = int(p.Used * 100 / d.Total)
	}
	switch {
	case d.Free < p.MinFree:
		p.Level = "critical"
	case d.Free < 2*p.MinFree:
		p.Level = "low"
	}
	return p
}

func (h *handler) dashboard(c *fiber.Ctx) (*dashboardData, error) {
	imgs, err := h.Images.List()
	if err != nil {
		return nil, err
	}
	d := &dashboardData{Disk: h.disk(), Images: len(imgs)}
	counts := map[string]int{}
	blobs := map[string]bool{}
	for i := range imgs {
		img := &imgs[i]
		counts[img.Status]++
		switch {
		case img.Origin == store.OriginUpload:
			d.Uploaded++
		case images.IsImport(img.Origin):
			d.Imported++
		default:
			d.Mirrored++
		}
		if img.Status != store.StatusReady {
			continue
		}
		d.Versions++
		// Versions share files: count each stored file once.
		for _, it := range img.Items {
			if !blobs[it.SHA256] {
				blobs[it.SHA256] = true
				d.Stored += it.Size
				d.StoredFiles++
			}
		}
	}
	d.FailedImages = counts[store.StatusFailed]
	for _, s := range []statePanel{
		{State: store.StatusReady, Label: "Ready", Badge: "text-bg-success"},
		{State: store.StatusDownloading, Label: "Downloading", Badge: "text-bg-primary"},
		{State: store.StatusHashing, Label: "Hashing", Badge: "text-bg-info"},
		{State: store.StatusFailed, Label: "Failed", Badge: "text-bg-danger"},
		{State: store.StatusDamaged, Label: "Damaged", Badge: "text-bg-danger"},
	} {
		s.Count = counts[s.State]
		d.States = append(d.States, s)
	}
	d.Products = len(offered(imgs))

	if d.Sync, err = h.syncPanel(c.Context()); err != nil {
		return nil, err
	}
	all, err := h.Store.ListJobs()
	if err != nil {
		return nil, err
	}
	since := time.Now().Add(-recentFailures)
	for i, j := range all {
		if j.Type == jobs.TypeScrubBlobs && (d.LastScrub == nil || j.CreatedAt.After(d.LastScrub.CreatedAt)) {
			d.LastScrub = &all[i]
		}
		switch {
		case !j.Finished():
			d.ActiveJobs++
		case j.State == store.JobFailed && j.FinishedAt.After(since):
			d.Failing = append(d.Failing, j)
		}
	}
	sort.Slice(d.Failing, func(i, j int) bool { return d.Failing[i].FinishedAt.After(d.Failing[j].FinishedAt) })
	d.Workers = h.workers()
	if h.Config.ScrubInterval > 0 {
		// As the scrub loop counts: from the last scrub, or with none from
		// the first start on this data directory.
		from, err := h.Store.ScheduleSince()
		if err != nil {
			return nil, err
		}
		if d.LastScrub != nil {
			from = d.LastScrub.CreatedAt
		}
		d.NextScrub = from.Add(h.Config.ScrubInterval)
	}

	base, _ := h.baseURL(c)
	d.SignedURL = base + "/" + publish.SignedIndexPath
	d.IndexURL = base + "/" + publish.IndexPath
	d.KeyringURL = base + "/keyring.gpg"
	return d, nil
}

func (h *handler) syncPanel(ctx context.Context) (syncPanel, error) {
	rules, err := h.Store.ListSyncRules()
	if err != nil {
		return syncPanel{}, err
	}
	p := syncPanel{Rules: len(rules)}
	for _, r := range rules {
		if r.LastRun.After(p.LastRun) {
			p.LastRun = r.LastRun
		}
		if r.LastError != "" {
			p.Failing = append(p.Failing, r)
		}
	}
	if h.Inspector == nil || len(rules) == 0 {
		return p, nil
	}
	// The scheduler knows when it runs next; without it, nothing is shown.
	entries, err := h.Inspector.SchedulerEntries()
	if err != nil {
		h.Log.WarnContext(ctx, "Unable to read the scheduler", slog.Any("error", err))
		return p, nil
	}
	for _, e := range entries {
		if e.Task.Type() == jobs.TypeSyncUpstreams && (p.Next.IsZero() || e.Next.Before(p.Next)) {
			p.Next = e.Next
		}
	}
	return p, nil
}

// workers counts the asynq servers that take hash or mirror jobs: with none,
// jobs wait on "queued" for ever, the complaint admins have most.
func (h *handler) workers() workerPanel {
	if h.Inspector == nil {
		return workerPanel{}
	}
	servers, err := h.Inspector.Servers()
	if err != nil {
		return workerPanel{Error: err.Error()}
	}
	p := workerPanel{Known: true}
	for _, s := range servers {
		if _, ok := s.Queues[jobs.QueueMirror]; !ok {
			if _, ok := s.Queues[jobs.QueueHash]; !ok {
				continue
			}
		}
		p.Servers++
		p.Slots += s.Concurrency
	}
	return p
}

// showHome is the dashboard: disk, images, sync, jobs and the stream's URLs.
func (h *handler) showHome(c *fiber.Ctx) error {
	d, err := h.dashboard(c)
	if err != nil {
		return err
	}
	data := fiber.Map{"D": d}
	if sess := session(c); sess != nil {
		// The scrub button is a plain form, also in the polled region.
		data["CSRF"] = sess.CSRF
	}
	if isHTMX(c) {
		return h.partial(c, "dashboard", data)
	}
	return h.page(c, "dashboard", "Dashboard", "home", data)
}
