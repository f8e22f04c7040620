package main

import (
	"errors"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent/fingerprint"
)

// TestAgentGPUFlags: the GPU flags' defaults, and what they become in the
// fingerprint options and the agent's GPU config; bad values are usage
// errors.
func TestAgentGPUFlags(t *testing.T) {
	cmd := newAgentCmd(&globals{})
	for flag, want := range map[string]string{"nvenc-limit": "auto", "nvenc-sessions": "0", "nvenc-system-sessions": "8",
		"nvenc-util-ceiling": "90", "nvenc-cooldown": "1m0s", "gpu-poll-interval": "5s"} {
		if f := cmd.Flags().Lookup(flag); f == nil || f.DefValue != want {
			t.Errorf("--%s default: %v, want %s", flag, f, want)
		}
	}
	f := &agentFlags{nvencLimit: "per-system", nvencSystemSessions: 5, nvencSessions: 2, nvencUtilCeiling: 80,
		nvencCooldown: 30 * time.Second, gpuPoll: time.Second}
	opts, err := f.fingerprintOptions()
	if err != nil || opts.NVENCLimit != fingerprint.LimitPerSystem || opts.NVENCSystemSessions != 5 || opts.NVENCSessionsPerGPU != 2 {
		t.Errorf("options %+v, %v", opts, err)
	}
	g, err := f.gpuConfig()
	if err != nil || !g.Watch || g.UtilCeiling != 80 || g.Cooldown != 30*time.Second || g.PollInterval != time.Second {
		t.Errorf("gpu config %+v, %v", g, err)
	}
	f.noGPU = true
	if g, _ := f.gpuConfig(); g.Watch {
		t.Error("--no-gpu still watches GPUs")
	}
	var u usageError
	for name, bad := range map[string]agentFlags{
		"limit":    {nvencLimit: "per-gpu", nvencUtilCeiling: 90, nvencCooldown: time.Minute, gpuPoll: time.Second},
		"sessions": {nvencLimit: "auto", nvencSystemSessions: -1, nvencUtilCeiling: 90, nvencCooldown: time.Minute, gpuPoll: time.Second},
	} {
		if _, err := bad.fingerprintOptions(); !errors.As(err, &u) {
			t.Errorf("%s: %v, want a usage error", name, err)
		}
	}
	for name, bad := range map[string]agentFlags{
		"ceiling 0":   {nvencUtilCeiling: 0, nvencCooldown: time.Minute, gpuPoll: time.Second},
		"ceiling 101": {nvencUtilCeiling: 101, nvencCooldown: time.Minute, gpuPoll: time.Second},
		"cooldown":    {nvencUtilCeiling: 90, gpuPoll: time.Second},
		"poll":        {nvencUtilCeiling: 90, nvencCooldown: time.Minute},
	} {
		if _, err := bad.gpuConfig(); !errors.As(err, &u) {
			t.Errorf("%s: %v, want a usage error", name, err)
		}
	}
}
