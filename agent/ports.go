package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatewaydev/coder/sdk"
)

// DefaultPortScanInterval is how often the agent reads the workspace's
// listening TCP ports when Options.PortScanInterval is zero.
const DefaultPortScanInterval = 2 * time.Second

// tcpListen is the state of a listening socket in /proc/net/tcp{,6}.
const tcpListen = "0A"

// procSocket is one listening socket of /proc/net/tcp or /proc/net/tcp6.
type procSocket struct {
	Port  uint16
	Inode uint64
}

// parseProcNetTCP reads the listening sockets of a /proc/net/tcp or
// /proc/net/tcp6 file (a header line, then one socket a line:
// "sl local_address rem_address st ... uid timeout inode ..."). Lines that
// do not parse are an error: the format is the kernel's, so a bad line
// means the file is not what it should be.
func parseProcNetTCP(data []byte) ([]procSocket, error) {
	var out []procSocket
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if strings.Contains(line, "local_address") {
				continue
			}
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("parse /proc/net/tcp: line %q has %d fields, want at least 10", trim(line), len(f))
		}
		if f[3] != tcpListen {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			return nil, fmt.Errorf("parse /proc/net/tcp: local address %q has no port", trim(f[1]))
		}
		addr := f[1][:i]
		if len(addr) != 8 && len(addr) != 32 {
			return nil, fmt.Errorf("parse /proc/net/tcp: local address %q is neither IPv4 nor IPv6", trim(f[1]))
		}
		port, err := strconv.ParseUint(f[1][i+1:], 16, 16)
		if err != nil {
			return nil, fmt.Errorf("parse /proc/net/tcp: port of %q: %w", trim(f[1]), err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse /proc/net/tcp: inode %q: %w", trim(f[9]), err)
		}
		out = append(out, procSocket{Port: uint16(port), Inode: inode})
	}
	return out, sc.Err()
}

func trim(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// portScanner lists the workspace's listening TCP ports from procfs. It
// is used by one goroutine at a time.
type portScanner struct {
	// proc is the procfs root, /proc outside tests.
	proc string
	// names caches the process name of a socket inode: the walk of
	// /proc/*/fd runs only when a listening socket is new.
	names map[uint64]string
}

// scan returns the listening ports (at least sdk.MinListeningPort, at
// most sdk.MaxListeningPorts of them, by port), each once whether it
// listens on IPv4, IPv6 or both, with the name of its process when the
// agent may read that process's file descriptors (its own user's).
func (s *portScanner) scan() ([]sdk.ListeningPort, error) {
	var socks []procSocket
	var firstErr error
	read := 0
	for _, name := range []string{"net/tcp", "net/tcp6"} {
		data, err := os.ReadFile(filepath.Join(s.proc, name))
		if err != nil {
			// tcp6 is absent on kernels without IPv6.
			if !os.IsNotExist(err) && firstErr == nil {
				firstErr = err
			}
			continue
		}
		ss, err := parseProcNetTCP(data)
		if err != nil {
			return nil, err
		}
		read++
		socks = append(socks, ss...)
	}
	if read == 0 {
		if firstErr == nil {
			firstErr = fmt.Errorf("read %s/net/tcp: not found", s.proc)
		}
		return nil, firstErr
	}
	var missing bool
	for _, sk := range socks {
		if _, ok := s.names[sk.Inode]; !ok {
			missing = true
		}
	}
	if missing {
		s.names = s.processNames(socks)
	}
	byPort := map[uint16]string{}
	for _, sk := range socks {
		if sk.Port < sdk.MinListeningPort {
			continue
		}
		if name := s.names[sk.Inode]; name != "" || byPort[sk.Port] == "" {
			byPort[sk.Port] = name
		}
	}
	out := make([]sdk.ListeningPort, 0, len(byPort))
	for p, name := range byPort {
		out = append(out, sdk.ListeningPort{Port: p, Network: "tcp", ProcessName: name})
	}
	slices.SortFunc(out, func(a, b sdk.ListeningPort) int { return int(a.Port) - int(b.Port) })
	if len(out) > sdk.MaxListeningPorts {
		out = out[:sdk.MaxListeningPorts]
	}
	return out, nil
}

// processNames maps the inodes of socks to the names of the processes that
// hold them, by reading the links of /proc/*/fd. Processes the agent may
// not read (other users') are skipped; their sockets keep an empty name.
func (s *portScanner) processNames(socks []procSocket) map[uint64]string {
	want := make(map[string]uint64, len(socks))
	names := make(map[uint64]string, len(socks))
	for _, sk := range socks {
		want["socket:["+strconv.FormatUint(sk.Inode, 10)+"]"] = sk.Inode
		names[sk.Inode] = ""
	}
	pids, _ := os.ReadDir(s.proc)
	for _, p := range pids {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		fdDir := filepath.Join(s.proc, p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		var comm string
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			inode, ok := want[link]
			if !ok {
				continue
			}
			if comm == "" {
				b, _ := os.ReadFile(filepath.Join(s.proc, p.Name(), "comm"))
				comm = strings.TrimSpace(string(b))
				if comm == "" {
					comm = "?"
				}
			}
			names[inode] = comm
		}
	}
	for k, v := range names {
		if v == "?" {
			names[k] = ""
		}
	}
	return names
}

// portLoop reads the listening ports every interval and records them when
// they change ([Agent.setPorts]), until the agent closes.
func (a *Agent) portLoop(interval time.Duration) {
	defer a.wg.Done()
	s := &portScanner{proc: "/proc"}
	t := time.NewTicker(interval)
	defer t.Stop()
	warned := false
	for {
		ports, err := s.scan()
		if err != nil {
			if !warned {
				a.logger.Warn("list listening ports", "err", err)
				warned = true
			}
		} else {
			a.setPorts(ports)
		}
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
	}
}
