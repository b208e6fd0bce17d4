package handlers

import "sync"

// broker wakes the watchers of a workspace (its open pages) when something
// about it changes. Wakes coalesce: a watcher that has not yet handled one
// wake gets no second.
type broker struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

func newBroker() *broker { return &broker{subs: map[string]map[chan struct{}]struct{}{}} }

// subscribe returns a channel woken on every change of the workspace, and a
// function that ends the subscription.
func (b *broker) subscribe(workspaceID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	b.mu.Lock()
	if b.subs[workspaceID] == nil {
		b.subs[workspaceID] = map[chan struct{}]struct{}{}
	}
	b.subs[workspaceID][ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs[workspaceID], ch)
		if len(b.subs[workspaceID]) == 0 {
			delete(b.subs, workspaceID)
		}
		b.mu.Unlock()
	}
}

// publish wakes every watcher of the workspace without blocking.
func (b *broker) publish(workspaceID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs[workspaceID] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// publishAll wakes every watcher of every workspace.
func (b *broker) publishAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, subs := range b.subs {
		for ch := range subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
