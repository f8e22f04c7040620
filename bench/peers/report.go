package peers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
)

// Workload is one workload measured on both schedulers.
type Workload struct {
	// Name is the key of its ratio, e.g. "submit_per_s".
	Name string `json:"name"`
	// What says what was measured, in words.
	What string `json:"what"`
	// Unit of the figures, e.g. "jobs/s", "s", "MiB".
	Unit string `json:"unit"`
	// HigherIsBetter says which way the ratio reads.
	HigherIsBetter bool   `json:"higher_is_better"`
	Slurm          Figure `json:"slurm"`
	Banyan         Figure `json:"banyan"`
	// Ratio is Banyan's median over Slurm's.
	Ratio float64 `json:"ratio_banyan_over_slurm"`
	// GridEngine is the second peer's figure, when it was measured.
	GridEngine *Figure `json:"gridengine,omitempty"`
	// RatioGridEngine is Banyan's median over Grid Engine's.
	RatioGridEngine float64 `json:"ratio_banyan_over_gridengine,omitempty"`
	Notes           string  `json:"notes,omitempty"`
	// Bounds are probes measured in the same runs as Banyan's side.
	Bounds []Bound `json:"bounds,omitempty"`
}

// Bound is a probe measured in the same loop as a workload's Banyan side:
// a program that does part of what Banyan's client does (bench/cliprobe),
// so its figure is what Banyan's would be without the rest.
type Bound struct {
	Name string `json:"name"`
	// What says what the probe does, in words.
	What   string `json:"what"`
	Figure Figure `json:"figure"`
	// Ratio is the probe's median over Slurm's.
	Ratio float64 `json:"ratio_over_slurm"`
}

// AddBound adds a probe's runs to the workload.
func (w *Workload) AddBound(name, what string, runs []float64) error {
	f, err := Summarize(runs)
	if err != nil {
		return fmt.Errorf("%s: probe %s: %w", w.Name, name, err)
	}
	w.Bounds = append(w.Bounds, Bound{Name: name, What: what, Figure: f, Ratio: Ratio(f, w.Slurm)})
	return nil
}

// AddGridEngine sets the workload's Grid Engine figure from its runs.
func (w *Workload) AddGridEngine(runs []float64) error {
	f, err := Summarize(runs)
	if err != nil {
		return fmt.Errorf("%s: grid engine: %w", w.Name, err)
	}
	w.GridEngine, w.RatioGridEngine = &f, Ratio(w.Banyan, f)
	return nil
}

// Report is bench/results/peers.json.
type Report struct {
	Generated string         `json:"generated"`
	Commit    string         `json:"commit"`
	Machine   map[string]any `json:"machine"`
	Shared    string         `json:"machine_note,omitempty"`
	Slurm     SlurmInfo      `json:"slurm"`
	// GridEngine is the second peer, when it was measured.
	GridEngine *GridEngineInfo   `json:"gridengine,omitempty"`
	Banyan     map[string]string `json:"banyan_settings"`
	Scale      map[string]int    `json:"scale"`
	Workloads  []Workload        `json:"workloads"`
	Errors     map[string]string `json:"errors,omitempty"`
}

// SlurmInfo is the peer's version and every setting that is not a path
// or a port.
type SlurmInfo struct {
	Version    string    `json:"version"`
	Settings   []Setting `json:"settings"`
	Node       string    `json:"node"`
	Partitions []string  `json:"partitions"`
}

// GridEngineInfo is the second peer's version and its settings.
type GridEngineInfo struct {
	Version  string    `json:"version"`
	Settings []Setting `json:"settings"`
	Setup    string    `json:"setup"`
}

// Ratios maps each workload's name to Banyan/Slurm.
func (r Report) Ratios() map[string]float64 {
	m := map[string]float64{}
	for _, w := range r.Workloads {
		m[w.Name] = w.Ratio
	}
	return m
}

// Latest is what goes under "peers" in latest.json.
func (r Report) Latest() map[string]any {
	figs := map[string]any{}
	for _, w := range r.Workloads {
		f := map[string]any{"unit": w.Unit, "slurm_median": w.Slurm.Median, "banyan_median": w.Banyan.Median,
			"runs": len(w.Banyan.Runs), "higher_is_better": w.HigherIsBetter}
		if len(w.Bounds) > 0 {
			bounds := map[string]any{}
			for _, b := range w.Bounds {
				bounds[b.Name] = map[string]any{"median": b.Figure.Median, "ratio_over_slurm": b.Ratio}
			}
			f["probes"] = bounds
		}
		figs[w.Name] = f
	}
	out := map[string]any{"generated": r.Generated, "commit": r.Commit, "peer": r.Slurm.Version,
		"ratios_banyan_over_slurm": r.Ratios(), "figures": figs, "details": "peers.json"}
	if ge := r.gridEngineRatios(); len(ge) > 0 {
		out["second_peer"] = r.GridEngine.Version
		out["ratios_banyan_over_gridengine"] = ge
		for _, w := range r.Workloads {
			if w.GridEngine != nil {
				figs[w.Name].(map[string]any)["gridengine_median"] = w.GridEngine.Median
			}
		}
	}
	return out
}

// gridEngineRatios maps each workload measured on Grid Engine to
// Banyan/Grid Engine.
func (r Report) gridEngineRatios() map[string]float64 {
	m := map[string]float64{}
	for _, w := range r.Workloads {
		if w.GridEngine != nil && r.GridEngine != nil {
			m[w.Name] = w.RatioGridEngine
		}
	}
	return m
}

// Markdown renders the report as bench/results/peers.md.
func (r Report) Markdown() string {
	var b strings.Builder
	ge := len(r.gridEngineRatios()) > 0
	if ge {
		fmt.Fprintf(&b, "# Banyan, Slurm and Grid Engine, same machine, same run\n\n")
	} else {
		fmt.Fprintf(&b, "# Banyan and Slurm, same machine, same run\n\n")
	}
	fmt.Fprintf(&b, "Generated %s at commit %s on %v cpus (%v). %s\n\n", r.Generated, r.Commit, r.Machine["cpus"], r.Machine["model"], r.Shared)
	fmt.Fprintf(&b, "Peer: %s, one node on loopback (`%s`).", r.Slurm.Version, r.Slurm.Node)
	if ge {
		fmt.Fprintf(&b, " Second peer: %s, %s.", r.GridEngine.Version, r.GridEngine.Setup)
	}
	b.WriteString("\n\n")
	if ge {
		b.WriteString("| workload | unit | Slurm median (min–max) | Grid Engine median (min–max) | Banyan median (min–max) | runs | Banyan/Slurm | Banyan/Grid Engine |\n|---|---|---|---|---|---|---|---|\n")
	} else {
		b.WriteString("| workload | unit | Slurm median (min–max) | Banyan median (min–max) | runs | Banyan/Slurm |\n|---|---|---|---|---|---|\n")
	}
	for _, w := range r.Workloads {
		dir := "higher is better"
		if !w.HigherIsBetter {
			dir = "lower is better"
		}
		if !ge {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %.2f× (%s) |\n", w.What, w.Unit, fig(w.Slurm), fig(w.Banyan),
				len(w.Banyan.Runs), w.Ratio, dir)
			continue
		}
		geFig, geRatio := "not measured", "–"
		if w.GridEngine != nil {
			geFig, geRatio = fig(*w.GridEngine), fmt.Sprintf("%.2f×", w.RatioGridEngine)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %.2f× (%s) | %s |\n", w.What, w.Unit, fig(w.Slurm), geFig, fig(w.Banyan),
			len(w.Banyan.Runs), w.Ratio, dir, geRatio)
	}
	for _, w := range r.Workloads {
		if len(w.Bounds) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nProbes in the same runs as Banyan's %s (bench/cliprobe): what Banyan's figure would be with less of its client.\n\n", w.Name)
		b.WriteString("| probe | what it does | " + w.Unit + ", median (min–max) | ÷ Slurm |\n|---|---|---|---|\n")
		for _, p := range w.Bounds {
			fmt.Fprintf(&b, "| %s | %s | %s | %.2f× |\n", p.Name, p.What, fig(p.Figure), p.Ratio)
		}
	}
	b.WriteString("\nNotes:\n")
	for _, w := range r.Workloads {
		if w.Notes != "" {
			fmt.Fprintf(&b, "- **%s**: %s\n", w.Name, w.Notes)
		}
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "- **%s failed**: %s\n", k, r.Errors[k])
	}
	b.WriteString("\nSlurm settings (besides paths and ports):\n\n")
	for _, s := range r.Slurm.Settings {
		fmt.Fprintf(&b, "- `%s=%s`\n", s.Key, s.Value)
	}
	for _, p := range r.Slurm.Partitions {
		fmt.Fprintf(&b, "- `%s`\n", p)
	}
	if ge {
		b.WriteString("\nGrid Engine settings (changed from Debian's defaults):\n\n")
		for _, s := range r.GridEngine.Settings {
			fmt.Fprintf(&b, "- `%s %s`\n", s.Key, s.Value)
		}
	}
	b.WriteString("\nBanyan settings:\n\n")
	bk := make([]string, 0, len(r.Banyan))
	for k := range r.Banyan {
		bk = append(bk, k)
	}
	sort.Strings(bk)
	for _, k := range bk {
		fmt.Fprintf(&b, "- %s: %s\n", k, r.Banyan[k])
	}
	return b.String()
}

func fig(f Figure) string {
	return fmt.Sprintf("%s (%s–%s)", num(f.Median), num(f.Min), num(f.Max))
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// MergeLatest sets key in the JSON object stored at path to value and
// leaves every other key's value as it was, only re-indented (a missing
// file starts empty).
func MergeLatest(path, key string, value any) error {
	doc := map[string]json.RawMessage{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("merge into %s: %w", path, err)
	default:
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("merge into %s: not a JSON object: %w", path, err)
		}
	}
	v, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("merge into %s: %w", path, err)
	}
	doc[key] = v
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("merge into %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(out, '\n'), 0o644); err != nil {
		return fmt.Errorf("merge into %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("merge into %s: %w", path, err)
	}
	return nil
}
