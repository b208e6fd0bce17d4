package apps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DialFunc opens a TCP connection to port on the app's agent.
type DialFunc func(ctx context.Context, port uint16) (net.Conn, error)

// Target is one app to proxy to.
type Target struct {
	// URL is the app's URL on the agent, like http://localhost:8080/base.
	URL *url.URL
	// Prefix is the path the app is served under here, like
	// /@alice/dev.main/apps/code; it is removed before the request goes on.
	Prefix string
	// Dial reaches the agent.
	Dial DialFunc
}

// Port is the TCP port of an app URL (its explicit port, or 80/443).
func Port(u *url.URL) (uint16, error) {
	p := u.Port()
	if p == "" {
		if u.Scheme == "https" {
			return 443, nil
		}
		return 80, nil
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("app port %q is not a TCP port", p)
	}
	return uint16(n), nil
}

// Options configure a Proxy.
type Options struct {
	Logger *slog.Logger
	// StripCookies names the cookies of the dashboard: they never reach an
	// app, and an app's Set-Cookie that names one is dropped (compared
	// without regard to case), so that an app can neither read nor replace
	// the visitor's session.
	StripCookies []string
	// StripHeaders names request headers that must never reach an app
	// (the API token header).
	StripHeaders []string
	// StripResponseHeaders names response headers of an app that never
	// reach the browser, like Service-Worker-Allowed, with which an app on
	// the dashboard's origin could install a service worker over the
	// dashboard's pages.
	StripResponseHeaders []string
}

// Proxy reverse-proxies requests to workspace apps through a dial
// function. It is safe for concurrent use.
type Proxy struct {
	opts Options
}

// NewProxy returns a Proxy.
func NewProxy(opts Options) *Proxy {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Proxy{opts: opts}
}

// ErrBadGateway is what a request gets when the agent or the app cannot be
// reached.
var ErrBadGateway = errors.New("the app is not reachable")

// Serve proxies r to t. Websocket upgrades pass through. The dashboard's
// cookies and token never reach the app, and the app's cookies stay under
// t.Prefix (see [RewriteSetCookie]).
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, t Target) {
	port, err := Port(t.URL)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(t.URL)
			rest := strings.TrimPrefix(pr.In.URL.Path, t.Prefix)
			if !strings.HasPrefix(rest, "/") {
				rest = "/" + rest
			}
			pr.Out.URL.Path = singleJoin(t.URL.Path, rest)
			pr.Out.URL.RawPath = ""
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			pr.Out.Host = t.URL.Host
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Forwarded-Prefix", t.Prefix)
			for _, h := range p.opts.StripHeaders {
				pr.Out.Header.Del(h)
			}
			stripCookies(pr.Out, p.opts.StripCookies)
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return t.Dial(ctx, port)
			},
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
		},
		ModifyResponse: func(resp *http.Response) error {
			for _, h := range p.opts.StripResponseHeaders {
				resp.Header.Del(h)
			}
			if sc := resp.Header.Values("Set-Cookie"); len(sc) > 0 {
				resp.Header.Del("Set-Cookie")
				for _, line := range sc {
					if c, ok := RewriteSetCookie(line, t.Prefix, p.opts.StripCookies); ok {
						resp.Header.Add("Set-Cookie", c)
					}
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.opts.Logger.Debug("app proxy", "url", t.URL.Redacted(), "err", err)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "%s: is the workspace running, and is the app listening on %s?\n", ErrBadGateway, t.URL.Host)
		},
	}
	rp.ServeHTTP(w, r)
}

// singleJoin joins a base path and a request path with one slash.
func singleJoin(base, rest string) string {
	if base == "" || base == "/" {
		return rest
	}
	return strings.TrimSuffix(base, "/") + rest
}

// stripCookies removes the named cookies from r's Cookie headers, keeping
// the app's own.
func stripCookies(r *http.Request, names []string) {
	if len(names) == 0 {
		return
	}
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		drop := false
		for _, n := range names {
			if strings.EqualFold(c.Name, n) {
				drop = true
			}
		}
		if !drop {
			r.AddCookie(c)
		}
	}
}

// RewriteSetCookie confines one Set-Cookie header line of an app served
// under prefix (like /@alice/dev.main/apps/code) to that prefix: a missing
// Path, or one outside the prefix, becomes the prefix, and any Domain is
// dropped (the cookie is then host-only). A cookie that names one of drop
// (the dashboard's cookies, compared without regard to case) or that does
// not parse is refused: ok is false. The returned line is re-serialised by
// net/http, so that no attribute the parser did not understand survives.
//
// This keeps an app's cookies off the dashboard's paths; it cannot stop a
// script of the app from setting document.cookie, which is why path apps
// open for their workspace's owner only unless the deployment says
// otherwise.
func RewriteSetCookie(line, prefix string, drop []string) (string, bool) {
	c, err := http.ParseSetCookie(line)
	if err != nil {
		return "", false
	}
	for _, n := range drop {
		if strings.EqualFold(c.Name, n) {
			return "", false
		}
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" || !strings.HasPrefix(prefix, "/") {
		return "", false
	}
	if c.Path != prefix && !strings.HasPrefix(c.Path, prefix+"/") || strings.Contains(c.Path, "/..") || strings.ContainsAny(c.Path, "%\\") {
		c.Path = prefix
	}
	c.Domain = ""
	out := c.String()
	if out == "" {
		return "", false
	}
	return out, true
}
