package agent

import (
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// TestParseProcNetTCP reads /proc/net/tcp and /proc/net/tcp6 as a Linux
// kernel wrote them (testdata, with a listener on 127.0.0.1:42517, one on
// [::1]:45039, an established connection and TIME_WAIT sockets): only the
// LISTEN sockets come out, with their ports and inodes.
func TestParseProcNetTCP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		want []procSocket
	}{
		{"testdata/proc_net_tcp", []procSocket{{2024, 1080}, {42517, 1537849}}},
		{"testdata/proc_net_tcp6", []procSocket{{45039, 1537850}}},
	} {
		data, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseProcNetTCP(data)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.file, got, tc.want)
		}
	}
}

// TestParseProcNetTCPBad: a file that is not the kernel's format is an
// error, never a made-up port.
func TestParseProcNetTCPBad(t *testing.T) {
	t.Parallel()
	const head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	for _, line := range []string{
		"   0: 00000000:07E8 00000000:0000 0A\n",
		"   0: 00000000-07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1080 1\n",
		"   0: 00000000:XYZW 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1080 1\n",
		"   0: 00000000:107E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1080 1\n",
		"   0: 0000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1080 1\n",
		"   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 -1 1\n",
	} {
		if got, err := parseProcNetTCP([]byte(head + line)); err == nil {
			t.Errorf("%q: parsed as %v, want an error", line, got)
		}
	}
}

// FuzzParseProcNetTCP: any input parses or fails; it never panics, and a
// parsed socket's port came from a LISTEN line.
func FuzzParseProcNetTCP(f *testing.F) {
	for _, name := range []string{"testdata/proc_net_tcp", "testdata/proc_net_tcp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("0: 0100007F:1F90 0 0A 0 0 0 0 0 7\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		socks, err := parseProcNetTCP(data)
		if err != nil {
			return
		}
		listen := 0
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 4 && f[3] == tcpListen {
				listen++
			}
		}
		if len(socks) > listen {
			t.Fatalf("%d sockets from %d LISTEN lines", len(socks), listen)
		}
	})
}

// TestPortScannerRealListener opens a real listener: the scanner finds its
// port with this test's process name, and loses it once it closes.
func TestPortScannerRealListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	s := &portScanner{proc: "/proc"}
	find := func() (sdk.ListeningPort, bool) {
		ports, err := s.scan()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p.Port < sdk.MinListeningPort {
				t.Fatalf("reported port %d below %d", p.Port, sdk.MinListeningPort)
			}
			if p.Port == port {
				return p, true
			}
		}
		return sdk.ListeningPort{}, false
	}
	p, ok := find()
	if !ok {
		t.Fatalf("port %d not found", port)
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	if want := strings.TrimSpace(string(comm)); p.ProcessName != want || p.Network != "tcp" {
		t.Errorf("port %d: %+v, want process %q, network tcp", port, p, want)
	}
	ln.Close()
	testutil.Eventually(t, 10*time.Second, "closed port gone", func() bool {
		_, ok := find()
		return !ok
	})
}

// BenchmarkPortScan reads this machine's listening ports, as the agent
// does every PortScanInterval (names cached: the steady state).
func BenchmarkPortScan(b *testing.B) {
	s := &portScanner{proc: "/proc"}
	for b.Loop() {
		if _, err := s.scan(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPortScanNames is a scan that walks /proc/*/fd for the process
// names (a listening socket is new).
func BenchmarkPortScanNames(b *testing.B) {
	for b.Loop() {
		s := &portScanner{proc: "/proc"}
		if _, err := s.scan(); err != nil {
			b.Fatal(err)
		}
	}
}
