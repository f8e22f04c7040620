package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/chromedp/chromedp"

	"github.com/banyan-sched/banyan/agent"
	"github.com/banyan-sched/banyan/agent/fingerprint"
	"github.com/banyan-sched/banyan/pool"
)

// fakeGPU is one GPU of the mock NVML library the GPU host's agent
// fingerprints.
type fakeGPU struct {
	model  string
	memory uint64
	brand  nvml.BrandType
}

// mockNVML is go-nvml's mock with the GPUs given: each encodes (NVENC) and
// decodes, and none is in MIG mode.
func mockNVML(gpus ...fakeGPU) *mock.Interface {
	devs := make([]nvml.Device, len(gpus))
	for i, g := range gpus {
		devs[i] = &mock.Device{
			GetNameFunc:       func() (string, nvml.Return) { return g.model, nvml.SUCCESS },
			GetUUIDFunc:       func() (string, nvml.Return) { return fmt.Sprintf("GPU-fake-%d", i), nvml.SUCCESS },
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: g.memory}, nvml.SUCCESS },
			GetMigModeFunc:    func() (int, int, nvml.Return) { return 0, 0, nvml.ERROR_NOT_SUPPORTED },
			GetEncoderCapacityFunc: func(nvml.EncoderType) (int, nvml.Return) {
				return 100, nvml.SUCCESS
			},
			GetDecoderUtilizationFunc: func() (uint32, uint32, nvml.Return) { return 0, 1000, nvml.SUCCESS },
			GetBrandFunc:              func() (nvml.BrandType, nvml.Return) { return g.brand, nvml.SUCCESS },
		}
	}
	return &mock.Interface{
		InitFunc:           func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
		DeviceGetCountFunc: func() (int, nvml.Return) { return len(devs), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= len(devs) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devs[i], nvml.SUCCESS
		},
	}
}

// startGPUAgent runs the real agent in the test process, fingerprinted
// through the mock NVML library, against the server at addr.
func startGPUAgent(t *testing.T, id, addr string, gpus ...fakeGPU) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fp, err := fingerprint.Collect(context.Background(), fingerprint.Options{NVML: mockNVML(gpus...),
		NVENCSessionsPerGPU: 3, NVENCLimit: fingerprint.LimitPerDevice, Labels: map[string]string{"hostname": id}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if len(fp.Gpus) != len(gpus) {
		t.Fatalf("fingerprint has %d GPUs, want %d: %v", len(fp.Gpus), len(gpus), fp.Gpus)
	}
	fp.Hostname = id
	a, err := agent.New(agent.Config{ID: id, Servers: []string{addr}, Fingerprint: fp, TaskDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		a.Shutdown()
	})
}

// agentGPUJSON is what `sched agent show ID -o json` says of an agent's
// GPUs.
type agentGPUJSON struct {
	State       string `json:"state"`
	Fingerprint struct {
		Gpus []struct {
			Index           int32  `json:"index"`
			UUID            string `json:"uuid"`
			Model           string `json:"model"`
			MemoryBytes     int64  `json:"memory_bytes"`
			EncoderSessions int32  `json:"encoder_sessions"`
		} `json:"gpus"`
	} `json:"fingerprint"`
	GpuUse []struct {
		UUID        string `json:"uuid"`
		MemoryBytes int64  `json:"memory_bytes"`
		Nvenc       int32  `json:"nvenc"`
		Tasks       int32  `json:"tasks"`
	} `json:"gpu_use"`
}

// gpuCards is what the agents page should show on each GPU card of agent
// id, built from `sched agent show ID -o json`: index -> its text.
func gpuCards(t *testing.T, d *devProc, id string) map[string]string {
	t.Helper()
	out, stderr, err := d.run("agent", "show", id, "-o", "json")
	if err != nil {
		t.Fatalf("agent show %s: %v: %s", id, err, stderr)
	}
	var a agentGPUJSON
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("agent show json: %v\n%s", err, out)
	}
	cards := map[string]string{}
	for _, g := range a.Fingerprint.Gpus {
		var usedMem int64
		var nvenc, tasks int32
		for _, u := range a.GpuUse {
			if u.UUID == g.UUID {
				usedMem, nvenc, tasks = u.MemoryBytes, u.Nvenc, u.Tasks
			}
		}
		plural := "s"
		if tasks == 1 {
			plural = ""
		}
		cards[fmt.Sprint(g.Index)] = fmt.Sprintf("GPU %d %s mem %s/%s, %d/%d NVENC sessions (%d free), %d task%s",
			g.Index, g.Model, pool.FormatBytes(usedMem), pool.FormatBytes(g.MemoryBytes), nvenc, g.EncoderSessions,
			g.EncoderSessions-nvenc, tasks, plural)
	}
	return cards
}

// pageGPUCards reads the GPU cards the agents page renders for agent id:
// index -> its text, with the free sessions worked out from used/total.
const pageGPUCards = `(() => {
	const out = {};
	for (const e of document.querySelectorAll('#agents tr.agent[data-agent="%s"] .gpu')) {
		let text = e.innerText.replace(/\s+/g, " ").trim();
		text = text.replace(/(\d+)\/(\d+) NVENC sessions/, (m, u, n) => m + " (" + (n - u) + " free)");
		out[e.dataset.gpu] = text;
	}
	return out;
})()`

// TestWebAgentsGPUsInBrowser opens the agents page in chromium against a
// real server with a real agent whose GPUs come from go-nvml's mock (there
// is no GPU here): each GPU card shows the model, memory and NVENC
// sessions used/total that `sched agent show -o json` gives. A task that
// takes an NVENC session changes the numbers on the open page, without a
// reload, and they still equal the CLI's.
func TestWebAgentsGPUsInBrowser(t *testing.T) {
	bctx := browser(t)
	httpAddr := freeAddr(t)
	d := startDevWith(t, freeAddr(t), filepath.Join(t.TempDir(), "data"), 0, nil, "--http-addr", httpAddr)
	const host = "gpu-host"
	startGPUAgent(t, host, d.addr,
		fakeGPU{model: "NVIDIA L4", memory: 24 << 30, brand: nvml.BRAND_NVIDIA},
		fakeGPU{model: "Tesla T4", memory: 16 << 30, brand: nvml.BRAND_TESLA})
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, err := d.run("agent", "list")
		if err == nil && strings.Contains(out, host) && strings.Contains(out, " up ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the GPU host's agent did not join: %v\n%s\n%s", err, out, d.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	within(t, bctx, 20*time.Second, "open the agents page",
		chromedp.Navigate("http://"+httpAddr+"/?view=agents#/agents"),
		chromedp.WaitVisible(chromedp.CSS(`#agents tr.agent[data-agent="`+host+`"] .gpu`)))
	eval[bool](t, bctx, "mark the window", `window.__notReloaded = true`)
	idle := gpuCards(t, d, host)
	if len(idle) != 2 || !strings.Contains(idle["0"], "GPU 0 NVIDIA L4 mem 0/24Gi, 0/3 NVENC sessions (3 free), 0 tasks") {
		t.Fatalf("sched agent show: %v", idle)
	}
	readCards := fmt.Sprintf(pageGPUCards, host)
	if page := eval[map[string]string](t, bctx, "read the GPU cards", readCards); !reflect.DeepEqual(page, idle) {
		t.Fatalf("agents page\n%v\nsched agent show -o json\n%v", page, idle)
	}

	// A task takes one NVENC session (and GPU memory) on the host.
	if _, stderr, err := d.run("job", "submit", writeJob(t, `name: nvenc
tasks:
  - name: encode
    command: [sleep, "60"]
    resources: {cpu: 100m, memory: 16Mi, gpu_memory: 2Gi, nvenc: 1}
`)); err != nil {
		t.Fatalf("submit: %v: %s", err, stderr)
	}
	waitLogsJob(t, d, "job-1", func(j jobJSON) bool { return j.State == "running" }, "running")
	busy := gpuCards(t, d, host)
	if reflect.DeepEqual(busy, idle) || !strings.Contains(busy["0"]+busy["1"], "1/3 NVENC sessions (2 free), 1 task") {
		t.Fatalf("sched agent show while the task runs: %v", busy)
	}
	evalUntil(t, bctx, 10*time.Second, "the open page shows the session taken, without a reload",
		`document.querySelector('#agents tr.agent[data-agent="`+host+`"]').innerText.includes("1/3 NVENC sessions") && window.__notReloaded === true`)
	page := eval[map[string]string](t, bctx, "read the GPU cards", readCards)
	if !reflect.DeepEqual(page, busy) {
		t.Fatalf("agents page\n%v\nsched agent show -o json\n%v", page, busy)
	}
	t.Logf("GPU cards while the task runs: %v", page)
	saveScreenshot(t, "web-agents.png", screenshot(t, bctx, "#view"))

	if _, stderr, err := d.run("job", "cancel", "job-1"); err != nil {
		t.Fatalf("cancel: %v: %s", err, stderr)
	}
	evalUntil(t, bctx, 20*time.Second, "the session is given back on the open page",
		`document.querySelector('#agents tr.agent[data-agent="`+host+`"]').innerText.includes("1/3 NVENC sessions") === false && window.__notReloaded === true`)
	if page, cli := eval[map[string]string](t, bctx, "read the GPU cards", readCards), gpuCards(t, d, host); !reflect.DeepEqual(page, cli) || !reflect.DeepEqual(cli, idle) {
		t.Fatalf("after the task: agents page\n%v\nsched agent show -o json\n%v\nbefore\n%v", page, cli, idle)
	}
}
