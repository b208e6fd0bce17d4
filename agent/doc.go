// Package agent is the workspace agent: it connects to the server, reports
// its state, joins the tailnet and serves PTY, SSH, port forwarding and
// speedtest there.
//
// It never imports store, handlers, web or static: the agent stays small.
package agent
