package vt

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// A recording is a real PTY session: the output bytes and the resizes at
// their byte offsets. It is made by the test itself, never cached.
type recording struct {
	t       testing.TB
	f       *os.File
	cmd     *exec.Cmd
	done    chan struct{}
	notify  chan struct{}
	mu      sync.Mutex
	out     []byte
	resizes []resizeAt
	emu     *Terminal // answers the session's terminal queries, as a browser would
	cols    int
	rows    int
}

type resizeAt struct {
	off        int
	cols, rows int
}

// needTools fails (never skips) when a program the recordings use is missing.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install vim htop less", tool)
		}
	}
}

// startRecording starts bash in an 80x24 PTY with a fixed environment.
func startRecording(t testing.TB, home string) *recording {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc", "-i")
	cmd.Dir = home
	cmd.Env = []string{
		"TERM=xterm-256color", "HOME=" + home, "PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C.UTF-8", "LC_ALL=C.UTF-8", "PS1=$ ", "HISTFILE=/dev/null", "SHELL=/bin/bash",
		"LS_COLORS=di=01;34:ln=01;36:ex=01;32:*.tar=01;31:*.go=38;5;208:*.md=38;2;255;128;0",
	}
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 80, Rows: 24})
	if err != nil {
		t.Fatalf("start bash in a pty: %v", err)
	}
	r := &recording{t: t, f: f, cmd: cmd, done: make(chan struct{}), notify: make(chan struct{}, 1),
		emu: New(80, 24, Options{}), cols: 80, rows: 24}
	go r.readLoop()
	t.Cleanup(r.stop)
	return r
}

func (r *recording) readLoop() {
	defer close(r.done)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.f.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.out = append(r.out, buf[:n]...)
			r.emu.Write(buf[:n])
			replies := r.emu.TakeReplies()
			r.mu.Unlock()
			if len(replies) > 0 {
				r.f.Write(replies)
			}
			select {
			case r.notify <- struct{}{}:
			default:
			}
		}
		if err != nil {
			return
		}
	}
}

// offset returns the number of bytes recorded so far.
func (r *recording) offset() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.out)
}

// waitFor waits until marker appears in the output after byte from.
func (r *recording) waitFor(from int, marker string) int {
	r.t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		i := bytes.Index(r.out[min(from, len(r.out)):], []byte(marker))
		n := len(r.out)
		r.mu.Unlock()
		if i >= 0 {
			return from + i + len(marker)
		}
		select {
		case <-r.notify:
		case <-r.done:
			r.t.Fatalf("session ended before %q appeared; output tail: %q", marker, r.tail(n))
		case <-deadline.C:
			r.t.Fatalf("timed out waiting for %q; output tail: %q", marker, r.tail(n))
		}
	}
}

func (r *recording) tail(n int) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out[max(0, n-400):n]
}

// typeWait types keys and waits for marker to appear in the output that follows.
func (r *recording) typeWait(keys, marker string) {
	r.t.Helper()
	from := r.offset()
	if _, err := r.f.Write([]byte(keys)); err != nil {
		r.t.Fatalf("type %q: %v", keys, err)
	}
	r.waitFor(from, marker)
}

// cmd runs a shell command and waits for its completion marker.
func (r *recording) run(command string) {
	r.t.Helper()
	r.typeWait(command+"; echo DO''NE\r", "DONE")
}

// resize resizes the PTY, recording the byte offset.
func (r *recording) resize(cols, rows int) {
	r.t.Helper()
	r.mu.Lock()
	r.resizes = append(r.resizes, resizeAt{len(r.out), cols, rows})
	r.emu.Resize(cols, rows)
	r.cols, r.rows = cols, rows
	r.mu.Unlock()
	if err := pty.Setsize(r.f, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)}); err != nil {
		r.t.Fatalf("resize pty: %v", err)
	}
}

// snapshot returns the output so far with its resizes.
func (r *recording) snapshot() stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	return stream{data: bytes.Clone(r.out), resizes: append([]resizeAt(nil), r.resizes...)}
}

func (r *recording) stop() {
	r.f.Write([]byte("\x03\rexit\r"))
	r.f.Close()
	if r.cmd.Process != nil {
		r.cmd.Process.Kill()
	}
	<-r.done
	r.cmd.Wait()
}

// stream is recorded output with resizes at byte offsets.
type stream struct {
	data    []byte
	resizes []resizeAt
}

// ops returns the steps feeding data[from:to], starting after the resizes
// at or before from (those are applied by the caller).
func (s stream) ops(from, to int) []op {
	var out []op
	pos := from
	for _, rz := range s.resizes {
		if rz.off <= from || rz.off > to {
			continue
		}
		if rz.off > pos {
			out = append(out, op{data: s.data[pos:rz.off]})
		}
		out = append(out, op{cols: rz.cols, rows: rz.rows})
		pos = rz.off
	}
	if to > pos {
		out = append(out, op{data: s.data[pos:to]})
	}
	return out
}

// sizeAt returns the terminal size after the resizes at or before off.
func (s stream) sizeAt(off int) (int, int) {
	cols, rows := 80, 24
	for _, rz := range s.resizes {
		if rz.off <= off {
			cols, rows = rz.cols, rz.rows
		}
	}
	return cols, rows
}

// setupHome fills a home directory with files for ls, vim and less.
func setupHome(t testing.TB) string {
	home := t.TempDir()
	must := func(err error) {
		if err != nil && !errors.Is(err, os.ErrExist) {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(home, "dir", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(home, "dir", "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(home, "dir", "archive.tar"), nil, 0o644))
	must(os.WriteFile(filepath.Join(home, "dir", "notes.md"), []byte("# notes\n"), 0o644))
	must(os.Symlink("notes.md", filepath.Join(home, "dir", "link")))
	var code strings.Builder
	code.WriteString("package main\n\nimport (\n\t\"fmt\"\n\t\"strings\"\n)\n\n// Greeting is a type with a comment — and a wide 中文 string.\ntype Greeting struct {\n\tName  string\n\tCount int\n}\n\n")
	for i := 0; i < 40; i++ {
		code.WriteString("func f" + strings.Repeat("x", i%7) + "() string {\n\treturn fmt.Sprintf(\"%d: %s\", 42, strings.Repeat(\"ab\", 3)) // trailing comment\n}\n\n")
	}
	must(os.WriteFile(filepath.Join(home, "main.go"), []byte(code.String()), 0o644))
	var text strings.Builder
	for i := 0; i < 300; i++ {
		text.WriteString("line " + strings.Repeat("lorem ipsum ", i%9) + "end é中\n")
	}
	must(os.WriteFile(filepath.Join(home, "text.txt"), []byte(text.String()), 0o644))
	return home
}
