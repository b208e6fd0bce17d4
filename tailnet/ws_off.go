//go:build !ts_debug_websockets

package tailnet

// websocketDERPCompiled reports whether derphttp's websocket client is
// compiled in (it needs the ts_debug_websockets build tag on Linux).
const websocketDERPCompiled = false
