package web

import (
	"sort"
	"strings"
)

// The stages of an encode job, from its task names (encoder/graph.go):
// plan, audio, enc-<rendition>-<i> chunks (and their CPU fallbacks
// enc-<rendition>-<i>-cpu), asm-<rendition>, index, verify. The scheduler
// knows nothing of media; only the page groups by these names.

// StageKey names the stage of an encode job's task: "plan", "audio",
// "enc-<rendition>", "asm", "index", "verify"; "" for a name that is not
// one of the encoder's.
func StageKey(name string) string {
	switch {
	case name == "plan", name == "audio", name == "index", name == "verify":
		return name
	case strings.HasPrefix(name, "asm-") && len(name) > len("asm-"):
		return "asm"
	case strings.HasPrefix(name, "enc-"):
		if r := chunkRendition(name); r != "" {
			return "enc-" + r
		}
	}
	return ""
}

// chunkRendition returns the rendition of a chunk task name
// ("enc-720p-3", "enc-720p-3-cpu" -> "720p"), "" when it is not one.
func chunkRendition(name string) string {
	rest := strings.TrimSuffix(strings.TrimPrefix(name, "enc-"), "-cpu")
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 || !allDigits(rest[i+1:]) {
		return ""
	}
	return rest[:i]
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// stageLabel is what the page shows for a stage key.
func stageLabel(key string) string {
	switch {
	case key == "asm":
		return "assemble"
	case strings.HasPrefix(key, "enc-"):
		return "encode " + strings.TrimPrefix(key, "enc-")
	}
	return key
}

// stageRank orders the stages the way an encode runs; chunk stages keep
// the order of their first task.
func stageRank(key string) int {
	switch {
	case key == "plan":
		return 0
	case key == "audio":
		return 1
	case strings.HasPrefix(key, "enc-"):
		return 2
	case key == "asm":
		return 3
	case key == "index":
		return 4
	case key == "verify":
		return 5
	}
	return 6
}

// GroupStages groups a job's tasks for the timeline. A job with a "plan"
// task is an encode job: its tasks go to the encoder's stages in the order
// they run, chunks grouped per rendition, and any other task to a last
// "other" group. Any other job has one group, "tasks", in task order.
func GroupStages(tasks []TaskView) (encode bool, stages []Stage) {
	for _, t := range tasks {
		if t.Name == "plan" {
			encode = true
			break
		}
	}
	if !encode {
		return false, []Stage{{Key: "tasks", Label: "tasks", Tasks: tasks}}
	}
	index := map[string]int{}
	for _, t := range tasks {
		key := StageKey(t.Name)
		if key == "" {
			key = "other"
		}
		i, ok := index[key]
		if !ok {
			i = len(stages)
			index[key] = i
			stages = append(stages, Stage{Key: key, Label: stageLabel(key)})
		}
		stages[i].Tasks = append(stages[i].Tasks, t)
	}
	sort.SliceStable(stages, func(a, b int) bool { return stageRank(stages[a].Key) < stageRank(stages[b].Key) })
	return true, stages
}
