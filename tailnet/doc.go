// Package tailnet is the coordination plane: a Tailscale-protocol control
// server, DERP and STUN serving, DERP map configuration and tsnet node
// helpers.
//
// It never imports store, web, static or handlers: it declares the small
// interfaces it needs (a node store, an authenticator) and the assemblies
// fill them.
package tailnet
