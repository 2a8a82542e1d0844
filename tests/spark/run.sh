#!/usr/bin/env bash
# The Spark example in local mode (local[2]) on go_emotions texts, checked row by row against
# one `emotions classify` run. Usage: tests/spark/run.sh [EMOTIONS_BINARY] [N_TEXTS]
# (defaults: target/debug/emotions, built here; 20000). Makes its own venv under
# target/spark-venv from tests/spark/requirements.txt; needs Java 17 (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="$(realpath "${1:-target/debug/emotions}")"
n="${2:-20000}"
if [ ! -x "$binary" ]; then
    cargo build --bin emotions
fi
if ! java -version >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
venv=target/spark-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/spark/requirements.txt
now() { python3 -c 'import time; print(time.time())'; }
since() { python3 -c "import time; print(time.time() - $1)"; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
head -n "$n" ../shared/data/go_emotions/train.tsv | cut -f1 > "$work/texts.txt"

start=$(now)
"$binary" classify --texts "$work/texts.txt" > "$work/single.jsonl"
single=$(since "$start")

start=$(now)
PYSPARK_PYTHON="$PWD/$venv/bin/python" "$venv/bin/spark-submit" \
    --master 'local[2]' --conf spark.ui.enabled=false --conf spark.driver.host=127.0.0.1 \
    --files "$binary" \
    examples/spark/classify_job.py \
    --input "$work/texts.txt" --output "$work/scores.parquet" \
    --binary-name "$(basename "$binary")" 2> "$work/spark.log" || { tail -50 "$work/spark.log"; exit 1; }
spark=$(since "$start")

python3 -c "n, a, b = $n, $single, $spark; print(f'one process: {n} texts in {a:.1f} s ({n / a:.0f} texts/s); Spark local[2]: {b:.1f} s ({n / b:.0f} texts/s)')"
"$venv/bin/python" tests/spark/check.py "$work/texts.txt" "$work/scores.parquet" "$work/single.jsonl"
