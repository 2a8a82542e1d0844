#!/usr/bin/env bash
# The WebAssembly package in CI: build pkg/ (dev profile, no wasm-opt: minutes less than the
# release build, whose dependencies are optimised the same; the speed figures come from release
# builds, benches/wasm_side_by_side.mjs), then the Node tests against the CLI given as $1, onnxruntime's
# fixtures, bad input, and the demo page in Debian's Chromium.
#
# Usage: bindings/wasm/ci.sh path/to/emotions
set -euo pipefail
cli="$(realpath "${1:?usage: bindings/wasm/ci.sh path/to/emotions}")"
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null; then
    # Debian's Chromium: Playwright's own browser download cannot be reached here.
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
npm install --no-audit --no-fund --ignore-scripts
npm run build -- --dev --no-opt
EMOTIONS_BIN="$cli" CHROMIUM="$(command -v chromium)" npm test
