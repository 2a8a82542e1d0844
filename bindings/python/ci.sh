#!/usr/bin/env bash
# A fresh venv, `pip install bindings/python` (maturin from PyPI, the Rust core built by cargo),
# then the pytest suite. Usage: bindings/python/ci.sh [EMOTIONS_CLI]
# MATURIN_PEP517_ARGS picks the Cargo profile; unset, pip builds release as users get it.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/python-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS---profile dev}" "$venv/bin/pip" install -q bindings/python pytest
if [ -n "${1:-}" ]; then export EMOTIONS_CLI="$(realpath "$1")"; fi
tests="$PWD/bindings/python/tests"
# Outside the source tree, so `import emotions` is the installed package.
cd "$venv"
bin/python -c "import emotions; print(emotions.Classifier()(['Thank you so much!'])[0][0])"
bin/python -m pytest -q -p no:cacheprovider "$tests"
