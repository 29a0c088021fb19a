#!/usr/bin/env bash
# Checks the running API against its own OpenAPI document with schemathesis: every documented
# operation is called with generated requests, and each answer must be no server error, a
# documented status, a documented content type and a body that fits the documented schema.
# (Whether a given generated request "should" have been accepted is left out: the API rejects
# schema-valid requests that make no sense, e.g. a silence that ends before it starts.)
#
# Starts its own citywatch (embedded broker, free ports, throwaway data; calls carry an admin
# token so writes are exercised too, at the token's rate limit) and stops it. Run from
# anywhere, after a build:
#   bash scripts/openapi-check.sh [path/to/citywatch]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/debug/citywatch}
venv=target/schemathesis
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.*'
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port)
mqtt=$(free_port)
data=$(mktemp -d)
"$bin" run --http "127.0.0.1:$http" --embedded-broker-addr "127.0.0.1:$mqtt" --mqtt embedded \
  --reference examples/reference --rules rules/default --data-dir "$data" \
  >"$data/citywatch.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$http/readyz" >/dev/null || { cat "$data/citywatch.log"; exit 1; }
admin=$("$bin" token create --name openapi-check --role admin --data-dir "$data")

# schemathesis keeps a cache in its working directory: the throwaway one, not the project.
venv=$(cd "$venv" && pwd)
cd "$data"
"$venv/bin/schemathesis" run "http://127.0.0.1:$http/api/v1/openapi.json" \
  --exclude-checks positive_data_acceptance,negative_data_rejection \
  --exclude-path-regex 'stream$' \
  -H "Authorization: Bearer $admin" --rate-limit 18/s \
  --max-examples 15 --seed 1 --no-color
