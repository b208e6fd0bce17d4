#!/usr/bin/env bash
# make bench: every benchmark of the project, each side by side with its
# peer in the same run. Figures only; nothing is asserted.
#
#   bench/run.sh [section ...]   sections: vt tailnet term apps restart (default: all)
#
# Peers: @xterm/headless (vt), loopback iperf3 (tailnet), ttyd/WeTTY in
# Chromium (term; see bench/term/run.sh), nginx and Go's ReverseProxy (apps;
# see bench/apps/run.sh). The shared peer scripts live in
# ../shared/bench beside the checkout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$root/../shared/bench
cd "$root"
sections=("$@")
[[ ${#sections[@]} -gt 0 ]] || sections=(vt tailnet term apps restart)

want() { local s; for s in "${sections[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }
head() { printf '\n==== %s\n\n' "$1"; }

if want vt; then
  head "terminal emulator: terminal/vt vs @xterm/headless (same bytes)"
  bench/vt/run.sh
fi

if want tailnet; then
  head "tailnet: TCP throughput client -> agent (direct, DERP), coordination fan-out, round trip, terminal echo over loopback TCP and over the tailnet; peer: loopback iperf3"
  if [[ -x $shared/loopback-iperf.sh ]] && command -v iperf3 >/dev/null; then
    "$shared/loopback-iperf.sh" -t 5 -r 3 -q 20 || echo "loopback iperf3 failed (is iperf3 installed? apt-get install iperf3)"
  else
    echo "loopback iperf3 peer unavailable: needs ../shared/bench/loopback-iperf.sh and iperf3 (apt-get install iperf3)"
  fi
  go test ./bench/tailnet/ -run '^$' -bench . -benchtime 1x -count 1 -rtt-think 30ms
  echo
  echo "-- coder agent start -> first byte from the server's node; server RSS while 5 agents flood (real processes)"
  go run ./bench/e2e -coder bin/coder -n 10 -flood 5 -rounds 2
fi

if want term; then
  head "web terminal in Chromium: echo latency and bulk throughput; peers: ttyd, WeTTY"
  if [[ -x bench/term/run.sh ]]; then
    bench/term/run.sh
  else
    echo "bench/term/run.sh is missing"
  fi
fi

if want apps; then
  head "path-app proxy: a path app of coder server vs nginx, Go's httputil.ReverseProxy and the origin (1 KiB, wrk -c64)"
  if command -v wrk >/dev/null && command -v nginx >/dev/null; then
    bench/apps/run.sh -r 3
  else
    echo "app-proxy peers unavailable: needs wrk and nginx (apt-get install wrk nginx)"
  fi
fi

if want restart; then
  head "server restart -> terminal screen back in Chromium (vim in a local workspace whose agent outlives the server), 5 restarts after outages of 2 s and 30 s"
  CODER_TEST_BINARY=$root/bin/coder go test ./bench/restart/ -run '^$' -bench . -benchtime 1x -count 1 -restarts 5 -outages 2s,30s
fi
