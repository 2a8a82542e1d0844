"""Checks the Spark job's Parquet against one `emotions classify` run on the same texts.

Usage: check.py TEXTS_FILE SCORES_PARQUET_DIR SINGLE_PROCESS_JSONL
Every row must be there, in input order (by id), with the same labels and every score within
1e-6. Prints "spark: N passed, N failed" and exits 1 on any failure.
"""

import json
import sys

import pyarrow.parquet as pq

texts_path, parquet_dir, jsonl_path = sys.argv[1:4]
# As `emotions` reads them: split on \n only, a trailing \r dropped.
texts = open(texts_path, encoding="utf-8", newline="").read().split("\n")
if texts and texts[-1] == "":
    texts.pop()
texts = [t[:-1] if t.endswith("\r") else t for t in texts]
single = [json.loads(line) for line in open(jsonl_path, encoding="utf-8")]
table = pq.read_table(parquet_dir).sort_by("id").to_pylist()

failures = []
if len(table) != len(texts) or len(single) != len(texts):
    failures.append(f"{len(texts)} texts, {len(table)} Spark rows, {len(single)} single-process rows")
worst = 0.0
for i, (row, want) in enumerate(zip(table, single)):
    if row["id"] != i or row["text"] != texts[i]:
        failures.append(f"row {i}: id {row['id']}, text {row['text']!r}, want {texts[i]!r}")
        continue
    if row["labels"] != want["labels"]:
        failures.append(f"row {i}: labels {row['labels']}, want {want['labels']}")
    for label, score in want["scores"].items():
        worst = max(worst, abs(row[label] - score))
if worst > 1e-6:
    failures.append(f"worst score difference {worst:.2e} > 1e-6")
for f in failures[:20]:
    print("FAIL", f)
print(f"spark: {len(table)} rows checked, in order; worst |score diff| {worst:.2e}")
print(f"spark: {1 if not failures else 0} passed, {1 if failures else 0} failed")
sys.exit(1 if failures else 0)
