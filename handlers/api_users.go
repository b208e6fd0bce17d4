package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strings"

	"github.com/google/uuid"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/tailnet"
)

func toSDKUser(u store.User) sdk.User {
	return sdk.User{ID: u.ID, Username: u.Username, Email: u.Email, Role: u.Role, CreatedAt: u.CreatedAt}
}

func (a *API) serveBuildInfo(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, sdk.BuildInfo{Version: a.opts.Version, BrowserOnly: a.opts.BrowserOnly, BlockDirect: a.opts.Tailnet.BlockDirect,
		DERPForceWebsockets: a.opts.Tailnet.ForceWebsockets})
	return nil
}

// validateNewUser checks a new user's fields and returns a hashed password.
func validateNewUser(username, email, password string) (string, error) {
	var v []sdk.ValidationError
	if err := sdk.ValidateName(username); err != nil {
		v = append(v, sdk.ValidationError{Field: "username", Detail: err.Error()})
	}
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email {
		v = append(v, sdk.ValidationError{Field: "email", Detail: "must be an email address like ada@example.com"})
	}
	if err := validatePassword(password); err != nil {
		v = append(v, sdk.ValidationError{Field: "password", Detail: err.Error()})
	}
	if len(v) > 0 {
		return "", badRequest("Some fields are not valid.", v...)
	}
	return hashPassword(password)
}

func conflictUser(err error) error {
	if errors.Is(err, store.ErrConflict) {
		return &HTTPError{Code: http.StatusConflict, Msg: "A user with that username or email already exists.", Err: err}
	}
	return err
}

// createFirstUser makes the owner; it fails with 409 once any user exists.
func (a *API) createFirstUser(r *http.Request, req sdk.CreateFirstUserRequest) (store.User, error) {
	hash, err := validateNewUser(req.Username, req.Email, req.Password)
	if err != nil {
		return store.User{}, err
	}
	u, err := a.db.CreateFirstUser(r.Context(), store.User{ID: uuid.NewString(), Username: req.Username, Email: req.Email, PasswordHash: hash})
	if errors.Is(err, store.ErrConflict) {
		return store.User{}, &HTTPError{Code: http.StatusConflict, Msg: "The first user already exists. Log in instead.", Err: err}
	}
	return u, err
}

func (a *API) serveCreateFirstUser(w http.ResponseWriter, r *http.Request) error {
	var req sdk.CreateFirstUserRequest
	if err := readJSON(w, r, &req); err != nil {
		return err
	}
	u, err := a.createFirstUser(r, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, toSDKUser(u))
	return nil
}

// checkLogin verifies a login and password under the rate limit.
func (a *API) checkLogin(r *http.Request, login, password string) (store.User, error) {
	u, err := a.db.UserByLogin(r.Context(), login)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, err
	}
	// One bucket per account however it is named (username or email, any
	// case); an unknown login gets its own, normalised.
	account := "id:" + u.ID
	if err != nil {
		account = "login:" + strings.ToLower(strings.TrimSpace(login))
	}
	if !a.limiter.allow(limitAddr(r), account) {
		return store.User{}, &HTTPError{Code: http.StatusTooManyRequests, Msg: "Too many login attempts from your address. Wait a minute and try again."}
	}
	if err != nil {
		checkPassword(dummyHash, password)
		return store.User{}, &HTTPError{Code: http.StatusUnauthorized, Msg: "Incorrect username, email or password."}
	}
	if !checkPassword(u.PasswordHash, password) {
		return store.User{}, &HTTPError{Code: http.StatusUnauthorized, Msg: "Incorrect username, email or password."}
	}
	return u, nil
}

func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return host
}

func (a *API) serveLogin(w http.ResponseWriter, r *http.Request) error {
	var req sdk.LoginRequest
	if err := readJSON(w, r, &req); err != nil {
		return err
	}
	u, err := a.checkLogin(r, req.Login, req.Password)
	if err != nil {
		return err
	}
	tok, err := a.newAPIKey(r.Context(), u.ID, "cli", "login")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, sdk.LoginResponse{SessionToken: tok})
	return nil
}

func (a *API) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if id, _ := r.Context().Value(apiKeyIDKey).(string); id != "" {
		if err := a.db.DeleteAPIKey(r.Context(), id); err != nil {
			return err
		}
		// CLI nodes that joined the tailnet with this key leave it.
		if a.tailnet != nil {
			a.tailnet.Disconnect(r.Context(), tailnet.Identity{Kind: tailnet.KindClient, ID: id})
		}
	}
	writeJSON(w, http.StatusOK, sdk.Response{Message: "Logged out."})
	return nil
}

func (a *API) serveMe(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, toSDKUser(userFrom(r)))
	return nil
}

func (a *API) serveListUsers(w http.ResponseWriter, r *http.Request) error {
	us, err := a.db.ListUsers(r.Context())
	if err != nil {
		return err
	}
	out := make([]sdk.User, 0, len(us))
	for _, u := range us {
		out = append(out, toSDKUser(u))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) createUser(r *http.Request, req sdk.CreateUserRequest) (store.User, error) {
	hash, err := validateNewUser(req.Username, req.Email, req.Password)
	if err != nil {
		return store.User{}, err
	}
	switch req.Role {
	case "":
		req.Role = store.RoleMember
	case store.RoleMember, store.RoleOwner:
	default:
		return store.User{}, badRequest("Some fields are not valid.", sdk.ValidationError{Field: "role", Detail: "must be member or owner"})
	}
	u, err := a.db.CreateUser(r.Context(), store.User{ID: uuid.NewString(), Username: req.Username, Email: req.Email, PasswordHash: hash, Role: req.Role})
	return u, conflictUser(err)
}

func (a *API) serveCreateUser(w http.ResponseWriter, r *http.Request) error {
	var req sdk.CreateUserRequest
	if err := readJSON(w, r, &req); err != nil {
		return err
	}
	u, err := a.createUser(r, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, toSDKUser(u))
	return nil
}

// userByParam resolves a username, a user id or "me".
func (a *API) userByParam(r *http.Request, p string) (store.User, error) {
	if p == "me" {
		return userFrom(r), nil
	}
	var u store.User
	var err error
	if _, perr := uuid.Parse(p); perr == nil {
		u, err = a.db.UserByID(r.Context(), p)
	} else {
		u, err = a.db.UserByLogin(r.Context(), p)
	}
	if errors.Is(err, store.ErrNotFound) {
		return u, notFoundErr("User " + p)
	}
	return u, err
}

func (a *API) deleteUser(r *http.Request, p string) error {
	u, err := a.userByParam(r, p)
	if err != nil {
		return err
	}
	if u.ID == userFrom(r).ID {
		return badRequest("You cannot delete yourself.")
	}
	// A user who owns workspaces is refused, as Coder does: deleting the
	// user alone would leave the workspaces running, and started again at
	// the next server start, with nobody to stop them.
	err = a.db.DeleteUser(r.Context(), u.ID)
	var hw *store.UserHasWorkspacesError
	if errors.As(err, &hw) {
		return &HTTPError{Code: http.StatusConflict, Err: err, Msg: fmt.Sprintf(
			"%s still owns %d workspace(s): %s. Delete them first (coder delete, or from the workspace page), then delete the user.",
			u.Username, len(hw.Workspaces), strings.Join(hw.Workspaces, ", "))}
	}
	if err != nil {
		return err
	}
	a.onUserDeleted(u.ID)
	if a.opts.Provisioner != nil {
		if err := a.opts.Provisioner.RemoveOwner(r.Context(), u.ID); err != nil {
			a.logger.Error("remove the deleted user's OS account", "user_id", u.ID, "err", err)
		}
	}
	return nil
}

func (a *API) serveDeleteUser(w http.ResponseWriter, r *http.Request) error {
	if err := a.deleteUser(r, r.PathValue("user")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sdk.Response{Message: "User deleted."})
	return nil
}

// onUserDeleted drops what a deleted user still holds open: their CLI
// nodes leave the tailnet.
func (a *API) onUserDeleted(userID string) {
	a.logger.Info("user deleted", "user_id", userID)
	if a.tailnet != nil {
		a.tailnet.RevokeOwner(context.WithoutCancel(a.ctx), userID)
	}
}
