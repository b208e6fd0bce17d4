#!/usr/bin/env bash
# run.sh — parse throughput and memory of terminal/vt next to @xterm/headless 6,
# on the same bytes, in one run.
#
#   bench/vt/run.sh [BENCHTIME (default 5x)]
#
# Streams: `seq 1 3000000` output (generated, 22.9 MB), a scripted vim session
# and an htop session (both recorded in a real PTY by the Go benchmark, which
# needs vim and htop: apt-get install vim htop). Figures only; nothing is asserted.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
benchtime=${1:-5x}
[[ -f $root/node_modules/@xterm/headless/package.json ]] || { echo "@xterm/headless missing: run npm ci in $root" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
busy() { # CPU % busy over 1 s, from /proc/stat (other sessions share the cores)
  read -r _ a b c d e f g _ < /proc/stat; t1=$((a+b+c+d+e+f+g)); i1=$d; sleep 1
  read -r _ a b c d e f g _ < /proc/stat; t2=$((a+b+c+d+e+f+g)); i2=$d
  echo $(( 100 * ( (t2-t1) - (i2-i1) ) / (t2-t1) ))
}
echo "machine busy before: $(busy)%"
cd "$root"
go test ./terminal/vt -run '^$' -bench 'BenchmarkParse|BenchmarkMemory' -benchtime "$benchtime" -count 1 -args -vt.benchdir "$dir" >"$dir/go.txt"
node --expose-gc bench/vt/xterm-bench.mjs "$root/node_modules/@xterm/headless" "$dir" >"$dir/node.txt"
echo "machine busy after: $(busy)%"
printf '\n%-6s %12s %14s %16s\n' stream bytes "vt MB/s" "xterm.js MB/s"
for s in seq vim htop; do
  name=$(tr '[:lower:]' '[:upper:]' <<<"${s:0:1}")${s:1}
  vt=$(awk -v b="BenchmarkParse$name" '$1 ~ "^"b"-" { for (i = 1; i <= NF; i++) if ($(i+1) == "MB/s") print $i }' "$dir/go.txt")
  xt=$(awk -v s="$s" '$2 == s { print $5 }' "$dir/node.txt")
  bytes=$(awk -v s="$s" '$2 == s { print $3 }' "$dir/node.txt")
  printf '%-6s %12s %14s %16s\n' "$s" "$bytes" "$vt" "$xt"
done
echo
awk '/^BenchmarkMemory/ { for (i = 3; i < NF; i += 2) printf "vt %s = %s\n", $(i+1), $i }' "$dir/go.txt"
grep '^xterm memory' "$dir/node.txt"
echo "targets: empty <= 1 MB, 10k lines <= 15 MB, serialize 10k lines <= 30 ms"
