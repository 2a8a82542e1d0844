#!/usr/bin/env bash
# The published contract: schemathesis (PyPI) against a live `emotions serve`'s own
# /openapi.json, every check, every operation, a fixed seed and a bounded number of examples;
# then its TEI routes against TEI's own OpenAPI document (tests/contract/tei_schema.py).
# Usage: tests/contract/run.sh [EMOTIONS_BINARY] [MAX_EXAMPLES] [SEED]
# Makes its own venv under target/contract-venv. Exits non-zero on any failure or error.
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="${1:-target/debug/emotions}"
examples="${2:-50}"
seed="${3:-1}"
if [ ! -x "$binary" ]; then
    cargo build --bin emotions
fi
venv=target/contract-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/contract/requirements.txt
log=$(mktemp)
"$binary" serve --addr 127.0.0.1:0 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
# The server prints the address it bound.
for _ in $(seq 1 300); do
    addr=$(grep -oE '127\.0\.0\.1:[0-9]+' "$log" | head -1 || true)
    [ -n "$addr" ] && break
    sleep 0.1
done
if [ -z "${addr:-}" ]; then
    echo "tests/contract: the server did not start:" >&2
    cat "$log" >&2
    exit 1
fi
"$venv/bin/schemathesis" run "http://$addr/openapi.json" --checks all \
    --max-examples "$examples" --seed "$seed" --workers 2 \
    --wait-for-schema 30 --no-color
# The TEI routes against TEI's own document: no 5xx for TEI-valid requests, and every 200
# body valid under TEI's response schema (tests/contract/tei_schema.py says what is left out).
tei=$(mktemp --suffix=.json)
trap 'kill $server 2>/dev/null || true; rm -f "$log" "$tei"' EXIT
"$venv/bin/python" tests/contract/tei_schema.py "$tei"
"$venv/bin/schemathesis" run "$tei" --url "http://$addr" \
    --checks not_a_server_error,response_schema_conformance,content_type_conformance \
    --max-examples "$examples" --seed "$seed" --workers 2 --no-color
