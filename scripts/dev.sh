#!/usr/bin/env bash
# make run: start `coder server` on the built-in PostgreSQL with its state in
# .coder-dev/, create the first user (once), push the default template and
# create a workspace, then wait. Ctrl+C stops the server, its agents and its
# database; the next run finds the same users and workspaces. With
# CODER_STOP_LOCAL_AGENTS_ON_EXIT=false, Ctrl+C leaves the agents (and their
# terminals) running, and the next run adopts them.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=./bin/coder
STATE=.coder-dev
ADDR=${CODER_HTTP_ADDRESS:-127.0.0.1:3000}
URL=${CODER_ACCESS_URL:-http://$ADDR}
# Subdomain apps on loopback with no DNS: browsers resolve every
# *.localhost name to the loopback address.
WILDCARD=${CODER_WILDCARD_ACCESS_URL:-*.localhost:${ADDR##*:}}
CLI=(--global-config "$STATE/cli")
mkdir -p "$STATE"
chmod 711 "$STATE"   # traversable, not listable: the built-in PostgreSQL runs as the postgres user when we are root

if [[ ! -s $STATE/admin-password ]]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$STATE/admin-password")
fi
PASSWORD=$(cat "$STATE/admin-password")

CODER_STOP_LOCAL_AGENTS_ON_EXIT=${CODER_STOP_LOCAL_AGENTS_ON_EXIT:-true} \
  "$BIN" server --http-address "$ADDR" --access-url "$URL" --wildcard-access-url "$WILDCARD" --config-dir "$STATE/server" &
SERVER=$!
stop() { kill -INT "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
trap stop INT TERM
trap 'stop; exit' EXIT

# Wait for the server (the first start initialises the database).
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { echo "coder server exited; see the messages above" >&2; exit 1; }
  sleep 0.2
done

"$BIN" login "$URL" "${CLI[@]}" --first-user-username admin --first-user-email admin@example.com \
  --first-user-password "$PASSWORD" >/dev/null
"$BIN" templates push default -f templates/default.yaml "${CLI[@]}" >/dev/null
"$BIN" list "${CLI[@]}" -o json | grep -q '"name": "dev"' || "$BIN" create dev -t default "${CLI[@]}" >/dev/null

cat <<MSG
────────────────────────────────────────────────────────────────
  Open $URL and log in as:
    username  admin
    password  $PASSWORD     (kept in $STATE/admin-password)
  Your workspace: $URL/@admin/dev
  Subdomain apps: http://{app}--{agent}--{workspace}--{user}${WILDCARD#\*}
  CLI:  $BIN list --global-config $STATE/cli
  Ctrl+C stops the server, its agents and its database.
────────────────────────────────────────────────────────────────
MSG
wait "$SERVER"
