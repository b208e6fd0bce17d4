// Package sdk holds what the server, the CLI and the agent share on the
// wire: the JSON API types, an HTTP client for them, the template file
// format and name rules.
//
// It is a leaf: it imports no package of this module (deps_test.go), so
// that the server, the CLI and the agent can all link it.
package sdk
