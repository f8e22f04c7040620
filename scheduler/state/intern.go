package state

import (
	"slices"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// Strings that many records repeat (command words, task and pool names)
// are kept once: a million queued tasks of one shape share their copies.

const (
	// maxInterned is the longest string interned; longer ones are rarely
	// repeated word for word.
	maxInterned = 64
	// internTableSize bounds the table: when full it starts afresh, so
	// strings that never repeat (chunk numbers) cannot grow it without end.
	internTableSize = 4096
)

// intern returns the state's copy of str, making str the copy if there is
// none yet.
func (s *State) intern(str string) string {
	if str == "" || len(str) > maxInterned {
		return str
	}
	if c, ok := s.strs[str]; ok {
		return c
	}
	if len(s.strs) >= internTableSize {
		s.strs = make(map[string]string, internTableSize)
	}
	s.strs[str] = str
	return str
}

// internAll interns each string of list, and trims its capacity (the
// decoder grows lists by doubling) so that no slot is kept unused. A list
// without spare room is interned in place: the tasks of an array share
// one (taskarray.Task), and each task interns it to the same strings.
func (s *State) internAll(list []string) []string {
	if len(list) == 0 {
		return list
	}
	if cap(list) > len(list) {
		list = slices.Clone(list)
	}
	for i, str := range list {
		list[i] = s.intern(str)
	}
	return list
}

// compactSpec interns a new task spec's repeated strings, and its
// fallbacks'. Specs are not changed after this (they are shared with
// snapshots).
func (s *State) compactSpec(ts *pb.TaskSpec) {
	for f := ts; f != nil; f = f.Fallback {
		f.Name = s.intern(f.Name)
		f.Command = s.internAll(f.Command)
		f.Args = s.internAll(f.Args)
		f.After = s.internAll(f.After)
		f.Function = s.intern(f.Function)
		f.Workdir = s.intern(f.Workdir)
	}
}
