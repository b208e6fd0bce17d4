package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
)

// HTTPError is an error with a status and a message for the user. Msg is a
// capitalised sentence that tells the user what to do; Err is logged, never
// shown.
type HTTPError struct {
	Code int
	Msg  string
	// APICode is the machine-readable sdk.Response.Code of an API error
	// (for example sdk.CodeBrowserOnly); empty for most errors.
	APICode     string
	Validations []sdk.ValidationError
	Err         error
}

func (e *HTTPError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Code, e.Msg, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Msg)
}

func (e *HTTPError) Unwrap() error { return e.Err }

func badRequest(msg string, v ...sdk.ValidationError) *HTTPError {
	return &HTTPError{Code: http.StatusBadRequest, Msg: msg, Validations: v}
}

func notFoundErr(what string) *HTTPError {
	return &HTTPError{Code: http.StatusNotFound, Msg: what + " was not found, or you do not have access to it."}
}

// handlerFunc is an HTTP handler that returns an error instead of writing
// one.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// isAPI tells whether r is for the JSON API (errors as JSON) rather than a
// page (errors as a page).
func isAPI(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/api/")
}

// serveError writes err to the user once and logs what the user does not
// see.
func (a *API) serveError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
		// The client went away (a closed tab, a page left mid-request):
		// nobody to answer, nothing went wrong on the server.
		a.logger.Debug("request abandoned by the client", "method", r.Method, "path", r.URL.Path, "err", err)
		return
	}
	var he *HTTPError
	if ae := (*apps.Error)(nil); !errors.As(err, &he) && errors.As(err, &ae) {
		he = &HTTPError{Code: ae.Code, Msg: ae.Msg, Err: ae.Err}
	}
	if he == nil {
		he = &HTTPError{Code: http.StatusInternalServerError, Msg: "Something went wrong on the server. Try again; if it keeps happening, check the server logs.", Err: err}
	}
	if he.Code == http.StatusServiceUnavailable && he.Err == nil {
		// Said on purpose (shutting down, a feature off): nothing failed.
		a.logger.Info("request answered unavailable", "method", r.Method, "path", r.URL.Path, "msg", he.Msg)
	} else if he.Code >= 500 {
		a.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", he.Code, "err", he.Err)
	} else if he.Err != nil {
		a.logger.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", he.Code, "err", he.Err)
	}
	if isAPI(r) {
		writeJSON(w, he.Code, sdk.Response{Code: he.APICode, Message: he.Msg, Validations: he.Validations})
		return
	}
	a.renderErrorPage(w, r, he)
}

func (a *API) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.serveError(w, r, err)
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// maxBodySize bounds every JSON request body.
const maxBodySize = 1 << 20

// readJSON decodes a JSON body into v, refusing unknown fields, trailing
// data and bodies over maxBodySize.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodySize)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &HTTPError{Code: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("The request body is larger than %d bytes.", maxBodySize)}
		}
		var se *json.SyntaxError
		var ute *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("The request body is not valid JSON (it ends too early).")
		case errors.As(err, &se):
			return badRequest(fmt.Sprintf("The request body is not valid JSON (at byte %d).", se.Offset))
		case errors.As(err, &ute):
			return badRequest(fmt.Sprintf("Field %q must be a %s.", ute.Field, ute.Type))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return badRequest(fmt.Sprintf("The request has an unknown field %s.", strings.TrimPrefix(err.Error(), "json: unknown field ")))
		case err.Error() == "EOF":
			return badRequest("The request body is empty; send a JSON object.")
		}
		return badRequest("The request body could not be read as JSON.")
	}
	if dec.More() {
		return badRequest("The request body has data after the JSON object.")
	}
	if field, ok := nulField(v); ok {
		return errNUL(field)
	}
	return nil
}
