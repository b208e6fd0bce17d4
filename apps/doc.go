// Package apps is the browser front door of workspaces: it owns the app URL
// format (/@{user}/{workspace}.{agent}/apps/{slug}/..., [ParsePath]), serves
// path apps, the subdomain-app host routing and the web terminal's
// websocket ([Server]), and reverse-proxies to agents over a [Dialer],
// keeping one connection pool per agent ([Proxy]). The primary server
// mounts it, and so will the workspace proxies.
//
// It never imports store, web, static or handlers: who a visitor is and
// what they may open comes from an [Authorizer] that the assembly fills
// (handlers from the store), and errors go back to the assembly to render
// ([ServerOptions.WriteError]). Its goroutines are those of the requests
// it serves; [Server.Close] ends them.
package apps
