package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Pubsub carries events between replicas of the server (agent status
// changes, tailnet updates) over PostgreSQL LISTEN/NOTIFY.
//
// It keeps one dedicated listening connection, opened from the pool's
// configuration but outside the pool (application_name "coder_pubsub").
// When that connection drops, Pubsub reconnects with backoff and then calls
// every subscriber with a nil payload: events may have been missed, resync
// from the database. A nil payload also follows a subscriber's queue
// overflowing. Published payloads are never nil (an empty payload arrives
// as an empty, non-nil slice).
//
// Each subscription has its own queue and goroutine, so a slow callback
// delays only its own events and never the listener; callbacks of one
// subscription run one at a time, in order. Pubsub is safe for concurrent
// use; Close stops every goroutine.
type Pubsub struct {
	pool   *pgxpool.Pool
	config *pgx.ConnConfig
	logger *slog.Logger

	ctx    context.Context // cancelled by Close; owned by the listener goroutine
	cancel context.CancelFunc
	done   chan struct{} // closed when the listener goroutine has exited
	subWG  sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	subs      map[string]map[*subscription]struct{} // by channel
	listening map[string]bool                       // LISTEN issued on the current connection
	connected bool
	wake      context.CancelFunc // interrupts the listener's wait; nil when not waiting
	pending   []*subscription    // waiting for their LISTEN to take effect

	closeOnce sync.Once
}

// Publishing limits of PostgreSQL.
const (
	maxPayload     = 7999 // bytes; NOTIFY accepts less than 8000
	maxChannelName = 63   // bytes; NAMEDATALEN - 1
	subQueueLen    = 1024 // events queued per subscriber before it gets a nil (resync) instead
	pingInterval   = 30 * time.Second
	maxBackoff     = 10 * time.Second
)

// NewPubsub opens the listening connection with the configuration of pool
// and returns once it is established (bounded by ctx). Publish uses pool.
// The caller must Close the Pubsub before closing pool. logger nil
// discards.
func NewPubsub(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) (*Pubsub, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	config := pool.Config().ConnConfig.Copy()
	config.RuntimeParams["application_name"] = "coder_pubsub"
	conn, err := pgx.ConnectConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("start pubsub: %w", err)
	}
	p := &Pubsub{
		pool:      pool,
		config:    config,
		logger:    logger.With("component", "pubsub"),
		done:      make(chan struct{}),
		subs:      map[string]map[*subscription]struct{}{},
		listening: map[string]bool{},
		connected: true,
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.listen(conn)
	return p, nil
}

// Publish sends payload to every subscriber of channel on every replica,
// this one included. payload must be valid UTF-8 (e.g. JSON) and shorter
// than 8000 bytes. Delivery is at most once; subscribers learn about a gap
// from a nil payload.
func (p *Pubsub) Publish(ctx context.Context, channel string, payload []byte) error {
	if err := validChannel(channel); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if len(payload) > maxPayload {
		return fmt.Errorf("publish %s: payload of %d bytes exceeds %d", channel, len(payload), maxPayload)
	}
	if !utf8.Valid(payload) {
		return fmt.Errorf("publish %s: payload is not valid UTF-8", channel)
	}
	if _, err := p.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, string(payload)); err != nil {
		return fmt.Errorf("publish %s: %w", channel, err)
	}
	return nil
}

// Subscribe calls fn with the payload of every event published on channel
// until cancel is called, and with nil when events may have been missed
// (see [Pubsub]). It returns once the subscription is active on the
// listening connection, or once the listener is disconnected, in which case
// fn gets a nil payload after the reconnection. fn runs on the
// subscription's own goroutine; it may call cancel but not Close.
//
// channel must be 1 to 63 characters of ASCII letters, digits and _ . : -;
// Subscribe panics otherwise (a programmer error). After cancel returns no
// new call of fn starts; cancel is idempotent. Subscribing after Close
// returns a no-op cancel and fn is never called.
func (p *Pubsub) Subscribe(channel string, fn func(payload []byte)) (cancel func()) {
	if err := validChannel(channel); err != nil {
		panic("store: Pubsub.Subscribe: " + err.Error())
	}
	s := &subscription{channel: channel, fn: fn, wake: make(chan struct{}, 1), active: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return func() {}
	}
	set := p.subs[channel]
	if set == nil {
		set = map[*subscription]struct{}{}
		p.subs[channel] = set
	}
	set[s] = struct{}{}
	if p.connected && !p.listening[channel] {
		p.pending = append(p.pending, s)
		p.wakeLocked()
	} else {
		s.activate()
	}
	p.subWG.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.subWG.Done()
		s.deliver()
	}()
	<-s.active

	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if set := p.subs[channel]; set != nil {
				delete(set, s)
				if len(set) == 0 {
					delete(p.subs, channel)
					p.wakeLocked() // to UNLISTEN
				}
			}
			p.mu.Unlock()
			s.stop()
		})
	}
}

// Close stops the listener and every subscription's goroutine and returns
// once they have exited. It does not close the pool. Close is idempotent;
// it must not be called from a subscriber's callback.
func (p *Pubsub) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
		<-p.done
		p.mu.Lock()
		var subs []*subscription
		for _, set := range p.subs {
			for s := range set {
				subs = append(subs, s)
			}
		}
		p.subs = map[string]map[*subscription]struct{}{}
		p.mu.Unlock()
		for _, s := range subs {
			s.stop()
		}
		p.subWG.Wait()
	})
	return nil
}

// wakeLocked interrupts the listener's wait so it acts on changed
// subscriptions.
func (p *Pubsub) wakeLocked() {
	if p.wake != nil {
		p.wake()
		p.wake = nil
	}
}

// listen owns the listening connection: it waits for notifications,
// issues LISTEN and UNLISTEN as subscriptions change, and reconnects.
func (p *Pubsub) listen(conn *pgx.Conn) {
	defer close(p.done)
	backoff := 100 * time.Millisecond
	for {
		if conn != nil {
			err := p.serve(conn)
			closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = conn.Close(closeCtx)
			cancel()
			conn = nil
			if p.ctx.Err() != nil {
				p.setDisconnected()
				return
			}
			p.logger.Warn("pubsub connection lost, reconnecting", "err", err)
			p.setDisconnected()
		}
		timer := time.NewTimer(backoff + rand.N(backoff/2))
		select {
		case <-p.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		c, err := pgx.ConnectConfig(ctx, p.config)
		cancel()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.logger.Warn("pubsub reconnect failed", "err", err, "retry_in", backoff)
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		if err := p.resubscribe(c); err != nil {
			p.logger.Warn("pubsub resubscribe failed", "err", err)
			closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = c.Close(closeCtx)
			cancel()
			continue
		}
		p.logger.Info("pubsub reconnected")
		conn = c
	}
}

// resubscribe issues LISTEN for every subscribed channel on a new
// connection and then, with every channel listened to, tells every
// subscriber to resync.
func (p *Pubsub) resubscribe(conn *pgx.Conn) error {
	done := map[string]bool{}
	for {
		p.mu.Lock()
		var missing []string
		for ch := range p.subs {
			if !done[ch] {
				missing = append(missing, ch)
			}
		}
		if len(missing) == 0 {
			p.listening = done
			p.connected = true
			for _, set := range p.subs {
				for s := range set {
					s.push(nil)
				}
			}
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
		for _, ch := range missing {
			if err := p.exec(conn, "LISTEN", ch); err != nil {
				return err
			}
			done[ch] = true
		}
	}
}

// setDisconnected forgets the connection's LISTENs and releases callers of
// Subscribe waiting for one: their subscriber will get a nil payload after
// the reconnection.
func (p *Pubsub) setDisconnected() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.connected = false
	p.listening = map[string]bool{}
	p.wake = nil
	for _, s := range p.pending {
		s.activate()
	}
	p.pending = nil
}

// serve runs the connection until it fails or p is closed.
func (p *Pubsub) serve(conn *pgx.Conn) error {
	for {
		// Sync LISTENs with subscriptions, then wait; a change made after
		// the snapshot cancels waitCtx, so the wait returns at once.
		waitCtx, wake := context.WithTimeout(p.ctx, pingInterval)
		p.mu.Lock()
		p.wake = wake
		var listen, unlisten []string
		for ch := range p.subs {
			if !p.listening[ch] {
				listen = append(listen, ch)
			}
		}
		for ch := range p.listening {
			if p.subs[ch] == nil {
				unlisten = append(unlisten, ch)
			}
		}
		pending := p.pending
		p.pending = nil
		p.mu.Unlock()

		for _, ch := range unlisten {
			if err := p.exec(conn, "UNLISTEN", ch); err != nil {
				wake()
				p.requeue(pending)
				return err
			}
			p.mu.Lock()
			delete(p.listening, ch)
			p.mu.Unlock()
		}
		for _, ch := range listen {
			if err := p.exec(conn, "LISTEN", ch); err != nil {
				wake()
				p.requeue(pending)
				return err
			}
			p.mu.Lock()
			p.listening[ch] = true
			p.mu.Unlock()
		}
		for _, s := range pending {
			s.activate()
		}

		// Notifications that arrived during the LISTENs are buffered by
		// pgx and returned first.
		n, err := conn.WaitForNotification(waitCtx)
		timedOut := errors.Is(waitCtx.Err(), context.DeadlineExceeded)
		woken := waitCtx.Err() != nil
		wake()
		switch {
		case err == nil:
			p.dispatch(n.Channel, n.Payload)
		case p.ctx.Err() != nil:
			return p.ctx.Err()
		case timedOut:
			ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
			err := conn.Ping(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		case woken:
			// A subscription changed.
		default:
			return err
		}
	}
}

// exec runs LISTEN or UNLISTEN of channel, bounded so that a silently
// dead connection is noticed.
func (p *Pubsub) exec(conn *pgx.Conn, command, channel string) error {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, command+" "+pgx.Identifier{channel}.Sanitize())
	return err
}

// requeue puts subscriptions whose LISTEN did not happen back in pending,
// so setDisconnected releases them.
func (p *Pubsub) requeue(subs []*subscription) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = append(p.pending, subs...)
}

func (p *Pubsub) dispatch(channel, payload string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.subs[channel] {
		b := make([]byte, len(payload))
		copy(b, payload)
		s.push(b)
	}
}

// subscription is one Subscribe call: a bounded queue drained by its own
// goroutine (deliver).
type subscription struct {
	channel string
	fn      func([]byte)
	wake    chan struct{} // capacity 1: the queue changed or stop was called

	activeOnce sync.Once
	active     chan struct{} // closed when Subscribe may return

	mu      sync.Mutex
	queue   [][]byte
	stopped bool
}

func (s *subscription) activate() { s.activeOnce.Do(func() { close(s.active) }) }

// push queues payload; when the queue is full the events queued so far are
// replaced by one nil (resync).
func (s *subscription) push(payload []byte) {
	s.mu.Lock()
	if len(s.queue) >= subQueueLen {
		s.queue = append(s.queue[:0], nil)
	}
	if payload != nil || len(s.queue) == 0 || s.queue[len(s.queue)-1] != nil {
		s.queue = append(s.queue, payload)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) stop() {
	s.activate()
	s.mu.Lock()
	s.stopped = true
	s.queue = nil
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// deliver calls fn for each queued payload until stop.
func (s *subscription) deliver() {
	for range s.wake {
		for {
			s.mu.Lock()
			if s.stopped {
				s.mu.Unlock()
				return
			}
			if len(s.queue) == 0 {
				s.mu.Unlock()
				break
			}
			payload := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.mu.Unlock()
			s.fn(payload)
		}
	}
}

// validChannel accepts the channel names Pubsub uses: short and made of
// characters that need no thought when quoted as identifiers.
func validChannel(name string) error {
	if name == "" || len(name) > maxChannelName {
		return fmt.Errorf("channel name %q: must be 1 to %d characters", name, maxChannelName)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == ':', r == '-':
		default:
			return fmt.Errorf("channel name %q: only ASCII letters, digits and _ . : - are allowed", name)
		}
	}
	return nil
}
