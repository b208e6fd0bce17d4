// Package apps routes workspace apps (path and subdomain URLs, port URLs),
// issues and verifies app tokens and reverse-proxies to agents over a dial
// function. It is shared by the server and the workspace proxies.
//
// It never imports store, web, static or handlers.
package apps
