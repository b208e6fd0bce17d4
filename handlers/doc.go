// Package handlers is the primary server's HTTP surface: routes, auth
// middleware, pages, the JSON API and websocket endpoints.
//
// It is an assembly: it fills the interfaces of apps, terminal and tailnet
// with store, and renders web components.
package handlers
