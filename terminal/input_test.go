package terminal_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/gatewaydev/coder/terminal"
)

func TestParseInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    terminal.Input
		wantErr string
	}{
		{in: `{"data":"ls\r"}`, want: terminal.Input{Data: "ls\r"}},
		{in: ` {"data":"é\u0003"} `, want: terminal.Input{Data: "é\x03"}},
		{in: `{"height":24,"width":80}`, want: terminal.Input{Resize: true, Width: 80, Height: 24}},
		{in: `{"data":"x","height":24,"width":80}`, want: terminal.Input{Data: "x", Resize: true, Width: 80, Height: 24}},
		{in: `{"height":0,"width":80}`, want: terminal.Input{}},
		{in: `{"height":65535,"width":65535}`, want: terminal.Input{Resize: true, Width: terminal.MaxWidth, Height: terminal.MaxHeight}},
		{in: `{"ack":65536}`, want: terminal.Input{HasAck: true, Ack: 65536}},
		{in: `{"ack":0}`, want: terminal.Input{HasAck: true}},
		{in: `{"claim":true}`, want: terminal.Input{Claim: true}},
		{in: `{"claim":false}`, want: terminal.Input{}},
		{in: `{"visible":false}`, want: terminal.Input{HasVisible: true}},
		{in: `{"visible":true}`, want: terminal.Input{HasVisible: true, Visible: true}},
		{in: `{"claim":1}`, wantErr: "cannot unmarshal"},
		{in: `{"visible":"no"}`, wantErr: "cannot unmarshal"},
		{in: `{}`, want: terminal.Input{}},
		{in: `{"unknown":true}`, want: terminal.Input{}},
		{in: `{"data":null}`, want: terminal.Input{}},
		{in: ``, wantErr: "not a JSON object"},
		{in: `null`, wantErr: "not a JSON object"},
		{in: `"ls"`, wantErr: "not a JSON object"},
		{in: `ls`, wantErr: "not a JSON object"},
		{in: `{"data":"ls"} {}`, wantErr: "invalid character"},
		{in: `{"data":1}`, wantErr: "cannot unmarshal"},
		{in: `{"width":80}`, wantErr: "both width and height"},
		{in: `{"height":24}`, wantErr: "both width and height"},
		{in: `{"height":-1,"width":80}`, wantErr: "height"},
		{in: `{"height":24,"width":65536}`, wantErr: "width"},
		{in: `{"height":24.5,"width":80}`, wantErr: "height"},
		{in: `{"height":1e2,"width":80}`, wantErr: "height"},
		{in: `{"ack":-1}`, wantErr: "ack"},
		{in: `{"ack":1073741825}`, wantErr: "ack"},
		{in: `{"data":"unterminated`, wantErr: "unexpected end"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := terminal.ParseInput([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseInput(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseInput(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func FuzzParseInput(f *testing.F) {
	for _, s := range []string{
		`{"data":"ls\r"}`, `{"height":24,"width":80}`, `{"ack":1}`, `{}`, `null`,
		`{"height":65535,"width":0}`, `{"data":"\u0000\ud800"}`, `{"width":1e400,"height":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := terminal.ParseInput(b)
		if err != nil {
			if in != (terminal.Input{}) {
				t.Fatalf("error %v with non-zero result %+v", err, in)
			}
			return
		}
		if in.Resize && (in.Width == 0 || in.Height == 0 || in.Width > terminal.MaxWidth || in.Height > terminal.MaxHeight) {
			t.Fatalf("resize out of range: %+v", in)
		}
		if !in.Resize && (in.Width != 0 || in.Height != 0) {
			t.Fatalf("size without resize: %+v", in)
		}
		if in.Ack < 0 || !in.HasAck && in.Ack != 0 {
			t.Fatalf("bad ack: %+v", in)
		}
		// What parsed re-encodes to an equivalent message.
		m := map[string]any{}
		if in.Data != "" {
			m["data"] = in.Data
		}
		if in.Resize {
			m["width"], m["height"] = in.Width, in.Height
		}
		if in.HasAck {
			m["ack"] = in.Ack
		}
		re, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := terminal.ParseInput(re)
		if err != nil || again != in {
			t.Fatalf("re-encoded %s parses to %+v, %v; want %+v", re, again, err, in)
		}
	})
}

func TestParseParams(t *testing.T) {
	t.Parallel()
	const id = "0b9c7e8a-3f1d-4b2a-9c8e-7d6f5a4b3c2d"
	for _, tc := range []struct {
		name    string
		q       string
		want    terminal.Params
		wantErr string
	}{
		{"full", "reconnect=" + id + "&width=100&height=30&command=htop", terminal.Params{Reconnect: id, Width: 100, Height: 30, Command: "htop"}, ""},
		{"defaults", "reconnect=" + id, terminal.Params{Reconnect: id, Width: 80, Height: 24}, ""},
		{"upper case id", "reconnect=" + strings.ToUpper(id), terminal.Params{Reconnect: id, Width: 80, Height: 24}, ""},
		{"zero size", "reconnect=" + id + "&width=0&height=0", terminal.Params{Reconnect: id, Width: 80, Height: 24}, ""},
		{"clamped", "reconnect=" + id + "&width=65535&height=65535", terminal.Params{Reconnect: id, Width: terminal.MaxWidth, Height: terminal.MaxHeight}, ""},
		{"missing id", "width=80", terminal.Params{}, "missing reconnect"},
		{"malformed id", "reconnect=not-a-uuid", terminal.Params{}, "not a UUID"},
		{"id with braces", "reconnect={" + id + "}", terminal.Params{}, "not a UUID"},
		{"id one short", "reconnect=" + id[:35], terminal.Params{}, "not a UUID"},
		{"id bad hex", "reconnect=" + strings.Replace(id, "0", "g", 1), terminal.Params{}, "not a UUID"},
		{"negative width", "reconnect=" + id + "&width=-1", terminal.Params{}, "width"},
		{"width too large", "reconnect=" + id + "&width=65536", terminal.Params{}, "width"},
		{"height not a number", "reconnect=" + id + "&height=tall", terminal.Params{}, "height"},
		{"NUL in command", "reconnect=" + id + "&command=a%00b", terminal.Params{}, "NUL"},
		{"invalid UTF-8 command", "reconnect=" + id + "&command=%ff", terminal.Params{}, "UTF-8"},
		{"command too long", "reconnect=" + id + "&command=" + strings.Repeat("x", terminal.MaxCommandLen+1), terminal.Params{}, "longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			got, err := terminal.ParseParams(q)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseParams(%s) = %+v, %v; want error containing %q", tc.q, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseParams(%s) = %+v, %v; want %+v", tc.q, got, err, tc.want)
			}
		})
	}
}
