// Package wsproxy is the workspace proxy server: it registers with the
// primary, relays the web terminal and apps for its region and exposes
// /latency-check and /healthz.
//
// It never imports store: proxies make no database connections.
package wsproxy
