package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
	"sync"
)

//go:embed dist
var distFS embed.FS

// FS holds the built assets: app.css, app.js, terminal.css, terminal.js.
var FS, _ = fs.Sub(distFS, "dist")

var (
	hashOnce sync.Once
	hashes   map[string]string
)

func computeHashes() {
	hashes = map[string]string{}
	fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := fs.ReadFile(FS, path)
		if err != nil {
			return nil
		}
		sum := sha256.Sum256(b)
		hashes[path] = hex.EncodeToString(sum[:])[:12]
		return nil
	})
}

// Path returns the URL of the asset name (like "app.css") with a content
// hash, so that it can be cached forever. An asset that was not built gets
// no hash; Missing lists those.
func Path(name string) string {
	hashOnce.Do(computeHashes)
	if h, ok := hashes[name]; ok {
		return "/static/" + name + "?v=" + h
	}
	return "/static/" + name
}

// Missing returns the names among want that were not built into the
// binary (run `make build`, which runs npm ci and the asset build).
func Missing(want ...string) []string {
	hashOnce.Do(computeHashes)
	var out []string
	for _, n := range want {
		if _, ok := hashes[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

// Handler serves the assets. Requests that carry the current content hash
// are cacheable for a year; others must revalidate.
func Handler() http.Handler {
	hashOnce.Do(computeHashes)
	files := http.FileServerFS(FS)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		if v := r.URL.Query().Get("v"); v != "" && v == hashes[name] {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}
