package terminal

// SessionsForTest returns the number of live sessions.
func (s *Server) SessionsForTest() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// AttachStatsForTest reports, for session id, the number of attaches, the
// largest attach queue in bytes, how often queues overflowed (each
// overflow makes a resync) summed over attaches, and the serialised
// screen's size.
func (s *Server) AttachStatsForTest(id string) (attaches, maxQueued, drops, screenBytes int) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		return 0, 0, 0, 0
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	for a := range sess.attaches {
		maxQueued = max(maxQueued, len(a.out))
		drops += a.drops
	}
	return len(sess.attaches), maxQueued, drops, len(sess.screen.Serialize())
}

// FlowStatsForTest reports, for session id, the most bytes any attach has
// had queued or unacknowledged (the flow-control window's bound) and how
// often queues overflowed.
func (s *Server) FlowStatsForTest(id string) (maxAhead, drops int) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		return 0, 0
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	for a := range sess.attaches {
		maxAhead = max(maxAhead, a.maxAhead)
		drops += a.drops
	}
	return maxAhead, drops
}

// MaxUnackedForTest returns the most binary bytes the relay has had
// unacknowledged on any of its websockets that sent acks.
func (r *Relay) MaxUnackedForTest() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxUnacked
}
