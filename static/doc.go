// Package static embeds the browser assets (our CSS and JS, and the
// xterm.js bundle built from npm by the Makefile) and serves them with
// caching headers.
//
// It is a leaf and imports nothing of this module.
package static
