package taskarray

import (
	"fmt"
	"strconv"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
)

// MaxAfterEdges bounds the dependencies of a job whose after lists name
// arrays (ResolvesAfter), counted expanded (Edges): such a name stands for
// a whole array, so a few bytes may make millions of edges. It is about
// what the largest spec written out (limits.JobSpecBytes) could name.
const MaxAfterEdges = 4_000_000

// CheckAfter refuses a job's task specs, as sent, whose after lists name
// arrays and, counted expanded, make more than MaxAfterEdges dependencies
// or put more than limits.JobSpecBytes of names in one task's list (a task
// is read back whole, so its list must fit in a message). It expands
// nothing, so whoever is about to expand specs (a server applying them, a
// client writing them out for an older server) calls it first. Lists that
// name no array are not bounded here: every version before refused array
// names, so a log holding jobs it took replays as it did.
func CheckAfter(specs []*pb.TaskSpec) error {
	if !ResolvesAfter(specs) {
		return nil
	}
	if e := Edges(specs); e > MaxAfterEdges {
		return fmt.Errorf("the after lists name %d tasks, arrays counted expanded, more than the limit of %d a job; "+
			"where an array waits for a whole array, let one task wait for the first and the second wait for it", e, MaxAfterEdges)
	}
	if b, name := LongestAfter(specs); b > limits.JobSpecBytes {
		return fmt.Errorf("task %s: after lists %s of task names with its arrays expanded, more than the limit of %s a task; split the array, or wait for tasks that each wait for part of it",
			name, limits.FormatBytes(b), limits.FormatBytes(limits.JobSpecBytes))
	}
	return nil
}

// AfterFeature is the name a server lists in VersionResponse.features when
// it resolves arrays in `after`: a name that is an array's, and no task's,
// stands for every task of the array, and "${INDEX}" in an array's after
// list becomes each task's index.
const AfterFeature = "array_after"

// Features is what a server that expands arrays lists, in order.
var Features = []string{Feature, AfterFeature}

// names tells the names a job's specs make apart: the arrays' (name to
// count) and the tasks' written out (no count); repeated says that two
// arrays, or two tasks written out, share a name (the later array's count
// is kept).
type names struct {
	arrays   map[string]int
	plain    map[string]bool
	repeated bool
}

func namesOf(specs []*pb.TaskSpec) names {
	n := names{arrays: map[string]int{}, plain: map[string]bool{}}
	for _, t := range specs {
		if t.GetCount() >= 1 {
			_, dup := n.arrays[t.Name]
			n.repeated = n.repeated || dup
			n.arrays[t.Name] = int(t.Count)
		} else {
			n.repeated = n.repeated || n.plain[t.Name]
			n.plain[t.Name] = true
		}
	}
	return n
}

// Collides reports whether two of specs' tasks, arrays expanded, would
// share a name: two arrays or two tasks written out under one name, or a
// task written out under the name of a task of an array (NAME-i). Tasks of
// arrays of different names never share one: NAME-i ends in digits after
// its last '-', so NAME-i = OTHER-j would make i hold a '-'.
func Collides(specs []*pb.TaskSpec) bool {
	n := namesOf(specs)
	if n.repeated {
		return true
	}
	for name := range n.plain {
		if n.inArray(name) {
			return true
		}
	}
	return false
}

// isTask reports whether name is a task's: one written out, or task i of
// an array, NAME-i as Task names it (inArray).
func (n names) isTask(name string) bool {
	return n.plain[name] || n.inArray(name)
}

// inArray reports whether name is task i of one of the arrays, NAME-i.
func (n names) inArray(name string) bool {
	dash := strings.LastIndexByte(name, '-')
	if dash < 0 {
		return false
	}
	count, ok := n.arrays[name[:dash]]
	if !ok {
		return false
	}
	i, err := strconv.Atoi(name[dash+1:])
	return err == nil && i >= 0 && i < count && strconv.Itoa(i) == name[dash+1:]
}

// namesArray reports whether dep, in an after list, stands for every task
// of an array: it is the array's name and no task's, and holds no
// "${INDEX}" (such a name names one task).
func (n names) namesArray(dep string) bool {
	_, ok := n.arrays[dep]
	return ok && !strings.Contains(dep, Placeholder) && !n.isTask(dep)
}

// width is how many tasks dep stands for in an after list.
func (n names) width(dep string) int {
	if n.namesArray(dep) {
		return n.arrays[dep]
	}
	return 1
}

// fixedAfter is an after list with each array it names replaced by the
// array's tasks, in index order. In an array's list (array) the names
// holding "${INDEX}" are left out, for afterFor to put in; elsewhere they
// stay as written (validation refuses them). It is after itself when
// nothing changes, so that an array's tasks share one list, and a new list
// is exactly as long as its capacity (the state interns a shared list in
// place, and copies one with room to spare).
func (n names) fixedAfter(after []string, array bool) []string {
	total, changed := 0, false
	for _, dep := range after {
		switch {
		case array && strings.Contains(dep, Placeholder):
			changed = true
		case n.namesArray(dep):
			changed = true
			total += n.arrays[dep]
		default:
			total++
		}
	}
	if !changed {
		return after
	}
	out := make([]string, 0, total)
	for _, dep := range after {
		switch {
		case array && strings.Contains(dep, Placeholder):
		case n.namesArray(dep):
			for i := range n.arrays[dep] {
				out = append(out, dep+"-"+strconv.Itoa(i))
			}
		default:
			out = append(out, dep)
		}
	}
	return out
}

// indexed reports whether any name of after holds the placeholder.
func indexed(after []string) bool {
	for _, dep := range after {
		if strings.Contains(dep, Placeholder) {
			return true
		}
	}
	return false
}

// afterFor is the after list of task i of an array whose list names some
// task by index: each such name with its index replaced, in the place it
// was written, and between them the names of fixed (fixedAfter's list)
// that the other names became.
func (n names) afterFor(after, fixed []string, i int) []string {
	idx := strconv.Itoa(i)
	size := len(fixed)
	for _, dep := range after {
		if strings.Contains(dep, Placeholder) {
			size++
		}
	}
	out := make([]string, 0, size)
	for _, dep := range after {
		if strings.Contains(dep, Placeholder) {
			out = append(out, strings.ReplaceAll(dep, Placeholder, idx))
			continue
		}
		w := n.width(dep)
		out, fixed = append(out, fixed[:w]...), fixed[w:]
	}
	return out
}

// Edges is how many dependencies specs hold, arrays and the arrays named
// in after lists counted expanded: what the server checks against its
// bound before it expands anything.
func Edges(specs []*pb.TaskSpec) int64 {
	var n names
	if Has(specs) {
		n = namesOf(specs)
	}
	var e int64
	for _, t := range specs {
		var per int64
		for _, dep := range t.After {
			per += int64(n.width(dep))
		}
		e += per * int64(max(t.GetCount(), 1))
	}
	return e
}

// LongestAfter is the largest number of bytes any task of specs holds in
// its after list, arrays expanded, counted about as the list encodes (each
// name and two bytes, its tag and length; a name of 128 bytes or more
// encodes one byte more, not counted: Apply checks this bound, so the
// count stays as released), and the spec that makes it: a name that stands for an array becomes all its
// tasks' names. The server bounds it, so that a task read back fits in a
// message.
func LongestAfter(specs []*pb.TaskSpec) (int64, string) {
	var n names
	if Has(specs) {
		n = namesOf(specs)
	}
	var most int64
	var which string
	for _, t := range specs {
		var b int64
		for _, dep := range t.After {
			if !n.namesArray(dep) {
				b += int64(len(dep) + 2) // "${INDEX}" is longer than any index it becomes
				continue
			}
			c := int64(n.arrays[dep])
			b += c*int64(len(dep)+1+2) + digits(c)
		}
		if b > most {
			most, which = b, t.Name
		}
	}
	return most, which
}

// digits is how many digits the numbers 0 to n-1 take together.
func digits(n int64) int64 {
	var d int64
	lo, w := int64(0), int64(1)
	for next := int64(10); lo < n; next, w = next*10, w+1 {
		hi := min(n, next)
		d += (hi - lo) * w
		lo = hi
	}
	return d
}

// ResolvesAfter reports whether specs need AfterFeature: an after list
// names an array (and no task), or one of an array's holds "${INDEX}".
func ResolvesAfter(specs []*pb.TaskSpec) bool {
	if !Has(specs) {
		return false
	}
	n := namesOf(specs)
	for _, t := range specs {
		for _, dep := range t.After {
			if n.namesArray(dep) || (t.Count >= 1 && strings.Contains(dep, Placeholder)) {
				return true
			}
		}
	}
	return false
}
