package placement

import (
	"strconv"
	"strings"

	"github.com/banyan-sched/banyan/pool"
)

// Explain says why ask cannot be placed on any up node even when that node is
// idle (judged against total capacity, not free capacity), in words a user
// understands. It returns "" if some up node matching the constraints could
// hold ask when idle. Messages look like:
//
//	no agents are up
//	no agent matches gpu.model=A100 (2 agents up)
//	no agent has 2 GPUs with 16Gi GPU memory (largest: 1 GPU, 8Gi)
//	no agent has 64 cpu (largest: 16)
//	no agent matching zone=a has 64 cpu (largest: 16)
//	no agent has 16 cpu and 64Gi memory together (closest: n1 has 16 cpu and 32Gi memory)
//
// The resource named is the one that is short; "largest" is the largest
// capacity of it among the up nodes that match the constraints.
func Explain(nodes []Node, ask Ask) string {
	if msg := explainAsk(ask); msg != "" {
		return msg
	}
	up := upNodes(nodes)
	if len(up) == 0 {
		return "no agents are up"
	}
	matching, msg := filterConstraints(up, ask.Constraints, needsDevice(&ask))
	if msg != "" {
		return msg
	}
	a := vec(ask.Resources)
	var largest [numRes]int64
	var devMsg string
	devMismatch := 0
	for i, n := range matching {
		c := vec(n.Capacity)
		if fits(&a, &c) {
			why, mismatched := explainDevices(n, ask, false)
			if why == "" {
				return ""
			}
			if devMsg == "" || mismatched < devMismatch {
				devMsg, devMismatch = why, mismatched
			}
		}
		for r := 0; r < numRes; r++ {
			if i == 0 || c[r] > largest[r] {
				largest[r] = c[r]
			}
		}
	}
	who := "no agent"
	if len(ask.Constraints) > 0 {
		who = "no agent matching " + joinConstraints(ask.Constraints)
	}
	if devMsg != "" {
		if a[2] > 0 {
			return who + " has " + devicePhrase(a) + " on whole devices (closest: " + devMsg + ")"
		}
		return who + " has a GPU that can hold " + devicePhrase(a) + " (closest: " + devMsg + ")"
	}
	var short []int
	for r := 0; r < numRes; r++ {
		if a[r] > largest[r] {
			short = append(short, r)
		}
	}
	if len(short) > 0 {
		lv := make([]string, len(short))
		for i, r := range short {
			lv[i] = bareQuantity(r, largest[r])
		}
		return who + " has " + phrase(short, a) + " (largest: " + strings.Join(lv, ", ") + ")"
	}
	// Every resource exists somewhere in the amount asked, but never all on
	// one node. Name the resources involved and the closest node.
	var closest *Node
	var closestShort []int
	for _, n := range matching {
		c := vec(n.Capacity)
		var s []int
		for r := 0; r < numRes; r++ {
			if a[r] > c[r] {
				s = append(s, r)
			}
		}
		if closest == nil || len(s) < len(closestShort) || (len(s) == len(closestShort) && n.ID < closest.ID) {
			closest, closestShort = n, s
		}
	}
	var asked []int
	for r := 0; r < numRes; r++ {
		if a[r] > 0 {
			asked = append(asked, r)
		}
	}
	c := vec(closest.Capacity)
	return who + " has " + phrase(asked, a) + " together (closest: " + closest.ID + " has " + phrase(asked, c) + ")"
}

// ExplainNow is like Explain but judges against free capacity now
// (capacity minus used). It returns Explain's message when ask could not fit
// even on an idle node, "" if ask fits on some matching up node now, and
// otherwise a waiting message such as
//
//	waiting for capacity: all 3 matching agents are busy (short of cpu on 3, memory on 1)
func ExplainNow(nodes []Node, ask Ask) string {
	if msg := Explain(nodes, ask); msg != "" {
		return msg
	}
	matching, _ := filterConstraints(upNodes(nodes), ask.Constraints, needsDevice(&ask))
	a := vec(ask.Resources)
	var shortOn [numRes]int
	var devMsgs []string
	for _, n := range matching {
		free := vec(n.Capacity.Sub(n.Used))
		if fits(&a, &free) {
			why, _ := explainDevices(n, ask, true)
			if why == "" {
				return ""
			}
			devMsgs = append(devMsgs, why)
			continue
		}
		for r := 0; r < numRes; r++ {
			if a[r] > free[r] {
				shortOn[r]++
			}
		}
	}
	var parts []string
	for r := 0; r < numRes; r++ {
		if shortOn[r] > 0 {
			parts = append(parts, pool.ResourceNames[r]+" on "+strconv.Itoa(shortOn[r]))
		}
	}
	if len(devMsgs) > 0 {
		parts = append(parts, "devices on "+strconv.Itoa(len(devMsgs))+": "+devMsgs[0])
	}
	msg := "waiting for capacity: "
	if len(matching) == 1 {
		msg += "the only matching agent is busy"
	} else {
		msg += "all " + strconv.Itoa(len(matching)) + " matching agents are busy"
	}
	return msg + " (short of " + strings.Join(parts, ", ") + ")"
}

// explainAsk reports a problem with the ask itself, or "".
func explainAsk(ask Ask) string {
	if neg := ask.Resources.Negative(); neg != "" {
		return "the task asks a negative amount of " + neg
	}
	for _, c := range ask.Constraints {
		if err := ValidateConstraint(c); err != nil {
			return "invalid " + err.Error()
		}
	}
	return ""
}

func upNodes(nodes []Node) []*Node {
	var up []*Node
	for i := range nodes {
		if nodes[i].Up {
			up = append(up, &nodes[i])
		}
	}
	return up
}

// filterConstraints returns the nodes of up matching every constraint, or a
// message when none does. For a device ask, device constraints are left to
// the devices of nodes that list them.
func filterConstraints(up []*Node, cs []Constraint, devAsk bool) ([]*Node, string) {
	var matching []*Node
	for _, n := range up {
		ok := true
		for _, c := range cs {
			if devAsk && len(n.Devices) > 0 && IsDeviceLabel(c.Label) {
				continue
			}
			if !c.Matches(n.Labels) {
				ok = false
				break
			}
		}
		if ok {
			matching = append(matching, n)
		}
	}
	if len(matching) > 0 {
		return matching, ""
	}
	count := " (" + plural(len(up), "agent", "agents") + " up)"
	// Prefer naming a single constraint that alone rules out every node.
	for _, c := range cs {
		none := true
		for _, n := range up {
			if c.Matches(n.Labels) || devAsk && len(n.Devices) > 0 && IsDeviceLabel(c.Label) {
				none = false
				break
			}
		}
		if none {
			return nil, "no agent matches " + c.String() + count
		}
	}
	return nil, "no agent matches all of " + joinConstraints(cs) + count
}

func joinConstraints(cs []Constraint) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// quantity renders an amount of resource r with its unit: "64 cpu",
// "8Gi memory", "2 GPUs", "16Gi GPU memory", "1 NVENC session".
func quantity(r int, v int64) string {
	name := pool.ResourceNames[r]
	q := pool.FormatQuantity(name, v)
	switch r {
	case 0:
		return q + " cpu"
	case 1:
		return q + " memory"
	case 2:
		if v == 1 {
			return q + " GPU"
		}
		return q + " GPUs"
	case 3:
		return q + " GPU memory"
	default:
		if v == 1 {
			return q + " NVENC session"
		}
		return q + " NVENC sessions"
	}
}

// bareQuantity renders an amount for a "largest:" list, where the resource
// was already named: "16", "8Gi", but "1 GPU" and "2 NVENC".
func bareQuantity(r int, v int64) string {
	switch r {
	case 2:
		return quantity(r, v)
	case 4:
		return pool.FormatQuantity(pool.ResourceNames[r], v) + " NVENC"
	}
	return pool.FormatQuantity(pool.ResourceNames[r], v)
}

// phrase renders the resources rs of v: "64 cpu", "2 GPUs with 16Gi GPU
// memory", "16 cpu and 64Gi memory", "1 cpu, 2Gi memory and 1 GPU".
func phrase(rs []int, v [numRes]int64) string {
	var parts []string
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		p := quantity(r, v[r])
		if r == 2 && i+1 < len(rs) && rs[i+1] == 3 {
			p += " with " + quantity(3, v[3])
			i++
		}
		parts = append(parts, p)
	}
	switch len(parts) {
	case 0:
		return "nothing"
	case 1:
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// devicePhrase renders the GPU part of a for a device message: "6Gi GPU
// memory and 1 NVENC session", "2 GPUs with 16Gi GPU memory".
func devicePhrase(a [numRes]int64) string {
	var rs []int
	for r := 2; r < numRes; r++ {
		if a[r] > 0 {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return "the task"
	}
	return phrase(rs, a)
}
