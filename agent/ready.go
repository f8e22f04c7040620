package agent

import "errors"

// ErrNotConnected is why an agent without a session is not ready.
var ErrNotConnected = errors.New("no session with a leader")

// Ready returns nil while the agent holds a session with the leader (it
// was welcomed and the session has not ended), ErrNotConnected otherwise.
// It backs the agent's /readyz.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.events == nil {
		return ErrNotConnected
	}
	return nil
}
