package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The web page in a real browser: Debian's chromium, headless, driven by
// chromedp against `sched dev`. Set BANYAN_WEB_SCREENSHOTS to a directory
// to save the timeline and the pool tree as PNGs there (docs/ holds the
// README's).

// chromiumPath finds the browser, or skips the test when it is absent.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed: the browser test needs it (make test installs it with scripts/apt-install.sh chromium)")
	return ""
}

// browser starts a headless chromium for the test and returns its context.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath(t)),
		chromedp.WindowSize(1400, 1000))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// within runs browser actions with a deadline.
func within(t *testing.T, bctx context.Context, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, bctx context.Context, what, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// evalUntil evaluates a JavaScript expression every 100ms until it is true.
func evalUntil(t *testing.T, bctx context.Context, d time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("browser: %s: not true after %s (%v): %s", what, d, err, expr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot captures the element sel as PNG.
func screenshot(t *testing.T, bctx context.Context, sel string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("browser: screenshot %s: %v", sel, err)
	}
	return png
}

func saveScreenshot(t *testing.T, name string, png []byte) {
	t.Helper()
	dir := os.Getenv("BANYAN_WEB_SCREENSHOTS")
	if dir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", name, len(png))
}

// TestWebPageInBrowser encodes a 2-second title in 1-second chunks through
// sched dev (chunk 1 fails once, a failpoint) while the browser shows its
// job: the page updates as tasks finish, without a reload; then it has one
// bar per attempt, the encode stages as labelled groups, and a retry mark.
// The pool page shows the numbers `sched pool tree -o json` gives while a
// job runs, and the agents page lists the agents.
func TestWebPageInBrowser(t *testing.T) {
	bctx := browser(t)
	work := t.TempDir()
	clip := filepath.Join(work, "clip.mp4")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", clip).CombinedOutput()
	if err != nil {
		t.Fatalf("make clip (ffmpeg is required; make test installs it): %v\n%s", err, out)
	}
	httpAddr := freeAddr(t)
	d := startDevWith(t, freeAddr(t), filepath.Join(work, "data"), 2, nil,
		"--storage-root", work, "--http-addr", httpAddr, "--task-env", "BANYAN_FAILPOINT_CHUNK=1")
	for _, p := range [][]string{{"studio", "--guaranteed", "cpu=1,memory=1Gi", "--max", "cpu=64,gpu=4"},
		{"studio/ingest", "--guaranteed", "cpu=500m"}, {"studio/marketing", "--guaranteed", "cpu=250m,memory=256Mi"}} {
		if _, stderr, err := d.run(append([]string{"pool", "create"}, p...)...); err != nil {
			t.Fatalf("pool create %s: %v: %s", p[0], err, stderr)
		}
	}
	if stdout, stderr, err := d.run("encode", clip, "--ladder", "test", "--out", filepath.Join(work, "out"),
		"--chunk", "1s", "--pool", "studio/ingest", "--no-watch"); err != nil || !strings.Contains(stdout, "job-1") {
		t.Fatalf("encode: %v\n%s\n%s", err, stdout, stderr)
	}
	base := "http://" + httpAddr

	// The job's page, opened while the job runs, follows it without a
	// reload: a marker set on the window survives while tasks finish.
	within(t, bctx, 20*time.Second, "open the job's page",
		chromedp.Navigate(base+"/#/job/job-1"), chromedp.WaitVisible(chromedp.CSS(`#timeline .task`)))
	eval[bool](t, bctx, "mark the window", `window.__notReloaded = true`)
	first := eval[int](t, bctx, "count finished tasks",
		`document.querySelectorAll('#timeline .task[data-state="succeeded"]').length`)
	evalUntil(t, bctx, 60*time.Second, "a task finishes on the open page",
		fmt.Sprintf(`document.querySelectorAll('#timeline .task[data-state="succeeded"]').length > %d && window.__notReloaded === true`, first))
	evalUntil(t, bctx, 3*time.Minute, "the job succeeds on the open page",
		`document.querySelector('#timeline[data-state="succeeded"]') !== null && window.__notReloaded === true`)
	evalUntil(t, bctx, 5*time.Second, "no running bar is left",
		`document.querySelector('#timeline .attempt[data-outcome="running"], #timeline .attempt[data-outcome="waiting"]') === null`)

	j := showJob(t, d, "job-1")
	if j.State != "succeeded" {
		t.Fatalf("job %s: %s", j.State, j.Reason)
	}
	type bar struct {
		Task, Outcome, Agent, Title string
		Attempt                     int
	}
	bars := eval[[]bar](t, bctx, "read the bars", `[...document.querySelectorAll('#timeline .attempt')].map(e => ({Task: e.dataset.task,
			Attempt: +e.dataset.attempt, Outcome: e.dataset.outcome, Agent: e.dataset.agent, Title: e.title}))`)
	labels := eval[[]string](t, bctx, "read the stage labels",
		`[...document.querySelectorAll('#timeline .stage-label')].map(e => e.firstChild.textContent)`)
	want := map[string]bool{}
	var wantBars []string
	renditions := map[string]bool{}
	for _, task := range j.Tasks {
		for _, a := range task.Attempts {
			wantBars = append(wantBars, fmt.Sprintf("%s#%d %s %s", task.ID, a.Number, a.Outcome, a.AgentID))
		}
		if r, ok := strings.CutPrefix(task.Name, "enc-"); ok {
			renditions["encode "+r[:strings.LastIndexByte(r, '-')]] = true
		}
	}
	var gotBars []string
	for _, b := range bars {
		gotBars = append(gotBars, fmt.Sprintf("%s#%d %s %s", b.Task, b.Attempt, b.Outcome, b.Agent))
		if b.Agent == "" || !strings.Contains(b.Title, "on "+b.Agent) {
			t.Fatalf("bar %+v: its title does not name its agent", b)
		}
	}
	sort.Strings(wantBars)
	sort.Strings(gotBars)
	if !reflect.DeepEqual(gotBars, wantBars) {
		t.Fatalf("one bar per attempt:\n got %v\nwant %v", gotBars, wantBars)
	}
	for _, l := range labels {
		want[l] = true
	}
	for _, l := range []string{"plan", "audio", "assemble", "index", "verify"} {
		if !want[l] {
			t.Fatalf("stage %q missing from %v", l, labels)
		}
	}
	if len(renditions) != 2 {
		t.Fatalf("renditions %v", renditions)
	}
	for r := range renditions {
		if !want[r] {
			t.Fatalf("stage %q missing from %v", r, labels)
		}
	}
	evalUntil(t, bctx, 2*time.Second, "the failed chunk's retry is marked",
		`document.querySelectorAll('#timeline .attempt[data-outcome="failed"]').length > 0 && document.querySelectorAll('#timeline .mark.retry').length > 0`)
	saveScreenshot(t, "web-timeline.png", screenshot(t, bctx, "#view"))

	// The pool tree while a job runs in studio/marketing equals the CLI's.
	jobFile := filepath.Join(work, "sleep.yaml")
	if err := os.WriteFile(jobFile, []byte("name: sleeper\npool: studio/marketing\ntasks:\n"+
		"  - name: sleep\n    command: [sleep, \"60\"]\n    resources: {cpu: 500m, memory: 64Mi}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := d.run("job", "submit", jobFile); err != nil {
		t.Fatalf("submit: %v: %s", err, stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for showJob(t, d, "job-2").State != "running" {
		if time.Now().After(deadline) {
			t.Fatal("the sleeping job does not run")
		}
		time.Sleep(100 * time.Millisecond)
	}
	within(t, bctx, 10*time.Second, "open the pool page",
		chromedp.Navigate(base+"/?view=pools#/pools"),
		chromedp.WaitVisible(chromedp.CSS(`#pool-tree td[data-pool="studio/marketing"]`)))
	evalUntil(t, bctx, 10*time.Second, "the running job's usage is shown",
		`document.querySelector('#pool-tree td[data-pool="studio/marketing"][data-resource="cpu"]').dataset.used === "500"`)
	cli := poolTreeNumbers(t, d)
	page := eval[map[string]string](t, bctx, "read the pool page", `Object.fromEntries(
		[...document.querySelectorAll('#pool-tree td[data-resource]')].map(e => [e.dataset.pool + " " + e.dataset.resource,
			e.dataset.used + "/" + e.dataset.guaranteed + "/" + e.dataset.max]).concat(
		[...document.querySelectorAll('#pool-tree tr.pool')].map(e => [e.dataset.pool + " tasks",
			e.querySelector('[data-queued]').dataset.queued + "/" + e.querySelector('[data-running]').dataset.running])))`)
	if !reflect.DeepEqual(page, cli) {
		t.Fatalf("pool page\n%v\nsched pool tree -o json\n%v", page, cli)
	}
	saveScreenshot(t, "web-pools.png", screenshot(t, bctx, "#view"))

	within(t, bctx, 10*time.Second, "open the jobs list",
		chromedp.Navigate(base+"/?view=jobs#/jobs"), chromedp.WaitVisible(chromedp.CSS(`#jobs tr.job`)))
	evalUntil(t, bctx, 5*time.Second, "both jobs are listed, newest first",
		`[...document.querySelectorAll('#jobs tr.job')].map(e => e.dataset.job).join() === "job-2,job-1"`)
	within(t, bctx, 10*time.Second, "filter by name", chromedp.SendKeys(chromedp.CSS(`#filter-name`), "sleep"))
	evalUntil(t, bctx, 5*time.Second, "the name filter applies",
		`[...document.querySelectorAll('#jobs tr.job')].map(e => e.dataset.job).join() === "job-2"`)
	within(t, bctx, 10*time.Second, "open the agents page",
		chromedp.Navigate(base+"/?view=agents#/agents"), chromedp.WaitVisible(chromedp.CSS(`#agents tr.agent`)))
	evalUntil(t, bctx, 5*time.Second, "both agents are listed", `document.querySelectorAll('#agents tr.agent').length === 2`)
	if _, _, err := d.run("job", "cancel", "job-2"); err != nil {
		t.Fatal(err)
	}
}

// poolTreeNumbers reads `sched pool tree -o json` as "pool resource" ->
// "used/guaranteed/max" (max "" when unset) and "pool tasks" ->
// "queued/running".
func poolTreeNumbers(t *testing.T, d *devProc) map[string]string {
	t.Helper()
	stdout, stderr, err := d.run("pool", "tree", "-o", "json")
	if err != nil {
		t.Fatalf("pool tree: %v: %s", err, stderr)
	}
	var resp struct {
		Pools []struct {
			Path       string           `json:"path"`
			Guaranteed map[string]int64 `json:"guaranteed"`
			Max        map[string]int64 `json:"max"`
			MaxSet     []string         `json:"max_set"`
			Usage      map[string]int64 `json:"usage"`
			Queued     int              `json:"queued_tasks"`
			Running    int              `json:"running_tasks"`
		} `json:"pools"`
	}
	if err := json.Unmarshal([]byte(stdout), &resp); err != nil {
		t.Fatalf("pool tree json: %v\n%s", err, stdout)
	}
	fields := map[string]string{"cpu": "cpu_millis", "memory": "memory_bytes", "gpu": "gpus",
		"gpu_memory": "gpu_memory_bytes", "nvenc": "nvenc"}
	out := map[string]string{}
	for _, p := range resp.Pools {
		for res, f := range fields {
			m := ""
			for _, s := range p.MaxSet {
				if s == res {
					m = fmt.Sprint(p.Max[f])
				}
			}
			out[p.Path+" "+res] = fmt.Sprintf("%d/%d/%s", p.Usage[f], p.Guaranteed[f], m)
		}
		out[p.Path+" tasks"] = fmt.Sprintf("%d/%d", p.Queued, p.Running)
	}
	return out
}

// TestWebPageAsksForToken runs the page against `sched dev --acl`: the API
// answers 401 without a token, so the page asks for one; a wrong token is
// refused; a token that reads only the pool studio shows only its jobs and
// not the agents; the token lasts across a reload of the tab.
func TestWebPageAsksForToken(t *testing.T) {
	bctx := browser(t)
	dir := t.TempDir()
	addr, httpAddr := freeAddr(t), freeAddr(t)
	dev := exec.Command(schedBin, "dev", "--acl", "--addr", addr, "--http-addr", httpAddr,
		"--data-dir", filepath.Join(dir, "data"), "--agents", "1", "--lease", "2s", "--log-level", "warn")
	var devLog syncBuffer
	dev.Stdout, dev.Stderr = &devLog, &devLog
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devProc{cmd: dev, addr: addr}
	t.Cleanup(d.kill)
	var out, stderr string
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; {
		if out, stderr, err = d.run("acl", "bootstrap"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acl bootstrap: %v: %s\n%s", err, stderr, devLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	secretRE := regexp.MustCompile(`Secret ID:\s+(\S+)`)
	root := "--token=" + secretRE.FindStringSubmatch(out)[1]
	policy := filepath.Join(dir, "viewer.yaml")
	if err := os.WriteFile(policy, []byte("pools:\n  studio: read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		if _, stderr, err := d.run(append([]string{root}, args...)...); err != nil {
			t.Fatalf("%v: %v: %s", args, err, stderr)
		}
	}
	run("pool", "create", "studio")
	run("acl", "policy", "apply", "viewer", policy)
	for _, pool := range []string{"default", "studio"} { // job-1, job-2
		job := filepath.Join(dir, pool+".yaml")
		spec := "name: hi-" + pool + "\npool: " + pool + "\ntasks:\n  - name: t\n    command: [\"true\"]\n"
		if err := os.WriteFile(job, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		run("job", "submit", job)
	}
	out, stderr, err = d.run(root, "acl", "token", "create", "--name", "viewer", "--policy", "viewer")
	if err != nil {
		t.Fatalf("token create: %v: %s", err, stderr)
	}
	viewer := secretRE.FindStringSubmatch(out)[1]

	base := "http://" + httpAddr
	within(t, bctx, 20*time.Second, "the page asks for a token",
		chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`#login`)))
	within(t, bctx, 10*time.Second, "enter a wrong token",
		chromedp.SendKeys(chromedp.CSS(`#token`), "made-up"), chromedp.Click(chromedp.CSS(`#login button`)))
	evalUntil(t, bctx, 10*time.Second, "the wrong token is refused",
		`!document.getElementById('login').hidden && document.getElementById('login-error').textContent.includes('unknown or was revoked')`)
	within(t, bctx, 10*time.Second, "enter the viewer's token",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[string](`document.getElementById('token').value = ''`)(ctx, tg)
			return err
		}),
		chromedp.SendKeys(chromedp.CSS(`#token`), viewer),
		chromedp.Click(chromedp.CSS(`#login button`)), chromedp.WaitVisible(chromedp.CSS(`#jobs tr.job`)))
	if got := eval[[]string](t, bctx, "the jobs shown",
		`[...document.querySelectorAll('#jobs tr.job')].map(e => e.dataset.job)`); !reflect.DeepEqual(got, []string{"job-2"}) {
		t.Fatalf("the viewer sees jobs %v, want only job-2 (pool studio)", got)
	}
	within(t, bctx, 20*time.Second, "reload the agents page",
		chromedp.Navigate(base+"/?view=agents#/agents"), chromedp.WaitVisible(chromedp.CSS(`#view .error`)))
	evalUntil(t, bctx, 5*time.Second, "the agents are not shown without cluster read",
		`document.getElementById('login').hidden && document.querySelector('#view .error').textContent.includes('cluster')`)
}
