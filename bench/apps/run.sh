#!/usr/bin/env bash
# bench/apps/run.sh: the path-app proxy beside its peers, in one run of
# ../shared/bench/app-proxy.sh (wrk against a 1 KiB origin): a path app of a
# real `coder server` (built-in PostgreSQL, local agent over the tailnet),
# nginx, Go's httputil.ReverseProxy and the origin itself (direct). Then a
# second run, the same way, of the same origin as a subdomain app (its host
# under the server's *.localhost wildcard, with an app token cookie) beside
# nginx and direct: app-proxy.sh's -H applies to every target, and the
# subdomain app needs its own Host header.
#
#   bench/apps/run.sh [app-proxy.sh options, e.g. -r 1 -c 64 -d 10s]
#
# Ports (loopback): CODER_BENCH_PORT_BASE (default 28080) is the origin,
# +1 nginx, +2 the Go proxy, +3 the server. State goes to a temporary
# directory that is removed at the end. Needs what app-proxy.sh and
# peers/app-peers.sh need (wrk, nginx, go) and bin/coder (make build).
# After the run it prints the server's RSS and whether SIGINT stops it
# within 10 s.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
shared=$root/../shared/bench
base=${CODER_BENCH_PORT_BASE:-28080}
origin=$base nginx=$((base + 1)) goproxy=$((base + 2)) port=$((base + 3))
url=http://127.0.0.1:$port
shost=origin--main--dev--bench.localhost:$port
state=$(mktemp -d)
chmod 711 "$state"
server=
cleanup() {
  [[ -n $server ]] && kill -INT "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  "$shared/peers/app-peers.sh" stop "$state/peers" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT

"$shared/peers/app-peers.sh" start "$state/peers" "$origin" "$nginx" "$goproxy" >/dev/null
"$root/bin/coder" server --stop-local-agents-on-exit --http-address "127.0.0.1:$port" --access-url "$url" --wildcard-access-url "*.localhost:$port" --config-dir "$state/server" >"$state/server.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "$url/healthz" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$state/server.log" >&2; exit 1; }
  sleep 0.2
done
cli=(--global-config "$state/cli")
password="bench-$(head -c 9 /dev/urandom | base64 | tr -d '/+=')"
"$root/bin/coder" login "$url" "${cli[@]}" --first-user-username bench --first-user-email bench@example.com \
  --first-user-password "$password" >/dev/null
cat >"$state/bench.yaml" <<YAML
display_name: Bench
provisioner: local
agents:
  - name: main
    apps:
      - slug: origin
        url: http://127.0.0.1:$origin
        share: owner
        subdomain: true
YAML
"$root/bin/coder" templates push bench -f "$state/bench.yaml" "${cli[@]}" >/dev/null
"$root/bin/coder" create dev -t bench "${cli[@]}" >/dev/null
token=$(find "$state/cli" -name session -type f -exec cat {} \; | head -1)
[[ -n $token ]] || { echo "no session token under $state/cli" >&2; exit 1; }
app=$url/@bench/dev.main/apps/origin/
for _ in $(seq 1 300); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Coder-Session-Token: $token" "$app") == 200 ]] && break
  sleep 0.2
done
"$shared/app-proxy.sh" -H "Coder-Session-Token: $token" "$@" "$app" "http://127.0.0.1:$origin/" \
  "nginx=http://127.0.0.1:$nginx/" "goproxy=http://127.0.0.1:$goproxy/"
# The subdomain app: log in as a browser would, get an app token from the
# primary's sign-in redirect, and send it as the app host's cookie.
jar=$state/cookies
curl -fsS -o /dev/null -c "$jar" -d "login=bench&password=$password" "$url/login"
to=$(curl -sS -o /dev/null -b "$jar" -w '%{redirect_url}' \
  "$url/api/v2/applications/auth-redirect?redirect_uri=http%3A%2F%2F$shost%2F")
apptoken=${to#*coder_app_token=}
[[ $apptoken != "$to" && -n $apptoken ]] || { echo "no app token from the sign-in redirect: $to" >&2; exit 1; }
for _ in $(seq 1 300); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: $shost" -H "Cookie: coder_app_token=$apptoken" "$url/") == 200 ]] && break
  sleep 0.2
done
echo
echo "# subdomain app (proxy = http://$shost/ through the server)"
"$shared/app-proxy.sh" -H "Host: $shost" -H "Cookie: coder_app_token=$apptoken" "$@" "$url/" "http://127.0.0.1:$origin/" \
  "nginx=http://127.0.0.1:$nginx/"
echo
echo "# websocket echo: subdomain app vs nginx vs direct (bench/apps/wsecho: ws-echo.sh's"
echo "# wsbench cannot send the app's Host header and cookie)"
(cd "$root" && go run ./bench/apps/wsecho -host "$shost" -cookie "coder_app_token=$apptoken" \
  "subdomain=ws://127.0.0.1:$port/ws" "nginx=ws://127.0.0.1:$nginx/ws" "direct=ws://127.0.0.1:$origin/ws")
echo "server RSS after the run: $(awk '/VmRSS/ {print $2, $3}' /proc/$server/status)"
kill -INT "$server"
for _ in $(seq 1 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$server" 2>/dev/null; then
  echo "server still running 10 s after SIGINT; killing it"
  kill -KILL "$server"
else
  echo "server stopped within 10 s of SIGINT"
fi
wait "$server" 2>/dev/null || true
server=
