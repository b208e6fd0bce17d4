package agent

import (
	"testing"
	"time"
)

// TestReconnectSoonAfterOutage: whatever the jitter draws, an agent whose
// server was away 2 s or 30 s dials again within 2.4 s of the server
// answering (the delay that spans the server's return is at most the
// 2 s maximum plus 20 %), and its first delay after a connection is
// 250 ms again (the backoff resets on success, see connectLoop).
func TestReconnectSoonAfterOutage(t *testing.T) {
	for _, outage := range []time.Duration{2 * time.Second, 30 * time.Second} {
		worst := time.Duration(0)
		for range 1000 {
			b := reconnectBackoff()
			var at time.Duration // when the agent dials, from the server's going away
			for at < outage {
				at += b.Next()
			}
			worst = max(worst, at-outage)
		}
		if worst > 2400*time.Millisecond {
			t.Errorf("after a %v outage the agent dialled up to %v after the server was back, want within 2.4 s", outage, worst)
		}
		t.Logf("%v outage: the agent is back at most %v after the server", outage, worst)
	}
	b := reconnectBackoff()
	for range 20 {
		b.Next()
	}
	b.Reset()
	if d := b.Next(); d < 200*time.Millisecond || d > 300*time.Millisecond {
		t.Errorf("first delay after a reset %v, want 250 ms ±20 %%", d)
	}
}
