// Package cli is the client side of the coder binary: the commands that
// talk to a deployment (login, logout, whoami, users, templates, create,
// list, start, stop, delete, ping, speedtest, netcheck, ssh, config-ssh,
// port-forward, version), and the option table (flags with their CODER_*
// environment variables) that every command of the binary, server and
// agent included, is built from.
//
// It calls the API through [sdk.Client] and reaches agents through its
// own [tailnet.Node]; it never imports store, handlers, web, static or
// provision. Command goroutines end when their command returns. cmd/coder
// wires [Commands] into the root command, installs signal handling and
// turns an [ExitError] into the process's exit status.
package cli
