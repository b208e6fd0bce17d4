package apps

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/gatewaydev/coder/sdk"
)

// Wildcard is a parsed --wildcard-access-url: the host suffix under which
// every subdomain app and port URL lives. Coder's two forms are accepted:
// "*.apps.example.com" (each app a subdomain of apps.example.com) and
// "*--apps.example.com" (each app a sibling of apps.example.com, for
// certificates that cover *.example.com only), each with an optional
// port, like "*.localhost:3000".
type Wildcard struct {
	// Suffix is what follows the "*", lowercased, without the port:
	// ".apps.example.com" or "--apps.example.com".
	Suffix string
	// Port is the wildcard's port, or empty: then a request's port is not
	// compared.
	Port string
}

// ParseWildcard parses a --wildcard-access-url value.
func ParseWildcard(s string) (Wildcard, error) {
	rest, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(s)), "*")
	if !ok {
		return Wildcard{}, errors.New(`must start with "*", like *.apps.example.com or *--apps.example.com`)
	}
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i+1:]
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return Wildcard{}, fmt.Errorf("port %q is not a TCP port", port)
		}
	}
	var domain string
	switch {
	case strings.HasPrefix(host, "."):
		domain = host[1:]
	case strings.HasPrefix(host, "--"):
		domain = host[2:]
	default:
		return Wildcard{}, errors.New(`the "*" must be followed by "." or "--", like *.apps.example.com or *--apps.example.com`)
	}
	if domain == "" || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return Wildcard{}, errors.New("it must name a domain after the \"*\", like *.apps.example.com")
	}
	for _, c := range domain {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return Wildcard{}, fmt.Errorf("the domain may hold letters, digits, hyphens and dots only, not %q", c)
		}
	}
	return Wildcard{Suffix: host, Port: port}, nil
}

// String is the wildcard as written on the command line.
func (w Wildcard) String() string {
	if w.Port != "" {
		return "*" + w.Suffix + ":" + w.Port
	}
	return "*" + w.Suffix
}

// Label returns the app part of host (a request's Host, with or without a
// port): the first DNS label before the wildcard's suffix. ok is false
// when host is not under the wildcard (the dashboard's own host, another
// site): such requests are not subdomain apps. A host under the wildcard
// whose label is empty or holds a dot is still ok, with that label, so
// that it gets a 400 rather than the dashboard.
func (w Wildcard) Label(host string) (label string, ok bool) {
	if w.Suffix == "" {
		return "", false
	}
	host = strings.ToLower(host)
	name, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		name, port = h, p
	}
	name = strings.TrimSuffix(name, ".") // the fully qualified form
	if w.Port != "" && port != w.Port {
		return "", false
	}
	label, ok = strings.CutSuffix(name, w.Suffix)
	if !ok {
		return "", false
	}
	return label, true
}

// Host returns the host (with the wildcard's port) of app label l.
func (w Wildcard) Host(l string) string {
	h := l + w.Suffix
	if w.Port != "" {
		h += ":" + w.Port
	}
	return h
}

// MinPort is the lowest port a port URL opens: ports below it are
// refused, as Coder does.
const MinPort = 9

// AppHost is a parsed subdomain app or port URL's label:
// {slug}--{agent}--{workspace}--{user} or {port}[s]--{agent}--{workspace}--{user}.
type AppHost struct {
	// Slug is the app's slug; empty for a port URL.
	Slug string
	// Port is the port of a port URL; zero for an app.
	Port uint16
	// HTTPS: a port URL whose backend speaks TLS ("8443s--...").
	HTTPS                  bool
	Agent, Workspace, User string
}

// String is the label of h, as ParseAppHost reads it.
func (h AppHost) String() string {
	first := h.Slug
	if h.Port != 0 {
		first = strconv.Itoa(int(h.Port))
		if h.HTTPS {
			first += "s"
		}
	}
	return first + "--" + h.Agent + "--" + h.Workspace + "--" + h.User
}

// ParseAppHost parses the label of a host under the wildcard. Its errors
// are sentences for the visitor that do not repeat the input.
func ParseAppHost(label string) (AppHost, error) {
	if strings.Contains(label, ".") {
		return AppHost{}, errors.New("An app's address has a single name before the wildcard domain, like code--main--dev--alice.")
	}
	parts := strings.Split(label, "--")
	if len(parts) != 4 {
		return AppHost{}, errors.New("An app's address has four parts separated by \"--\": {app or port}--{agent}--{workspace}--{user}, like code--main--dev--alice or 8080--main--dev--alice.")
	}
	for _, p := range parts[1:] {
		if sdk.ValidateName(p) != nil {
			return AppHost{}, errors.New("The agent, workspace or user in this app's address is not a valid name: lowercase letters, digits and single hyphens.")
		}
	}
	h := AppHost{Agent: parts[1], Workspace: parts[2], User: parts[3]}
	first := parts[0]
	digits := strings.TrimSuffix(first, "s")
	if digits != "" && strings.Trim(digits, "0123456789") == "" {
		n, err := strconv.ParseUint(digits, 10, 16)
		if err != nil || n == 0 || strings.HasPrefix(digits, "0") {
			return AppHost{}, errors.New("The port in this address is not a TCP port: it must be a number from 9 to 65535.")
		}
		if n < MinPort {
			return AppHost{}, fmt.Errorf("Ports below %d cannot be opened by URL.", MinPort)
		}
		h.Port, h.HTTPS = uint16(n), digits != first
		return h, nil
	}
	if sdk.ValidateName(first) != nil {
		return AppHost{}, errors.New("The app's name in this address is not a valid slug: lowercase letters, digits and single hyphens.")
	}
	h.Slug = first
	return h, nil
}
