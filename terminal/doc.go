// Package terminal implements the reconnecting PTY: its wire protocol, the
// agent-side sessions and the relay used by the server and the proxies.
//
// It takes a dial function, never a tailnet node, and never imports store,
// web, static or handlers.
package terminal
