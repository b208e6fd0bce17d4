package handlers

import (
	"net/http"
	"strings"

	"github.com/gatewaydev/coder/sdk"
)

// errBrowserOnlyToken refuses an API token on a browser surface in
// browser-only mode.
var errBrowserOnlyToken = &HTTPError{Code: http.StatusForbidden, Msg: "This deployment is browser-only: open the terminal and apps from the dashboard in a browser. API tokens are not accepted here."}

// errBrowserOnlyOrigin refuses a browser-only request that does not come
// from a page of the dashboard's origin.
var errBrowserOnlyOrigin = &HTTPError{Code: http.StatusForbidden, Msg: "This deployment is browser-only: open the terminal and apps from the dashboard in a browser, at its own address."}

// browserRequestOK is the gate of the surfaces that browser-only mode keeps
// open: the web terminal's websocket and apps. Outside browser-only mode it
// accepts every request. In browser-only mode it refuses any request that
// carries an API token (even with a matching Origin), so that only the
// browser session cookie authenticates, and accepts:
//
//   - a request whose Origin is the access URL's (checkOrigin); browsers
//     send Origin on every websocket upgrade and on non-GET requests;
//   - without Origin, only a GET or HEAD that is not a websocket upgrade
//     and whose Sec-Fetch-Site is "same-origin" or "none": the navigations
//     and same-origin loads of an app's pages, for which browsers send no
//     Origin.
//
// r must have passed withUser (or carry no user, for public apps). Apps
// call it before proxying, like servePTY.
func (a *API) browserRequestOK(r *http.Request) error {
	if !a.opts.BrowserOnly {
		return nil
	}
	if keyID, _ := r.Context().Value(apiKeyIDKey).(string); keyID != "" || r.Header.Get(sdk.SessionTokenHeader) != "" {
		return errBrowserOnlyToken
	}
	if r.Header.Get("Origin") != "" {
		if a.checkOrigin(r) {
			return nil
		}
		return errBrowserOnlyOrigin
	}
	upgrade := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	if !upgrade && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// A GET without Origin is a page load. Browsers send Fetch Metadata
		// only in secure contexts (HTTPS, localhost), so its absence is not
		// refused (a plain-HTTP deployment's apps must load); what is
		// refused is another site's subresource load of an app (an <img>
		// or <script> pointing here), while a link followed from another
		// site (a navigation) opens.
		switch r.Header.Get("Sec-Fetch-Site") {
		case "", "same-origin", "none":
			return nil
		}
		if r.Header.Get("Sec-Fetch-Mode") == "navigate" {
			return nil
		}
	}
	return errBrowserOnlyOrigin
}
