#!/usr/bin/env bash
# Runs the real clients (huggingface_hub, openai) against a live `emotions serve`.
# Usage: tests/clients/run.sh [EMOTIONS_BINARY]   (default: target/debug/emotions, built here)
# Makes its own venv under target/clients-venv from tests/clients/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="${1:-target/debug/emotions}"
if [ ! -x "$binary" ]; then
    cargo build --bin emotions
fi
venv=target/clients-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
"$venv/bin/python" tests/clients/clients.py "$binary"
