package main

// Browser test: Debian's Chromium, headless, driven with chromedp through
// the portal of the real binary, as an administrator on a laptop would use
// it. Screenshots of every page go to the test's artifact directory.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/units"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

const (
	// laptopWidth and laptopHeight are the viewport: a common laptop screen.
	laptopWidth, laptopHeight = 1366, 768
	// browserWait bounds every wait for something to appear on a page; the
	// jobs of this test take a few seconds, asynq polls about once a second.
	browserWait = 45 * time.Second
	adminPass   = "browser-test-password-0123"
)

// TestBrowserAdminFlow logs in, uploads a boot image through the form
// watching its progress bar, filters a signed test upstream and mirrors one
// product, follows the job to 100 % on the Jobs page, sees both images ready,
// checks the MAAS setup commands and deletes the uploaded image: web and
// worker as separate processes with a real redis-server, Chromium headless.
func TestBrowserAdminFlow(t *testing.T) {
	integration(t)
	t.Parallel()
	chrome := chromiumPath(t)
	client := newClient(t)

	key, keyring := newUpstreamKey(t)
	tree, up := signedUpstream(t, key, upstreamtest.Options{
		Releases: []upstreamtest.Release{{Name: "jammy", Version: "22.04", Codename: "Jammy Jellyfish"},
			{Name: "noble", Version: "24.04", Codename: "Noble Numbat"}},
		Arches: []string{"amd64"}, Versions: []string{"20250718"}, ItemSize: 96 << 10, Bootloaders: true, Seed: 61,
	})
	upstreamURL := up.URL + "/"
	redis := startRedis(t)
	dataDir := t.TempDir()
	web := startServer(t, "web", dataDir, testToken, redis.URL(),
		"CUSTOMSTREAM_ADMIN_PASSWORD="+adminPass, "CUSTOMSTREAM_UPSTREAM_KEYRING="+keyring)
	startServer(t, "worker", dataDir, testToken, redis.URL())
	base := web.Base()

	b := newBrowser(t, chrome)

	// Log in: the portal sends a visitor without a session to the login page.
	b.navigate(base + "/images")
	b.waitVisible(`#password`)
	b.shot("login")
	b.do(chromedp.SendKeys(chromedp.ID("password"), adminPass))
	b.do(chromedp.Click(`//main//button[normalize-space()="Log in"]`))
	b.waitJS("the Images page after logging in", `location.pathname === "/images" && !!document.getElementById("image-rows")`)
	assert.Contains(t, b.text(`#image-rows`), "No images yet", "the empty state of the Images page")
	b.shot("images-empty")

	// Upload a small boot image through the form.
	b.do(chromedp.Click(`//main//a[normalize-space()="Upload an image"]`))
	b.waitVisible(`#upload-form`)
	files := map[string][]byte{"kernel": randomBytes(610, 300<<10), "initrd": randomBytes(611, 700<<10), "rootfs": randomBytes(612, 2<<20)}
	dir := t.TempDir()
	for name, data := range files {
		path := filepath.Join(dir, name+".img")
		require.NoError(t, os.WriteFile(path, data, 0o644))
		b.do(chromedp.SetUploadFiles(chromedp.ID("f-"+name), []string{path}))
	}
	for id, v := range map[string]string{"f-os": "ubuntu", "f-release": "noble", "f-version": "24.04", "f-label": "browser"} {
		b.do(chromedp.SendKeys(chromedp.ID(id), v))
	}
	b.shot("upload-form")
	// The browser sends at 1 MiB/s, so the bar is seen moving; the server's
	// answer, which redirects at once to the Images page, is held until the
	// page has shown the finished bar.
	b.limitUpload(base+"/images/upload", 1<<20)
	answer := b.holdFirstAnswer("*/images/upload")
	b.do(chromedp.Click(chromedp.ID("upload-submit")))
	uploadBar := func(cond string) string {
		return `(() => {
			const bar = document.getElementById("upload-progress");
			const pct = bar ? bar.value : -1, text = document.getElementById("upload-progress-text").textContent.trim();
			return !!bar && !bar.classList.contains("d-none") && bar.getBoundingClientRect().width > 100 &&
				document.getElementById("upload-submit").disabled && text.startsWith(pct + "% sent · ") &&
				/ sent · [0-9.]+ (B|KiB|MiB) of [0-9.]+ MiB$/.test(text) && ` + cond + `;
		})()`
	}
	b.waitJS("the upload progress bar moving", uploadBar(`pct > 0 && pct < 100`))
	b.shot("upload-progress")
	held := answer.wait(t)
	b.waitJS("the upload progress bar at 100 %", uploadBar(`pct === 100`))
	b.shot("upload-sent")
	b.limitUpload("", 0)
	require.NoError(t, answer.release(t, held), "the answer to the upload")
	b.waitJS("the Images page after the upload", `location.pathname === "/images" && location.search.startsWith("?uploaded=")`)
	loc := b.location()
	u, err := url.Parse(loc)
	require.NoError(t, err)
	uploadedID := u.Query().Get("uploaded")
	require.NotEmpty(t, uploadedID, "the redirect after the upload names the image: %s", loc)
	assert.Contains(t, b.text(`main .alert-success`), "Upload received")
	uploadedRow := "#image-" + uploadedID
	b.waitJS("the uploaded image ready", rowBadgeIs(uploadedRow, "ready"))
	uploadedProduct := b.text(uploadedRow + " td code")
	require.NotEmpty(t, uploadedProduct)

	// Browse the upstream, filter it, and mirror one product without the bootloaders.
	b.clickNav("Upstream")
	b.waitVisible(`#upstream-url`)
	b.do(chromedp.Clear(chromedp.ID("upstream-url")), chromedp.SendKeys(chromedp.ID("upstream-url"), upstreamURL))
	b.do(chromedp.Click(`//main//form//button[normalize-space()="Load"]`))
	b.waitVisible(`#upstream-filter`)
	assert.Contains(t, b.text(`#browse`), "signed · verified", "the test upstream is signed with the configured key")
	jammy := treeEntries(tree, func(f map[string]string) bool { return f["release"] == "jammy" })
	require.NotEmpty(t, jammy)
	b.do(chromedp.SendKeys(`#upstream-filter input[name="filters"]`, "release=jammy"))
	want, err := json.Marshal(slices.Sorted(maps.Keys(jammy)))
	require.NoError(t, err)
	b.waitJS("only the jammy products listed", fmt.Sprintf(`JSON.stringify([...document.querySelectorAll(
		'#upstream-rows input[name="product_id"]')].map(el => el.value).sort()) === %q`, want))
	ga := findTreeProduct(t, tree, map[string]string{"release": "jammy", "arch": "amd64", "subarch": "ga-22.04"})
	b.shot("upstream-filtered")
	// Each change asks for the plan. The answer to the first is held back
	// while the second change is made: the page must end on the plan of
	// the last change, whatever order the answers come in.
	var gaSize int64
	for _, it := range latestVersionOf(t, tree, ga).Items {
		gaSize += it.Size
	}
	plan := fmt.Sprintf("1 product selected: %s in all, %s to download.", units.Bytes(gaSize), units.Bytes(gaSize))
	summary := `document.getElementById("selection-summary").textContent.replace(/\s+/g, " ").trim()`
	b.do(chromedp.Evaluate[chromedp.Void](`window.planSent = 0; window.planAnswered = 0;
		const isPlan = e => e.detail.pathInfo && e.detail.pathInfo.requestPath === "/upstream/plan";
		document.addEventListener("htmx:beforeSend", e => { if (isPlan(e)) window.planSent++; });
		document.addEventListener("htmx:afterRequest", e => { if (isPlan(e)) window.planAnswered++; });`))
	late := b.holdFirstAnswer("*/upstream/plan")
	b.do(chromedp.Click(fmt.Sprintf(`#upstream-rows input[value=%q]`, ga)))
	first := late.wait(t)
	b.do(chromedp.Click(chromedp.ID("bootloaders")))
	// A page that sent the second request at once gets its answer first.
	b.waitJS("the second plan request waiting or answered", `window.planSent === 1 || window.planAnswered === 1`)
	require.NoError(t, late.release(t, first), "the answer to the first plan request")
	b.waitJS("both plan requests answered", `window.planAnswered === 2`)
	shown, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](summary))
	require.NoError(t, err)
	require.Equal(t, plan, shown, "the late answer to an earlier selection replaced the plan")
	// The bootloaders are in the plan by default.
	b.do(chromedp.Click(chromedp.ID("bootloaders")))
	b.waitJS("the mirror plan with the bootloaders", fmt.Sprintf(`%s.startsWith("1 product selected plus %d bootloaders: ")`,
		summary, len(treeProductIDs(tree, upstreamtest.BootloaderContentID))))
	b.do(chromedp.Click(chromedp.ID("bootloaders")))
	b.waitJS("the mirror plan of one product", fmt.Sprintf(`%s === %q`, summary, plan))
	b.shot("mirror-plan")
	// A slow upstream (16 KiB/s a connection: 6 s for the squashfs) keeps
	// the job running long enough to be seen moving.
	up.Throttle(16 << 10)
	b.do(chromedp.Click(`//form[@id="mirror-form"]//button[normalize-space()="Mirror selected"]`))
	b.waitJS("the mirror started", `document.getElementById("mirror-result").textContent.includes("Mirroring started: 1 job")`)

	// The mirror job moves and reaches 100 % on the Jobs page, which
	// updates itself: the mark set on the page survives, so no reload.
	b.do(chromedp.Click(`//div[@id="mirror-result"]//a[normalize-space()="Jobs"]`))
	b.waitVisible(`#job-rows`)
	b.do(chromedp.Evaluate[chromedp.Void](`window.samePage = true`))
	mirrorJob := fmt.Sprintf(`[...document.querySelectorAll("#job-rows tbody tr")].find(tr => tr.textContent.includes(%q))`, ga)
	b.waitJS("the mirror job running", `(() => {
		const row = `+mirrorJob+`;
		const bar = row && row.querySelector("progress");
		return !!bar && row.cells[1].textContent.trim() === "running" && bar.value > 0 && bar.value < 100 &&
			/^\d+% · .+ of .+ · /.test(row.cells[2].innerText.trim());
	})()`)
	b.shot("jobs-running")
	b.waitJS("the mirror job succeeded at 100 % on the same page", `(() => {
		const row = `+mirrorJob+`;
		const bar = row && row.querySelector("progress");
		return !!bar && window.samePage === true && row.cells[1].textContent.trim() === "succeeded" && bar.value === 100 &&
			bar.getBoundingClientRect().width > 50 && row.cells[2].innerText.trim().startsWith("100% · ");
	})()`)
	b.waitJS("the hash job of the upload succeeded", `[...document.querySelectorAll("#job-rows tbody tr")].some(tr =>
		tr.querySelector(".badge").textContent.trim() === "Hash" && tr.cells[1].textContent.trim() === "succeeded")`)
	b.shot("jobs-done")

	// Both images are ready on the Images page.
	b.clickNav("Images")
	b.waitVisible(`#image-rows`)
	mirroredRow := fmt.Sprintf(`//div[@id="image-rows"]//tr[.//code[normalize-space()=%q]]`, ga)
	b.waitJS("the mirrored image ready", fmt.Sprintf(`(() => {
		const row = [...document.querySelectorAll("#image-rows tbody tr")].find(tr => tr.querySelector("td code").textContent.trim() === %q);
		return row && row.textContent.includes("mirrored from %s") && row.querySelector(".badge").textContent.trim() === "ready";
	})()`, ga, upstreamURL))
	b.waitJS("the uploaded image ready", rowBadgeIs(uploadedRow, "ready"))
	b.shot("images-ready")

	// The MAAS setup page gives the commands for this server's stream and keyring.
	b.clickNav("MAAS setup")
	b.waitVisible(`#cmd-signed`)
	assert.Equal(t, "curl -fsSo keyring.gpg "+base+"/keyring.gpg\n"+
		"maas $PROFILE boot-sources create url="+base+"/"+publish.SignedIndexPath+" keyring_data@=keyring.gpg",
		strings.TrimSpace(b.text(`#cmd-signed`)))
	assert.Equal(t, "maas $PROFILE boot-sources create url="+base+"/"+publish.IndexPath, strings.TrimSpace(b.text(`#cmd-38`)))
	selectCmd := b.text(`#cmd-select`)
	assert.Contains(t, selectCmd, "boot-source-selections create $SOURCE_ID os=ubuntu release=jammy arches=amd64")
	assert.Contains(t, selectCmd, "boot-source-selections create $SOURCE_ID os=ubuntu release=noble arches=amd64")
	keyURL := b.attr(`//main//a[normalize-space()="`+base+`/keyring.gpg"]`, "href")
	assert.Equal(t, base+"/keyring.gpg", keyURL)
	assert.NotEmpty(t, download(t, client, keyURL), "the keyring the setup page names")
	b.shot("setup")

	// Delete the uploaded image: it leaves the page and the published index.
	b.clickNav("Images")
	b.waitVisible(uploadedRow)
	version := b.text(uploadedRow + " td:nth-child(4) code")
	confirms := b.acceptDialogs()
	b.do(chromedp.Click(fmt.Sprintf(`//tr[@id=%q]//button[normalize-space()="Delete"]`, "image-"+uploadedID)))
	b.waitJS("the uploaded image gone", fmt.Sprintf(`!document.querySelector(%q) && document.querySelectorAll("#image-rows tbody tr").length === 1`, uploadedRow))
	assert.Equal(t, []string{"Delete version " + version + " of " + uploadedProduct + "? It leaves the stream at once."}, confirms.messages())
	b.waitVisible(mirroredRow)
	assert.Equal(t, "Deleted version "+version+" of "+uploadedProduct+": it is out of the stream.", b.text(`#image-rows [role="status"]`))
	b.shot("after-delete")
	waitIndex(t, client, base, "the deleted image out of the index", func(ids map[string]bool) bool { return !ids[uploadedProduct] && ids[ga] })

	// The dashboard sums it up: one ready mirrored version, a live worker,
	// the stream's URLs.
	b.clickNav("Dashboard")
	b.waitVisible(`#dashboard`)
	b.waitJS("the dashboard's counts", `(() => {
		const images = document.querySelector("#card-images").innerText, jobs = document.querySelector("#card-jobs").innerText;
		return images.includes("1 Ready") && images.includes("0 uploaded · 1 mirrored") && jobs.includes("1 worker") &&
			!document.querySelector("#no-worker");
	})()`)
	assert.Equal(t, base+"/"+publish.SignedIndexPath, b.attr(`#dash-signed`, "value"))
	assert.Equal(t, base+"/keyring.gpg", b.attr(`#dash-keyring`, "value"))
	b.shot("dashboard")

	// A setting changes at once, and the audit log has every action above.
	b.clickNav("Settings")
	b.do(chromedp.SetValue(`#job-retention`, "7"), chromedp.Click(`//div[@id="settings"]//button[normalize-space()="Save"]`))
	b.waitJS("the setting saved", `(document.querySelector("#settings [role=status]") || {}).textContent === "Saved."`)
	assert.Equal(t, "7", b.attr(`#job-retention`, "value"))
	b.shot("settings")
	b.clickNav("Audit log")
	b.waitVisible(`#audit-rows`)
	b.waitJS("the audit log's entries", `(() => {
		const text = document.querySelector("#audit-rows").innerText;
		return ["session.login", "image.upload", "mirror.start", "image.delete", "settings.change"].every(a => text.includes(a));
	})()`)
	b.shot("audit")
}

// rowBadgeIs is a predicate: the image row sel shows the status badge want.
func rowBadgeIs(sel, want string) string {
	return fmt.Sprintf(`(() => { const b = document.querySelector(%q); return !!b && b.textContent.trim() === %q; })()`, sel+" .badge", want)
}

// waitIndex polls the published index until ok holds for the product ids it lists.
func waitIndex(t *testing.T, client *http.Client, base, what string, ok func(map[string]bool) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		listed := map[string]bool{}
		data := download(t, client, base+"/"+publish.IndexPath)
		var index simplestreams.Index
		require.NoError(t, json.Unmarshal(data, &index))
		for _, e := range index.Index {
			for _, id := range e.Products {
				listed[id] = true
			}
		}
		if ok(listed) {
			return
		}
		require.True(t, time.Now().Before(deadline), "%s: the index lists %v", what, listed)
		time.Sleep(50 * time.Millisecond)
	}
}

// chromiumPath finds Debian's chromium. Missing, the test is skipped loudly;
// as root it fails, since `make test-tools` installs it then.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Geteuid() == 0 {
		t.Fatal("chromium is not installed although the tests run as root: `make test-tools` (scripts/ensure-test-tools) installs it")
	}
	t.Skip("!!!!!!!! chromium not installed: install Debian's chromium; browser test skipped !!!!!!!!")
	return ""
}

// browser is one headless Chromium tab with what the test saw in it.
type browser struct {
	t     *testing.T
	ctx   context.Context
	dir   string // screenshots
	shots int

	mu       sync.Mutex
	problems []string // console errors, uncaught exceptions, CSP violations
}

// newBrowser starts Chromium with a laptop-sized window and collects its
// console errors from the start; it stops with the test.
func newBrowser(t *testing.T, chrome string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(laptopWidth, laptopHeight),
		// Root in a container has no user namespaces for the sandbox.
		chromedp.NoSandbox,
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, dir: t.ArtifactDir()}
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(laptopWidth, laptopHeight)), "start chromium")
	// A violation of the Content-Security-Policy is an error the page must
	// not have; the listener comes from the test, not the page.
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `document.addEventListener("securitypolicyviolation", e =>
			console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline") + " in " + e.sourceFile + ":" + e.lineNumber));`,
	})
	require.NoError(t, err)
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleException:
				b.mu.Lock()
				b.problems = append(b.problems, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
				b.mu.Unlock()
			case chromedp.ConsoleWarning:
				t.Logf("browser console: %s (%s)", m, m.URL)
			}
		}
	}()
	// Registered after the browser's own cleanup, so it runs first: every
	// page the test saw, also when it stopped early.
	t.Cleanup(b.noProblems)
	t.Logf("screenshots in %s", b.dir)
	return b
}

// do runs the steps, failing the test with the page's location on an error.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fatalf("%v", err)
	}
}

// fatalf ends the test with the page's address and text, and a screenshot.
func (b *browser) fatalf(format string, args ...any) {
	b.t.Helper()
	main, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(document.querySelector("main") || document.body).innerText`))
	b.shot("failed")
	b.t.Fatalf("browser at %s: %s\npage text:\n%s", b.location(), fmt.Sprintf(format, args...), main)
}

func (b *browser) navigate(url string) { b.t.Helper(); b.do(chromedp.Navigate(url)) }

func (b *browser) waitVisible(sel string) { b.t.Helper(); b.do(chromedp.WaitVisible(sel)) }

// clickNav follows the navigation bar's link labelled label, whatever its position.
func (b *browser) clickNav(label string) {
	b.t.Helper()
	b.do(chromedp.Click(fmt.Sprintf(`//nav//a[normalize-space()=%q]`, label)))
}

// waitJS waits until the JavaScript expression is true, for at most
// browserWait. It polls from Go: a poll inside the page would end with the
// page when a click navigates.
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(browserWait)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.fatalf("waiting for %s: still false after %s (last error: %v)", what, browserWait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// text is the visible text of the first element sel matches.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	require.NoError(b.t, err, "text of %s at %s", sel, b.location())
	return s
}

// attr is the attribute name of the first element sel matches.
func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.AttributeValue(sel, name))
	require.NoError(b.t, err, "attribute %s of %s at %s", name, sel, b.location())
	require.True(b.t, v.Exists, "%s has no attribute %s", sel, name)
	return v.Value
}

func (b *browser) location() string {
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	return loc
}

// shot saves a screenshot of the whole page, numbered in the test's order.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(b.t, err, "screenshot %s", name)
	b.shots++
	require.NoError(b.t, os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.shots, name)), png, 0o644))
}

// noProblems fails the test on any console error, exception or CSP violation.
func (b *browser) noProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		b.t.Errorf("the browser reported %d errors:\n%s", len(b.problems), strings.Join(b.problems, "\n"))
	}
}

// limitUpload makes the browser send requests to url at bytesPerSecond;
// an empty url lifts the limit.
func (b *browser) limitUpload(url string, bytesPerSecond float64) {
	b.t.Helper()
	rules := []*network.Conditions{}
	if url != "" {
		rules = append(rules, &network.Conditions{URLPattern: url, DownloadThroughput: -1, UploadThroughput: bytesPerSecond})
	}
	_, err := chromedp.Call(b.ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: rules})
	require.NoError(b.t, err)
}

// heldAnswer is the server's answer to one request, paused in the browser.
type heldAnswer struct {
	b      *browser
	paused chan fetch.EventRequestPaused
	stop   context.CancelFunc
}

// holdFirstAnswer pauses the answer to the next request whose URL matches
// pattern, until released; the request itself goes out whole. Answers to
// later matching requests pass.
func (b *browser) holdFirstAnswer(pattern string) *heldAnswer {
	b.t.Helper()
	ctx, stop := context.WithCancel(b.ctx)
	events := chromedp.Events(ctx, fetch.RequestPaused)
	_, err := chromedp.Call(b.ctx, fetch.Enable, fetch.EnableParams{
		Patterns: []*fetch.RequestPattern{{URLPattern: pattern, RequestStage: fetch.RequestStageResponse}},
	})
	require.NoError(b.t, err)
	h := &heldAnswer{b: b, paused: make(chan fetch.EventRequestPaused, 1), stop: stop}
	go func() {
		first := true
		for ev, err := range events {
			if err != nil {
				return
			}
			if first {
				first = false
				h.paused <- ev
				continue
			}
			if _, err := chromedp.Call(b.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID}); err != nil {
				return
			}
		}
	}()
	return h
}

// wait returns once the answer is held.
func (h *heldAnswer) wait(t *testing.T) fetch.EventRequestPaused {
	t.Helper()
	select {
	case ev := <-h.paused:
		return ev
	case <-time.After(browserWait):
		h.b.fatalf("no answer held within %s", browserWait)
		return fetch.EventRequestPaused{}
	}
}

// release lets the held answer through, and stops holding. The page may
// have given up the request already: then there is nothing to let through.
func (h *heldAnswer) release(t *testing.T, ev fetch.EventRequestPaused) error {
	t.Helper()
	_, cerr := chromedp.Call(h.b.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
	h.stop()
	_, err := chromedp.Call(h.b.ctx, fetch.Disable, cdp.Empty{})
	require.NoError(t, err)
	return cerr
}

// dialogs records the confirmations the page asked for.
type dialogs struct {
	mu   sync.Mutex
	msgs []string
}

func (d *dialogs) messages() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.msgs...)
}

// acceptDialogs answers every confirm() of the page with OK, as an admin
// who means it, and records what the page asked.
func (b *browser) acceptDialogs() *dialogs {
	d := &dialogs{}
	events := chromedp.Events(b.ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			d.mu.Lock()
			d.msgs = append(d.msgs, ev.Message)
			d.mu.Unlock()
			if _, err := chromedp.Call(b.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}); err != nil {
				return
			}
		}
	}()
	return d
}
