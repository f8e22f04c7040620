package main

import (
	"strings"
	"testing"
)

// --max-message-size (server and agent, config key max_message_size) takes
// a byte size at least the 16 MiB minimum.
func TestMessageSizeFlag(t *testing.T) {
	for in, want := range map[string]int{"16MiB": 16 << 20, "32Mi": 32 << 20, "1GiB": 1 << 30} {
		if got, err := messageSize(in); err != nil || got != want {
			t.Fatalf("%s: %d %v", in, got, err)
		}
	}
	for _, in := range []string{"8MiB", "4194304", "lots", "2GiB"} {
		if _, err := messageSize(in); err == nil || !strings.Contains(err.Error(), "--max-message-size") {
			t.Fatalf("%s accepted: %v", in, err)
		}
	}
}
