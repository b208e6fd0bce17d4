package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/store/storetest"
)

// newAgent makes a user, a template and a workspace with one agent.
func newAgent(t *testing.T, db *store.DB) string {
	t.Helper()
	ctx := context.Background()
	u, err := db.CreateUser(ctx, store.User{ID: uuid.NewString(), Username: "u" + uuid.NewString()[:8], Email: uuid.NewString() + "@example.com", PasswordHash: "x", Role: "member"})
	if err != nil {
		t.Fatal(err)
	}
	tpl, _, err := db.UpsertTemplate(ctx, store.Template{ID: uuid.NewString(), Name: "t" + uuid.NewString()[:8], Source: "x", Spec: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	agentID := uuid.NewString()
	if _, err := db.CreateWorkspace(ctx, store.Workspace{ID: uuid.NewString(), OwnerID: u.ID, TemplateID: tpl.ID, Name: "dev", DesiredState: "running"},
		[]store.Agent{{ID: agentID, Name: "main", TokenHash: []byte("h" + agentID), Spec: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	return agentID
}

func TestStartupLog(t *testing.T) {
	t.Parallel()
	db := storetest.New(t)
	ctx := context.Background()
	id := newAgent(t, db)

	s, err := db.StartupOf(ctx, id, 100)
	if err != nil || s.State != "" || len(s.Lines) != 0 {
		t.Fatalf("before any report: %+v, %v", s, err)
	}
	if err := db.SetStartupState(ctx, id, "running", 0); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendStartupLog(ctx, id, true, []string{"one", "two"}, 5, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendStartupLog(ctx, id, false, []string{"three", "four", "five", "six", "seven"}, 5, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := db.SetStartupState(ctx, id, "error", 3); err != nil {
		t.Fatal(err)
	}
	s, err = db.StartupOf(ctx, id, 100)
	if err != nil {
		t.Fatal(err)
	}
	// Bounded by lines: the two oldest went.
	if got := strings.Join(s.Lines, ","); got != "three,four,five,six,seven" || s.Dropped != 2 || s.State != "error" || s.ExitCode != 3 {
		t.Errorf("after 7 lines with a bound of 5: %+v", s)
	}
	// The page asks for fewer lines than are kept: the newest, with the
	// rest counted.
	s, _ = db.StartupOf(ctx, id, 2)
	if got := strings.Join(s.Lines, ","); got != "six,seven" || s.Dropped != 5 {
		t.Errorf("limit 2: %+v", s)
	}
	// Bounded by bytes (each line counts its newline): 4+4 bytes fit in 9.
	if err := db.AppendStartupLog(ctx, id, true, []string{"aaa", "bbb", "ccc"}, 5, 9); err != nil {
		t.Fatal(err)
	}
	s, _ = db.StartupOf(ctx, id, 100)
	if got := strings.Join(s.Lines, ","); got != "bbb,ccc" || s.Dropped != 1 {
		t.Errorf("after a reset with a bound of 9 bytes: %+v", s)
	}
	// A new agent start (reset, running) forgets what was dropped before.
	if err := db.SetStartupState(ctx, id, "running", 0); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendStartupLog(ctx, id, true, []string{"fresh"}, 5, 1<<20); err != nil {
		t.Fatal(err)
	}
	s, _ = db.StartupOf(ctx, id, 100)
	if got := strings.Join(s.Lines, ","); got != "fresh" || s.Dropped != 0 || s.State != "running" {
		t.Errorf("after a restart: %+v", s)
	}
	// Another agent's log is its own.
	other := newAgent(t, db)
	if s, _ := db.StartupOf(ctx, other, 100); len(s.Lines) != 0 {
		t.Errorf("other agent sees %q", s.Lines)
	}
}
