#!/usr/bin/env bash
# Builds text-embeddings-inference's router (TEI) from source with its CPU candle backend, from
# crates.io only, for side-by-side runs against `emotions serve` (issue 32). None of TEI's code
# goes into this repository: the source comes from GitHub (or a local mirror) into DIR, and the
# patch below is applied there.
#
# Usage: scripts/tei/build.sh TEI_SOURCE DIR
#   TEI_SOURCE: a git URL or path of huggingface/text-embeddings-inference (tested at 0d124dc)
#   DIR: where to clone and build; the binary is DIR/target/release/text-embeddings-router
#
# What the patch changes, and why:
# - `[patch.crates-io]` is removed: it points candle and cudarc at git revisions, and only
#   crates.io can be reached here. candle 0.8.4 from crates.io builds in their place.
# - candle's feature names of that git revision (`_cuda`, `_mkl`) become crates.io's (`cuda`,
#   `mkl`); `cudarc?/static-linking`, absent from crates.io's cudarc 0.13, is dropped. Neither is
#   used by the CPU build.
# - insta, a dev-dependency pinned to a git fork, comes from crates.io.
# - TEI's rust-toolchain.toml asks for 1.92.0, which rustup cannot download here; the stable
#   toolchain builds it.
# - Thin LTO and 16 codegen units instead of fat LTO and one, to build in minutes (5 min 56 s on
#   2 cores); the speed this costs TEI, if any, was not measured.
set -euo pipefail
src="${1:?usage: scripts/tei/build.sh TEI_SOURCE DIR}"
dir="${2:?usage: scripts/tei/build.sh TEI_SOURCE DIR}"
if [ ! -d "$dir/.git" ]; then
    git clone --quiet "$src" "$dir"
fi
cd "$dir"
python3 - <<'PY'
import pathlib, re
root = pathlib.Path("Cargo.toml")
s = root.read_text()
if "[patch.crates-io]" in s:
    s = s[:s.index("[patch.crates-io]")] + s[s.index("[profile.release]"):]
    root.write_text(s)
for f in ["router/Cargo.toml", "backends/candle/Cargo.toml"]:
    p = pathlib.Path(f)
    t = re.sub(r'insta = \{ git = "[^"]*" ?, rev = "[^"]*", features = \["yaml"\] \}',
               'insta = { version = "1", features = ["yaml"] }', p.read_text())
    t = t.replace('"candle/_mkl"', '"candle/mkl"')
    t = t.replace('"candle/_cuda", "candle-nn/_cuda"', '"candle/cuda", "candle-nn/cuda"')
    t = t.replace('static-linking = ["cudarc?/static-linking", ', 'static-linking = [')
    p.write_text(t)
left = [str(p) for p in pathlib.Path(".").rglob("Cargo.toml") if "git =" in p.read_text()]
if left:
    raise SystemExit(f"git dependencies left in {left}")
PY
RUSTUP_TOOLCHAIN=stable CARGO_PROFILE_RELEASE_LTO=thin CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --release -p text-embeddings-router --no-default-features --features candle,http
echo "built $dir/target/release/text-embeddings-router"
