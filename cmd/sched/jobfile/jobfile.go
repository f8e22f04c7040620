// Package jobfile reads job files: YAML or JSON documents that describe one
// job, or a batch of jobs under a top-level "jobs" key. It turns them into
// wire JobSpecs and rejects anything malformed with an error that names the
// file, the job, the task and the field.
package jobfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"sigs.k8s.io/yaml"
)

// DefaultAsk is what a task that names no resources asks for: the
// server's rule, pool.DefaultAsk (the server applies it too).
var DefaultAsk = pool.DefaultAsk

// File is the document: either a single job's fields or a list of jobs.
type File struct {
	Job
	Jobs []Job `json:"jobs,omitempty"`
}

// Job is one job as written in a file.
type Job struct {
	Name           string `json:"name,omitempty"`
	Pool           string `json:"pool,omitempty"`
	Class          string `json:"class,omitempty"`
	Priority       int32  `json:"priority,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	MaxWait        string `json:"max_wait,omitempty"`
	Tasks          []Task `json:"tasks,omitempty"`
}

// Task is one task (or, with Count, an array of tasks) as written in a file.
type Task struct {
	Name string `json:"name,omitempty"`
	// Count expands the task into Count tasks named NAME-0 ... NAME-(Count-1);
	// "${INDEX}" in the command, env and workdir becomes the index.
	Count   int      `json:"count,omitempty"`
	Command []string `json:"command,omitempty"`
	// Function and Args call a function registered on agents instead of
	// running a command (micro-batched through warm or batch workers).
	Function     string            `json:"function,omitempty"`
	Args         []string          `json:"args,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	Workdir      string            `json:"workdir,omitempty"`
	Resources    map[string]any    `json:"resources,omitempty"`
	Timeout      string            `json:"timeout,omitempty"`
	Retry        *Retry            `json:"retry,omitempty"`
	ExclusiveKey string            `json:"exclusive_key,omitempty"`
	Constraints  []string          `json:"constraints,omitempty"`
	After        []string          `json:"after,omitempty"`
	// Fallback replaces the task if it fails for good, or, with
	// FallbackAfter, if it is not placed within that wait.
	Fallback      *Task  `json:"fallback,omitempty"`
	FallbackAfter string `json:"fallback_after,omitempty"`
}

// Retry is a task's retry policy as written in a file.
type Retry struct {
	MaxAttempts int32  `json:"max_attempts,omitempty"`
	Backoff     string `json:"backoff,omitempty"`
	MaxBackoff  string `json:"max_backoff,omitempty"`
}

// ReadFile reads and parses a job file.
func ReadFile(path string) ([]*pb.JobSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read job file: %w", err)
	}
	specs, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return specs, nil
}

// Parse parses a YAML or JSON job document. Unknown fields are errors. Every
// error is a single line.
func Parse(data []byte) ([]*pb.JobSpec, error) {
	specs, err := parse(data)
	if err != nil {
		return nil, oneLine(err)
	}
	return specs, nil
}

func parse(data []byte) ([]*pb.JobSpec, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty job file")
	}
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, decodeError(data, err)
	}
	jobs := f.Jobs
	// Any job field at the top level makes this a single-job file, so that a
	// top-level field next to "jobs" is an error rather than silently dropped.
	single := !f.Job.isZero()
	switch {
	case single && len(jobs) > 0:
		return nil, errors.New("a file holds either one job or a list under \"jobs\", not both")
	case single:
		jobs = []Job{f.Job}
	case len(jobs) == 0:
		return nil, errors.New("no job in file: give \"tasks\" or a \"jobs\" list")
	}
	if err := checkExpansion(jobs); err != nil {
		return nil, err
	}
	out := make([]*pb.JobSpec, 0, len(jobs))
	for i, j := range jobs {
		spec, err := j.toSpec()
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", Label(j.Name, i), err)
		}
		out = append(out, spec)
	}
	return out, nil
}

// Limits on what one file expands to: "count" (and YAML aliases) make a
// small file stand for many tasks, and all of them are built in memory.
const (
	// MaxTasks is the most tasks one file may expand to.
	MaxTasks = 1_000_000
	// MaxExpandedBytes bounds the strings (names, command, args, env,
	// workdir) of all the tasks one file expands to.
	MaxExpandedBytes = 256 << 20
)

// checkExpansion refuses a file whose jobs expand to more than MaxTasks
// tasks or MaxExpandedBytes of strings, before anything is built.
func checkExpansion(jobs []Job) error {
	var tasks, size int64
	for _, j := range jobs {
		for _, t := range j.Tasks {
			n := int64(t.Count)
			if n < 1 || n > MaxTasks {
				n = 1 // toSpecs reports a count out of range
			}
			tasks += n
			size += n * t.size()
			if tasks > MaxTasks {
				return fmt.Errorf("the file expands to more than %d tasks", MaxTasks)
			}
			if size > MaxExpandedBytes {
				return fmt.Errorf("the file expands to more than %d MiB of commands and environment", MaxExpandedBytes>>20)
			}
		}
	}
	return nil
}

// size is the length of a task's strings, fallbacks included.
func (t *Task) size() int64 {
	var n int
	for f := t; f != nil; f = f.Fallback {
		n += len(f.Name) + len(f.Workdir) + len(f.Function) + len(f.ExclusiveKey) + 64
		for _, list := range [][]string{f.Command, f.Args, f.Constraints, f.After} {
			for _, a := range list {
				n += len(a) + 16
			}
		}
		for k, v := range f.Env {
			n += len(k) + len(v) + 32
		}
	}
	return int64(n)
}

// cleanYAMLError drops the decoder's layers of prefixes from an error.
func cleanYAMLError(err error) error {
	msg := err.Error()
	for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "error converting YAML to JSON: ", "json: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return errors.New(msg)
}

// ParseClass maps a class name to the wire enum.
func ParseClass(s string) (pb.JobClass, error) {
	switch strings.ToLower(s) {
	case "":
		return pb.JobClass_JOB_CLASS_UNSPECIFIED, nil
	case "latency":
		return pb.JobClass_JOB_CLASS_LATENCY, nil
	case "batch":
		return pb.JobClass_JOB_CLASS_BATCH, nil
	case "opportunistic":
		return pb.JobClass_JOB_CLASS_OPPORTUNISTIC, nil
	}
	return 0, fmt.Errorf("unknown class %q (use latency, batch or opportunistic)", s)
}

// isZero reports whether no field of the job was given.
func (j Job) isZero() bool {
	return j.Name == "" && j.Pool == "" && j.Class == "" && j.Priority == 0 &&
		j.IdempotencyKey == "" && j.MaxWait == "" && j.Tasks == nil
}

func (j Job) toSpec() (*pb.JobSpec, error) {
	class, err := ParseClass(j.Class)
	if err != nil {
		return nil, err
	}
	spec := &pb.JobSpec{Name: j.Name, Pool: j.Pool, Class: class, Priority: j.Priority, IdempotencyKey: j.IdempotencyKey}
	if j.MaxWait != "" {
		d, err := parseDuration("max_wait", j.MaxWait)
		if err != nil {
			return nil, err
		}
		spec.MaxWaitMs = d.Milliseconds()
	}
	if len(j.Tasks) == 0 {
		return nil, errors.New("no tasks")
	}
	for i, t := range j.Tasks {
		ts, err := t.toSpecs()
		if err != nil {
			return nil, fmt.Errorf("task %s: %w", Label(t.Name, i), err)
		}
		spec.Tasks = append(spec.Tasks, ts...)
	}
	return spec, nil
}

func (t Task) toSpecs() ([]*pb.TaskSpec, error) {
	base, err := t.toSpec()
	if err != nil {
		return nil, err
	}
	if t.Count == 0 {
		return []*pb.TaskSpec{base}, nil
	}
	if t.Count < 0 || t.Count > 1_000_000 {
		return nil, fmt.Errorf("count %d outside [1, 1000000]", t.Count)
	}
	if t.Name == "" {
		return nil, errors.New("a task with count needs a name")
	}
	// Sent as one spec: the server expands it (package taskarray), or
	// sched job submit does when the server predates counts.
	base.Count = int32(t.Count)
	return []*pb.TaskSpec{base}, nil
}

func (t Task) toSpec() (*pb.TaskSpec, error) {
	switch {
	case t.Function != "" && len(t.Command) > 0:
		return nil, errors.New("give a command or a function, not both")
	case t.Function != "":
	case len(t.Command) == 0:
		return nil, errors.New("command is missing")
	case strings.TrimSpace(t.Command[0]) == "":
		return nil, errors.New("command: the program (first element) is empty")
	case len(t.Args) > 0:
		return nil, errors.New("args go with a function; a command takes its arguments in command")
	}
	ask, err := parseResources(t.Resources)
	if err != nil {
		return nil, err
	}
	if ask.IsZero() {
		ask = DefaultAsk
	}
	ts := &pb.TaskSpec{Name: t.Name, Command: t.Command, Function: t.Function, Args: t.Args, Env: t.Env, Workdir: t.Workdir,
		Resources: pb.FromVector(ask), ExclusiveKey: t.ExclusiveKey, After: t.After}
	if t.Timeout != "" {
		d, err := parseDuration("timeout", t.Timeout)
		if err != nil {
			return nil, err
		}
		ts.TimeoutMs = d.Milliseconds()
	}
	if r := t.Retry; r != nil {
		rp := &pb.RetryPolicy{MaxAttempts: r.MaxAttempts}
		if r.MaxAttempts < 0 {
			return nil, fmt.Errorf("retry.max_attempts %d is negative", r.MaxAttempts)
		}
		if r.Backoff != "" {
			d, err := parseDuration("retry.backoff", r.Backoff)
			if err != nil {
				return nil, err
			}
			rp.InitialBackoffMs = d.Milliseconds()
		}
		if r.MaxBackoff != "" {
			d, err := parseDuration("retry.max_backoff", r.MaxBackoff)
			if err != nil {
				return nil, err
			}
			rp.MaxBackoffMs = d.Milliseconds()
		}
		ts.Retry = rp
	}
	for _, c := range t.Constraints {
		pc, err := ParseConstraint(c)
		if err != nil {
			return nil, err
		}
		ts.Constraints = append(ts.Constraints, pc)
	}
	if t.FallbackAfter != "" {
		d, err := parseDuration("fallback_after", t.FallbackAfter)
		if err != nil {
			return nil, err
		}
		ts.FallbackAfterMs = d.Milliseconds()
	}
	if t.Fallback != nil {
		if t.Fallback.Count != 0 || len(t.Fallback.After) > 0 {
			return nil, errors.New("fallback: takes no count and no after (it takes the task's place)")
		}
		fb, err := t.Fallback.toSpec()
		if err != nil {
			return nil, fmt.Errorf("fallback: %w", err)
		}
		ts.Fallback = fb
	}
	return ts, nil
}

// ParseConstraint parses "label=value", "label!=value", "label" (exists) or
// "!label" (not exists).
func ParseConstraint(s string) (*pb.Constraint, error) {
	s = strings.TrimSpace(s)
	var c *pb.Constraint
	switch {
	case s == "":
		return nil, errors.New("empty constraint")
	case strings.Contains(s, "!="):
		l, v, _ := strings.Cut(s, "!=")
		c = &pb.Constraint{Label: strings.TrimSpace(l), Op: "!=", Value: strings.TrimSpace(v)}
	case strings.Contains(s, "="):
		l, v, _ := strings.Cut(s, "=")
		c = &pb.Constraint{Label: strings.TrimSpace(l), Op: "=", Value: strings.TrimSpace(v)}
	case strings.HasPrefix(s, "!"):
		c = &pb.Constraint{Label: strings.TrimSpace(s[1:]), Op: "not_exists"}
	default:
		c = &pb.Constraint{Label: s, Op: "exists"}
	}
	if c.Label == "" {
		return nil, fmt.Errorf("constraint %q names no label", s)
	}
	return c, nil
}

func parseResources(m map[string]any) (pool.Resources, error) {
	if len(m) == 0 {
		return pool.Resources{}, nil
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(m))
	for _, k := range names {
		var v string
		switch x := m[k].(type) {
		case string:
			v = x
		case float64:
			v = strconv.FormatFloat(x, 'f', -1, 64)
		case json.Number:
			v = x.String()
		default:
			return pool.Resources{}, fmt.Errorf("resources: %s: want a number or a string, got %v", k, x)
		}
		parts = append(parts, k+"="+v)
	}
	r, err := pool.ParseResources(strings.Join(parts, ","))
	if err != nil {
		return pool.Resources{}, fmt.Errorf("resources: %w", err)
	}
	return r, nil
}

func parseDuration(field, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration (e.g. 30s, 5m, 1h)", field, s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s: %s is negative", field, s)
	}
	return d, nil
}

// oneLine folds a multi-line error (the YAML decoder reports some problems
// as a header line and an indented list) into one line.
func oneLine(err error) error {
	msg := err.Error()
	if !strings.ContainsAny(msg, "\r\n") {
		return err
	}
	var parts []string
	for _, l := range strings.FieldsFunc(msg, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	if len(parts) > 1 && strings.HasSuffix(parts[0], ":") {
		return errors.New(parts[0] + " " + strings.Join(parts[1:], "; "))
	}
	return errors.New(strings.Join(parts, "; "))
}

// Levels of the document, for locating a decode error.
const (
	levelFile = iota
	levelJob
	levelTask
	levelRetry
)

// knownKeys are the keys each level accepts, taken from the json tags.
var knownKeys = [...][]string{
	levelFile:  jsonKeys(reflect.TypeFor[File]()),
	levelJob:   jsonKeys(reflect.TypeFor[Job]()),
	levelTask:  jsonKeys(reflect.TypeFor[Task]()),
	levelRetry: jsonKeys(reflect.TypeFor[Retry]()),
}

func jsonKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			out = append(out, jsonKeys(f.Type)...)
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// decodeError rewrites an error from the strict decoder: it drops the
// decoder's prefixes and Go type names and, for unknown fields and values of
// the wrong type, names the job and task they are in.
func decodeError(data []byte, err error) error {
	msg := cleanYAMLError(err).Error()
	var doc any
	if yaml.Unmarshal(data, &doc) != nil {
		return errors.New(msg)
	}
	if q, ok := strings.CutPrefix(msg, "unknown field "); ok {
		field, uerr := strconv.Unquote(q)
		if uerr != nil {
			return errors.New(msg)
		}
		where, lvl, found := locate(doc, func(lvl int, obj map[string]any) bool {
			_, ok := obj[field]
			return ok && !isKnown(lvl, field)
		})
		out := fmt.Sprintf("unknown field %q", field)
		if found {
			if s := suggest(lvl, field); s != "" {
				out += fmt.Sprintf(" (did you mean %q?)", s)
			}
		}
		return errors.New(where + out)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		var path []string
		for _, p := range strings.Split(te.Field, ".") {
			// Drop Go names of embedded structs ("Job"); keys are lower case.
			if p != "" && !unicode.IsUpper(rune(p[0])) {
				path = append(path, p)
			}
		}
		if len(path) == 0 {
			return fmt.Errorf("a job file must be a mapping with \"tasks\" or \"jobs\", not %s", article(te.Value))
		}
		key := path[len(path)-1]
		lvl := levelFile
		if len(path) > 1 {
			switch path[len(path)-2] {
			case "jobs":
				lvl = levelJob
			case "tasks":
				lvl = levelTask
			case "retry":
				lvl = levelRetry
			}
		}
		where, _, _ := locate(doc, func(l int, obj map[string]any) bool {
			v, ok := obj[key]
			return ok && l == lvl && holdsKind(v, te.Value)
		})
		if lvl == levelRetry {
			key = "retry." + key
		}
		hint := ""
		if te.Value == "bool" && strings.Contains(describeType(te.Type), "string") {
			hint = " (quote it: YAML reads unquoted yes, no, on, off, y and n as booleans)"
		}
		return fmt.Errorf("%s%s: want %s, got %s%s", where, key, describeType(te.Type), article(te.Value), hint)
	}
	return errors.New(msg)
}

// locate walks the document in file order and returns where the first object
// that match accepts is ("job NAME: task NAME: "), and its level.
func locate(doc any, match func(level int, obj map[string]any) bool) (string, int, bool) {
	top, ok := doc.(map[string]any)
	if !ok {
		return "", 0, false
	}
	if match(levelFile, top) {
		return "", levelFile, true
	}
	inJob := func(where string, job map[string]any) (string, int, bool) {
		tasks, _ := job["tasks"].([]any)
		for k, t := range tasks {
			task, ok := t.(map[string]any)
			if !ok {
				continue
			}
			tw := where + "task " + displayName(task, k) + ": "
			if match(levelTask, task) {
				return tw, levelTask, true
			}
			if r, ok := task["retry"].(map[string]any); ok && match(levelRetry, r) {
				return tw + "retry: ", levelRetry, true
			}
		}
		return "", 0, false
	}
	if _, batch := top["jobs"]; !batch {
		return inJob("job "+displayName(top, 0)+": ", top)
	}
	jobs, _ := top["jobs"].([]any)
	for i, j := range jobs {
		job, ok := j.(map[string]any)
		if !ok {
			continue
		}
		where := "job " + displayName(job, i) + ": "
		if match(levelJob, job) {
			return where, levelJob, true
		}
		if w, l, ok := inJob(where, job); ok {
			return w, l, true
		}
	}
	return "", 0, false
}

// displayName names a job or task as the other errors do (Label).
func displayName(obj map[string]any, i int) string {
	n, _ := obj["name"].(string)
	return Label(n, i)
}

// Label names the job or task at index i of its list in an error: by its
// name, or when it has none by its position counted from 1 ("#3").
func Label(name string, i int) string {
	if name != "" {
		return name
	}
	return "#" + strconv.Itoa(i+1)
}

func isKnown(level int, key string) bool {
	for _, k := range knownKeys[level] {
		// encoding/json matches keys without regard to case.
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

// suggest returns the known key closest to key, if it is a likely typo.
func suggest(level int, key string) string {
	best, bestDist := "", 3
	for _, k := range knownKeys[level] {
		if d := editDistance(strings.ToLower(key), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// holdsKind reports whether v, or one of its direct elements, is of the JSON
// kind the decoder named ("string", "number", "bool", "array", "object").
func holdsKind(v any, kind string) bool {
	if jsonKind(v) == kind {
		return true
	}
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if jsonKind(e) == kind {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if jsonKind(e) == kind {
				return true
			}
		}
	}
	return false
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return ""
}

// article turns a JSON kind into words: "a string", "a list", ...
func article(kind string) string {
	switch kind {
	case "array":
		return "a list"
	case "object":
		return "a mapping"
	case "bool":
		return "a boolean"
	case "number":
		return "a number"
	case "string":
		return "a string"
	}
	return kind
}

// describeType names the Go type a field wants in the file's terms.
func describeType(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "a mapping"
	}
	return t.String()
}
