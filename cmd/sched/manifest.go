package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/banyan-sched/banyan/cmd/sched/jobfile"
	"sigs.k8s.io/yaml"
)

// manifest is a studio delivery: many titles submitted as one batch.
type manifest struct {
	Pool     string          `json:"pool,omitempty"`
	Ladder   string          `json:"ladder,omitempty"`
	Out      string          `json:"out,omitempty"`
	Class    string          `json:"class,omitempty"`
	Priority int32           `json:"priority,omitempty"`
	MaxWait  string          `json:"max_wait,omitempty"`
	Titles   []manifestTitle `json:"titles"`
}

type manifestTitle struct {
	Input    string `json:"input"`
	Name     string `json:"name,omitempty"`
	Ladder   string `json:"ladder,omitempty"`
	Out      string `json:"out,omitempty"`
	Priority *int32 `json:"priority,omitempty"`
}

// readManifest reads and parses a manifest file.
func readManifest(path string) (*manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := parseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// parseManifest decodes a YAML or JSON manifest (unknown fields are errors)
// and checks what needs no file system: a known class, a non-negative
// max_wait, and an input for every title. It is pure.
func parseManifest(data []byte) (*manifest, error) {
	m := &manifest{}
	if err := yaml.UnmarshalStrict(data, m); err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), "error unmarshaling JSON: while decoding JSON: json: ", ""))
	}
	if _, err := jobfile.ParseClass(m.Class); err != nil {
		return nil, fmt.Errorf("class: %w", err)
	}
	if m.MaxWait != "" {
		d, err := time.ParseDuration(m.MaxWait)
		if err != nil {
			return nil, fmt.Errorf("max_wait: %w", err)
		}
		if d < 0 {
			return nil, fmt.Errorf("max_wait: %s is negative", m.MaxWait)
		}
	}
	if len(m.Titles) == 0 {
		return nil, errors.New("no titles")
	}
	for i, t := range m.Titles {
		if t.Input == "" {
			return nil, fmt.Errorf("title %d has no input", i+1)
		}
	}
	return m, nil
}
