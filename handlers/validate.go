package handlers

import (
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/gatewaydev/coder/sdk"
)

// nulField returns the JSON name of the first string in v (a pointer to a
// struct, or anything inside one) that holds a NUL byte. PostgreSQL refuses
// NUL in text, so such input must be turned away as bad input before it
// reaches the database. Nested fields are named with dots ("apps.0.url").
func nulField(v any) (string, bool) {
	return nulIn(reflect.ValueOf(v), "")
}

func nulIn(v reflect.Value, path string) (string, bool) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return "", false
		}
		return nulIn(v.Elem(), path)
	case reflect.String:
		if strings.IndexByte(v.String(), 0) >= 0 {
			return path, true
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if p, ok := nulIn(v.Field(i), join(path, name)); ok {
				return p, true
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if p, ok := nulIn(v.Index(i), join(path, strconv.Itoa(i))); ok {
				return p, true
			}
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			if k.Kind() == reflect.String && strings.IndexByte(k.String(), 0) >= 0 {
				return join(path, "(key)"), true
			}
			if p, ok := nulIn(v.MapIndex(k), join(path, k.String())); ok {
				return p, true
			}
		}
	}
	return "", false
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// errNUL is the answer to input with a NUL byte in field.
func errNUL(field string) *HTTPError {
	return badRequest("Field "+field+" contains a NUL byte, which is not allowed. Remove it and try again.",
		sdk.ValidationError{Field: field, Detail: "must not contain a NUL byte"})
}

// readForm parses a dashboard form (bounded like a JSON body) and refuses
// one with a NUL byte in any field, naming the field.
func readForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodySize)
	if err := r.ParseForm(); err != nil {
		return badRequest("The form could not be read. Reload the page and submit it again.")
	}
	names := make([]string, 0, len(r.PostForm))
	for k := range r.PostForm {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if strings.IndexByte(k, 0) >= 0 {
			return errNUL("(name)")
		}
		for _, v := range r.PostForm[k] {
			if strings.IndexByte(v, 0) >= 0 {
				return errNUL(k)
			}
		}
	}
	return nil
}

// refuseNULPath answers 400 to a request whose path or query holds a NUL
// byte: no route takes one, and it must not reach a database lookup.
func (a *API) refuseNULPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An app's query string is the app's business; everything else here
		// is ours.
		query := !strings.HasPrefix(r.URL.Path, "/@") && (strings.Contains(r.URL.RawQuery, "%00") || strings.IndexByte(r.URL.RawQuery, 0) >= 0)
		if strings.IndexByte(r.URL.Path, 0) >= 0 || query {
			a.serveError(w, r, badRequest("The URL contains a NUL byte (%00), which no page or API route accepts."))
			return
		}
		next.ServeHTTP(w, r)
	})
}
