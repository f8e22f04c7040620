package server

import (
	"fmt"
	"testing"
	"time"
)

func TestDeadServersTable(t *testing.T) {
	now := time.Unix(10_000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, tc := range []struct {
		name    string
		voters  []string
		failing map[string]time.Time
		want    string
	}{
		{"all healthy", []string{"s1", "s2", "s3"}, nil, "[]"},
		{"failing, not long enough", []string{"s1", "s2", "s3"}, map[string]time.Time{"s3": ago(time.Minute)}, "[]"},
		{"3 voters, one dead: 2 answering of 2 after", []string{"s1", "s2", "s3"}, map[string]time.Time{"s3": ago(time.Hour)}, "[s3]"},
		{"3 voters, two dead: removing one leaves 1 answering of 2", []string{"s1", "s2", "s3"},
			map[string]time.Time{"s2": ago(time.Hour), "s3": ago(2 * time.Hour)}, "[]"},
		{"5 voters, two dead: one at a time, longest dead first", []string{"s1", "s2", "s3", "s4", "s5"},
			map[string]time.Time{"s4": ago(time.Hour), "s5": ago(2 * time.Hour)}, "[s5]"},
		{"4 voters, two dead: 2 answering of 3 after", []string{"s1", "s2", "s3", "s4"},
			map[string]time.Time{"s3": ago(time.Hour), "s4": ago(time.Hour)}, "[s3]"},
		{"self never removed", []string{"s1", "s2"}, map[string]time.Time{"s1": ago(time.Hour)}, "[]"},
		{"2 voters, one dead: 1 answering of 1 after", []string{"s1", "s2"}, map[string]time.Time{"s2": ago(time.Hour)}, "[s2]"},
		{"a lone server", []string{"s1"}, nil, "[]"},
	} {
		got := fmt.Sprint(deadServers(now, tc.voters, "s1", tc.failing, 30*time.Minute))
		if got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if got := deadServers(now, []string{"s1", "s2", "s3"}, "s1", map[string]time.Time{"s3": ago(time.Hour)}, 0); got != nil {
		t.Errorf("timeout 0 removes %v", got)
	}
}
