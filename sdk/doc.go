// Package sdk holds what the server, the CLI and the agent share on the
// wire: the JSON API types, an HTTP client for them, the template file
// format and name rules.
//
// It is a capability package: it never imports store, web, static,
// handlers or cmd.
package sdk
