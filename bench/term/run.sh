#!/usr/bin/env bash
# bench/term/run.sh — the web terminal benchmark of issue 6: our terminal
# (a real `coder server`, its tailnet and a `coder agent` process, through
# /api/v2/workspaceagents/{id}/pty) next to WeTTY (from npm) and ttyd (when
# installed), in one term-compare.sh run of ../shared/bench, interleaved,
# each run in a fresh headless Chromium with the DOM renderer
# (--disable-webgl, as the recorded baselines). Prints echo p50/p99 and
# bulk MB/s side by side and the ratios against ttyd: measured in this run
# when ttyd is installed, else the baseline recorded in
# ../shared/bench/README.md (ttyd 1.7.7 dom: p50 5.9 ms, p99 20.3 ms,
# 6.81 MB/s), labelled as such. A second table splits the echo into its
# legs: keydown to the first websocket message (the server side's share:
# for us the relay, the tailnet, the agent and the shell) and to the rows
# drawn by xterm.js, so a ratio can be read as network or browser time.
#
# Then Ctrl+C on a flood (flood.mjs): `yes` for 2 s, Ctrl+C, and the time
# from the keydown to the prompt drawn again, with the bytes the page
# received in between, for the same targets in the same run.
#
#   bench/term/run.sh [-r REPS (3)] [-k KEYS (200)] [-l BULK_LINES (3000000)] [-f FLOOD_REPS (5)] [-o OUT.jsonl] [-s SKIP]
#
# -s leaves peers out: -s wetty, -s ttyd or -s wetty,ttyd. -f 0 skips the
# flood, -r 0 the echo and bulk runs.
#
# The raw JSON lines stay in OUT (default bench/out/term-<time>.jsonl, gitignored).
#
# Environment: SHARED_BENCH (default ../shared/bench next to the repository),
# CODER_BIN (default: go build ./cmd/coder into a temp dir),
# CODER_PG_CONNECTION_URL (default: the server's built-in PostgreSQL).
# npm modules (playwright-core, wetty) are installed into bench/term/node_modules
# (gitignored); everything else lives in a temp dir removed at exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${SHARED_BENCH:-$(cd "$root/.." && pwd)/shared/bench}
reps=3; keys=200; lines=3000000; out=""; skip=""; flood=5
while getopts "r:k:l:o:s:f:h" o; do
  case $o in
    r) reps=$OPTARG ;; k) keys=$OPTARG ;; l) lines=$OPTARG ;; o) out=$OPTARG ;; s) skip=",$OPTARG," ;; f) flood=$OPTARG ;;
    *) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 2 ;;
  esac
done
[[ -f $shared/term-bench.mjs && -f $shared/term-compare.sh ]] || { echo "no term-bench.mjs in $shared: set SHARED_BENCH" >&2; exit 1; }

work=$(mktemp -d /tmp/coder-term-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  # ttyd 1.7.7 may ignore the first signal: give everyone 5 s, then KILL.
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "[term-bench] $*" >&2; }
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_http() { # url, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1 after $2 s" >&2; return 1
}

# npm: the bench's driver and WeTTY.
if [[ ! -d $here/node_modules/playwright-core || ! -d $here/node_modules/wetty ]]; then
  log "npm install (playwright-core, wetty) into bench/term/node_modules"
  (cd "$here" && npm install --no-audit --no-fund --loglevel=error >&2)
fi
# The shared scripts resolve playwright-core next to themselves.
cp "$shared/term-bench.mjs" "$shared/term-compare.sh" "$here/flood.mjs" "$work/"
ln -s "$here/node_modules" "$work/node_modules"

# Our server and agent.
bin=${CODER_BIN:-}
if [[ -z $bin ]]; then
  [[ -f $root/static/dist/terminal.js ]] || (cd "$root" && node static/build.mjs)
  log "go build ./cmd/coder"
  (cd "$root" && go build -o "$work/coder" ./cmd/coder)
  bin=$work/coder
fi
mkdir -p "$work/server" "$work/ws"
"$bin" server --http-address 127.0.0.1:0 --derp-server-stun-addresses 127.0.0.1:0 --config-dir "$work/server" >"$work/server.log" 2>&1 &
pids+=($!)
url=""
for _ in $(seq 1 600); do
  url=$(sed -n 's/.*Dashboard:[[:space:]]*\([^[:space:]]*\).*/\1/p' "$work/server.log" | head -1)
  [[ -n $url ]] && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $url ]] || { cat "$work/server.log" >&2; exit 1; }
log "coder server at $url"
api() { curl -fsS -X "$1" -H 'Content-Type: application/json' ${tok:+-H "Coder-Session-Token: $tok"} --data "${3:-}" "$url$2"; }
tok=""
api POST /api/v2/users/first '{"username":"bench","email":"bench@example.com","password":"bench-password"}' >/dev/null
tok=$(api POST /api/v2/users/login '{"login":"bench","password":"bench-password"}' | jq -r .session_token)
api PUT /api/v2/templates/manual "$(jq -n --arg s $'provisioner: manual\nagents:\n  - name: main\n' '{source: $s}')" >/dev/null
agent_token=$(api POST /api/v2/workspaces '{"name":"bench","template":"manual"}' | jq -r '.agents[0].token')
(cd "$work/ws" && CODER_AGENT_URL=$url CODER_AGENT_TOKEN=$agent_token exec "$bin" agent >"$work/agent.log" 2>&1) &
pids+=($!)
for i in $(seq 1 300); do
  [[ $(api GET /api/v2/users/bench/workspace/bench | jq -r '.agents[0].status') == connected ]] && break
  [[ $i == 300 ]] && { log "agent did not connect"; cat "$work/agent.log" >&2; exit 1; }
  sleep 0.1
done
# The browser's session cookie, from the login form.
curl -fsS -o /dev/null -c "$work/jar" -H "Origin: $url" -H 'Sec-Fetch-Site: same-origin' \
  --data-urlencode login=bench --data-urlencode password=bench-password "$url/login"
cookie=$(awk '$6 == "coder_session" { print $7 }' "$work/jar")
[[ -n $cookie ]] || { log "no session cookie"; exit 1; }
ours="$url/@bench/bench.main/terminal?command=bash%20--noprofile%20--norc"

# WeTTY (runs the command directly as root; else it asks for a login).
targets=("coder=$ours")
if [[ $skip != *,wetty,* ]]; then
  wport=$(free_port)
  node "$here/node_modules/wetty/build/main.js" --host 127.0.0.1 --port "$wport" --command 'bash --noprofile --norc' >"$work/wetty.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$wport/" 30
  targets+=("wetty=http://127.0.0.1:$wport/")
fi

# ttyd, when installed (Debian 12 has no package: ../shared/bench/README.md).
if [[ $skip == *,ttyd,* ]]; then
  log "ttyd left out (-s)"
elif command -v ttyd >/dev/null; then
  tport=$(free_port)
  ttyd -p "$tport" -i lo -W -t rendererType=dom bash --noprofile --norc >"$work/ttyd.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$tport/" 30
  targets=("ttyd=http://127.0.0.1:$tport/" "${targets[@]}")
else
  log "ttyd is not installed: ratios use its recorded baseline (../shared/bench/README.md)"
fi

if [[ -z $out ]]; then mkdir -p "$root/bench/out"; out=$root/bench/out/term-$(date +%Y%m%dT%H%M%S).jsonl; fi
if [[ $flood -gt 0 ]]; then
  log "flood.mjs --reps $flood ${targets[*]}"
  node "$work/flood.mjs" --reps "$flood" --chromium-arg --disable-webgl --cookie "coder_session=$cookie" "${targets[@]}"
fi
[[ $reps -gt 0 ]] || exit 0
log "term-compare.sh -r $reps -- --keys $keys --bulk-lines $lines --chromium-arg --disable-webgl --cookie coder_session=… ${targets[*]}"
SHELL=/bin/bash "$work/term-compare.sh" -r "$reps" -o "$out" -- --keys "$keys" --bulk-lines "$lines" \
  --chromium-arg --disable-webgl --cookie "coder_session=$cookie" "${targets[@]}"

node - "$out" <<'JS'
const fs = require("fs");
const rows = fs.readFileSync(process.argv[2], "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
const med = (xs) => { xs = xs.filter((x) => x != null).sort((a, b) => a - b); if (!xs.length) return null;
  return xs.length % 2 ? xs[(xs.length - 1) / 2] : (xs[xs.length / 2 - 1] + xs[xs.length / 2]) / 2; };
const by = {};
for (const r of rows) for (const run of r.runs || []) (by[r.label] ||= []).push(run);
const fig = {};
for (const [name, runs] of Object.entries(by)) fig[name] = {
  p50: med(runs.map((x) => x.echo?.p50)), p99: med(runs.map((x) => x.echo?.p99)),
  mbs: med(runs.flatMap((x) => (x.bulk || []).map((b) => b.mb_s))), n: runs.length,
  renderer: [...new Set(runs.map((x) => x.renderer))].join(","),
  tail_ok: runs.every((x) => (x.bulk || []).every((b) => b.tail_ok !== false)),
  // The echo's legs: keydown to the first websocket message (the server
  // side's share), and to the rows drawn (xterm.js's render hook).
  ws: med(runs.map((x) => x.echo?.first_ws_msg_after_keydown?.p50)), drawn: med(runs.map((x) => x.echo?.render_hook?.p50)),
};
let ref = fig.ttyd, refName = "ttyd (this run)";
if (!ref) { ref = { p50: 5.9, p99: 20.3, mbs: 6.81 }; refName = "ttyd 1.7.7 dom, recorded baseline (../shared/bench/README.md)"; }
const f = (x, d = 2) => (x == null ? "-" : x.toFixed(d));
const pad = (s, n) => String(s).padEnd(n);
console.log("\nmedians over runs          echo p50 ms  echo p99 ms  bulk MB/s   p50 ratio  p99 ratio  bulk ratio  (ratios vs " + refName + ")");
for (const [name, x] of Object.entries(fig)) console.log(pad(`${name} [${x.renderer}, ${x.n} runs${x.tail_ok ? "" : ", TAIL BAD"}]`, 27) +
  pad(f(x.p50), 13) + pad(f(x.p99), 13) + pad(f(x.mbs), 12) + pad(f(x.p50 / ref.p50), 11) + pad(f(x.p99 / ref.p99), 11) + f(x.mbs / ref.mbs));
console.log("\necho legs, p50 ms (medians over runs)  keydown→first ws message  keydown→rows drawn  keydown→frame done");
for (const [name, x] of Object.entries(fig)) console.log(pad(name, 39) + pad(f(x.ws), 26) + pad(f(x.drawn), 20) + f(x.p50));
console.log("JSON " + JSON.stringify({ reference: refName, ref, targets: fig }));
JS
