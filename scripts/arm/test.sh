#!/usr/bin/env bash
# The AArch64 build, tested under qemu-user on three CPU models, one per kernel class:
#   cortex-a53  NEON only          (class neon: SMLAL, FMLA)
#   cortex-a76  NEON + dotprod     (class neon-dotprod: SDOT)
#   max         NEON + i8mm, SVE   (class neon-i8mm: USMMLA)
# On each: the kernels and runtime crates' tests (and the conformance crate's unit tests), in
# which every class the CPU runs is forced, and detection must find exactly the class named
# above. On `max`: the conformance suite's heads and MiniLM encoder cases against the same
# onnxruntime fixtures as on x86-64, on every 10th fixture text (22 of 220), in the symbolic
# plan only: under emulation each encoder takes ~40 s to load, so the cases that load their own
# (bucket plans, batching) and the 5,427-text tokenizer case (no kernel in it) are left to the
# x86-64 run. Then the static binary, alone in an empty folder under `env -i`, on all three
# CPUs, against the x86-64 binary's scores for the same text.
#
# Every AArch64 build is release and static (.cargo/config.toml), so the tests share the
# binary's compiled dependencies.
#
# Usage: scripts/arm/test.sh [X86_BINARY]   (default target/debug/emotions, built if missing)
#        scripts/arm/test.sh --build-only    (set up and build everything, run nothing: .ci/run
#                                             builds while the host's tests run)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/arm/setup.sh

target=aarch64-unknown-linux-gnu
x86=${1:-target/debug/emotions}
test=(cargo test --release --target $target)
# One selection for the build and every run of it below, the suite's too: features are unified
# once, so no crate is built under two feature sets for these tests (with `-p
# emotions-conformance` alone, its two test binaries were built twice: 2.5 of CI's minutes), and
# cargo compiles the three side by side.
packages=(-p emotions-kernels -p emotions-runtime -p emotions-conformance)

cargo build-static-arm
"${test[@]}" --no-run "${packages[@]}" --lib --test heads --test encoder
if [ "$x86" = --build-only ]; then
    exit 0
fi
for model in cortex-a53:neon cortex-a76:neon-dotprod max:neon-i8mm; do
    cpu=${model%%:*}
    echo "== qemu -cpu $cpu: kernels, runtime and conformance units, expecting class ${model##*:}"
    QEMU_CPU=$cpu EMOTIONS_EXPECT_WIDEST=${model##*:} \
        "${test[@]}" "${packages[@]}" --lib
done
echo "== qemu -cpu max: the conformance suite's heads and encoder cases, every 10th text"
QEMU_CPU=max EMOTIONS_EXPECT_WIDEST=neon-i8mm EMOTIONS_CONFORMANCE_EVERY=10 \
    "${test[@]}" "${packages[@]}" --test heads --test encoder -- --nocapture \
    --skip token_ids_match_for_every_test_split_text --skip with_bucket_plans \
    --skip batching_and_order

echo "== the static binary, alone in an empty folder"
[ -x "$x86" ] || cargo build --bin emotions
bin=target/$target/release/emotions
file "$bin"
file "$bin" | grep -q "ARM aarch64.*statically linked"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$bin" "$dir/"
qemu=$(command -v qemu-aarch64)
text="Thank you so much, this is wonderful!"
for precision in f32 int16; do
    "$x86" classify --precision $precision --text "$text" >"$dir/x86.json"
    for cpu in cortex-a53 cortex-a76 max; do
        (cd "$dir" && env -i "$qemu" -cpu $cpu ./emotions classify -v --precision $precision \
            --text "$text" >arm.json)
        python3 - "$dir/x86.json" "$dir/arm.json" "$cpu" "$precision" <<'PY'
import json, sys
x86, arm = (json.loads(open(p).read()) for p in sys.argv[1:3])
worst = max(abs(x86["scores"][k] - arm["scores"][k]) for k in x86["scores"])
print(f"{sys.argv[3]} {sys.argv[4]}: labels {arm['labels']}, worst score difference "
      f"to x86-64 {worst:.1e}")
# The labels of x86-64, and scores within the f32 kernels' cross-class tolerance
# (tests/cli/isa.rs): the f32 matmuls are tract-linalg's own per-ISA kernels.
assert arm["labels"] == x86["labels"] == ["gratitude", "admiration"], (arm, x86)
assert worst <= 1e-4, worst
PY
    done
done
