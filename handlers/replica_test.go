package handlers_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/agent"
	"github.com/gatewaydev/coder/sdk"
)

// TestReplicaEvents: two replicas on one database. A page open on replica B
// sees an agent connect to replica A, live, through LISTEN/NOTIFY.
func TestReplicaEvents(t *testing.T) {
	t.Parallel()
	a := newTestServer(t)
	// Replica b never polls: only a notification can wake its page.
	b := newTestServer(t, func(o *testOptions) { o.db = a.DB; o.noFirstUser = true; o.pollInterval = time.Hour })
	a.pushTemplate(t, "base", testTemplate)
	w := createWorkspace(t, a.Owner, "ws", "base")

	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, b.URL.String()+"/@owner/ws/events", nil)
	req.Header.Set(sdk.SessionTokenHeader, a.Owner.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events on replica b: status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev strings.Builder
		for sc.Scan() {
			if sc.Text() == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(sc.Text() + "\n")
		}
	}()
	next := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("event stream ended before %q", want)
				}
				if strings.Contains(ev, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no event with %q from replica b", want)
			}
		}
	}
	next(`data-testid="agent-status">connecting<`)

	ag, err := agent.New(agent.Options{URL: a.URL, Token: w.Agents[0].Token, Logger: testLogger(t), NoTailnet: true})
	if err != nil {
		t.Fatal(err)
	}
	next(`data-testid="agent-status">connected<`)
	ag.Close()
	next(`data-testid="agent-status">disconnected<`)
}
