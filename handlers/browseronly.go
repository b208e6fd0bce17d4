package handlers

import (
	"net/http"

	"github.com/gatewaydev/coder/sdk"
)

// errBrowserOnlyToken refuses an API token on a browser surface in
// browser-only mode.
var errBrowserOnlyToken = &HTTPError{Code: http.StatusForbidden, Msg: "This deployment is browser-only: open the terminal and apps from the dashboard in a browser. API tokens are not accepted here."}

// errBrowserOnlyOrigin refuses a browser-only request without the
// dashboard's Origin.
var errBrowserOnlyOrigin = &HTTPError{Code: http.StatusForbidden, Msg: "This deployment is browser-only: open the terminal and apps from the dashboard in a browser, at its own address."}

// browserRequestOK is the gate of the surfaces that browser-only mode keeps
// open (the web terminal's websocket and apps). In browser-only mode it
// accepts only a request authenticated by the browser session cookie (never
// an API token, even with a matching Origin) that carries an Origin equal
// to the access URL's, as a browser sends on a websocket upgrade from the
// dashboard; a script holding a user's token cannot open a shell. Outside
// browser-only mode it accepts every request. r must have passed withUser.
func (a *API) browserRequestOK(r *http.Request) error {
	if !a.opts.BrowserOnly {
		return nil
	}
	if keyID, _ := r.Context().Value(apiKeyIDKey).(string); keyID != "" || r.Header.Get(sdk.SessionTokenHeader) != "" {
		return errBrowserOnlyToken
	}
	if r.Header.Get("Origin") == "" || !a.checkOrigin(r) {
		return errBrowserOnlyOrigin
	}
	return nil
}
