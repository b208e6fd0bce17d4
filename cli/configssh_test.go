package cli

import (
	"strings"
	"testing"
)

func TestReplaceSSHBlock(t *testing.T) {
	block := sshStartMarker + "\nHost coder.dev\n" + sshEndMarker + "\n"
	for _, tc := range []struct {
		name, in, want, err string
	}{
		{name: "empty file", in: "", want: block},
		{name: "append after user lines", in: "Host a\n  User b", want: "Host a\n  User b\n\n" + block},
		{name: "replace in the middle", in: "Host a\n" + sshStartMarker + "\nold\n" + sshEndMarker + "\nHost z\n", want: "Host a\n" + block + "Host z\n"},
		{name: "replace at the end without newline", in: "Host a\n" + sshStartMarker + "\nold\n" + sshEndMarker, want: "Host a\n" + block},
		{name: "marker text inside a line is not a marker", in: "# x " + sshStartMarker + "\n", want: "# x " + sshStartMarker + "\n\n" + block},
		{name: "missing end marker", in: sshStartMarker + "\nold\n", err: "unbalanced"},
		{name: "two blocks", in: sshStartMarker + "\n" + sshEndMarker + "\n" + sshStartMarker + "\n" + sshEndMarker + "\n", err: "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := replaceSSHBlock(tc.in, block)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
			again, err := replaceSSHBlock(got, block)
			if err != nil || again != got {
				t.Fatalf("second run changed %q into %q (%v)", got, again, err)
			}
		})
	}
}

func TestUnifiedDiff(t *testing.T) {
	got := unifiedDiff("f", "a\nb\nc\n", "a\nB\nc\nd\n")
	want := "--- f\n+++ f\n@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n"
	if got != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", got, want)
	}
}

func TestParsePortSpec(t *testing.T) {
	for _, tc := range []struct {
		network, in, local string
		remote             uint16
		err                string
	}{
		{"tcp", "8080:3000", "127.0.0.1:8080", 3000, ""},
		{"tcp", "9090", "127.0.0.1:9090", 9090, ""},
		{"tcp", "0.0.0.0:8080:3000", "0.0.0.0:8080", 3000, ""},
		{"udp", "[::1]:5353:53", "[::1]:5353", 53, ""},
		{"tcp", "8080:1", "", 0, "reserved"},
		{"udp", "5353:2", "127.0.0.1:5353", 2, ""},
		{"tcp", "x:3000", "", 0, "not a port"},
		{"tcp", "1:2:3:4", "", 0, "want"},
		{"tcp", "nohost:1:2", "", 0, "not an IP"},
		{"tcp", "70000", "", 0, "not a port"},
	} {
		t.Run(tc.network+" "+tc.in, func(t *testing.T) {
			ps, err := parsePortSpec(tc.network, tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || ps.Local.String() != tc.local || ps.Remote != tc.remote || ps.Network != tc.network {
				t.Fatalf("got %+v %v", ps, err)
			}
		})
	}
}

func TestParseForward(t *testing.T) {
	for _, tc := range []struct {
		in, bind, target string
		port             int
		ok               bool
	}{
		{"8080:localhost:3000", "127.0.0.1", "localhost:3000", 8080, true},
		{"*:8080:127.0.0.1:3000", "", "127.0.0.1:3000", 8080, true},
		{"[::1]:8080:[::1]:3000", "::1", "[::1]:3000", 8080, true},
		{"8080:3000", "", "", 0, false},
		{"x:h:1", "", "", 0, false},
	} {
		bind, port, target, err := parseForward(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (bind != tc.bind || port != tc.port || target != tc.target)) {
			t.Errorf("parseForward(%q) = %q %d %q %v", tc.in, bind, port, target, err)
		}
	}
}
