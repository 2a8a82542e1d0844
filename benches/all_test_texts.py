"""Accuracy of the integer paths (int16, int8) against onnxruntime f32 over every go_emotions test text.

Run from the repository root, after `cargo build --release` (reference tooling only; pinned
versions in crates/conformance/scripts/requirements.txt):

    /tmp/venv/bin/python benches/all_test_texts.py

Prints, for the 5,427 test texts:
- the embeddings of `emotions embed` in each precision (int16, int8, f32) against onnxruntime
  f32 on the same model: worst element, min and mean cosine;
- how many of the 5,427 x 28 decisions of the text classifier differ between each integer
  precision and f32;
- the test macro-F1 of `emotions eval` in each precision.
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / "target/release/emotions"
TEST = ROOT / "../shared/data/go_emotions/test.tsv"

sys.path.insert(0, str(ROOT / "crates/conformance/scripts"))
from gen_encoder import MODEL, embed, tokenizer  # noqa: E402


def run(*args):
    return subprocess.run([str(BIN), *map(str, args)], check=True, capture_output=True, text=True)


import pathlib as _pathlib
import sys as _sys

_sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parent))
import perf_doc  # noqa: E402

# What this run measured, for docs/PERFORMANCE.md.
REPORT = []


def emit(line=""):
    print(line)
    REPORT.append(line)


def main():
    texts = [line.split("\t")[0] for line in TEST.read_text(encoding="utf-8").splitlines()]
    assert len(texts) == 5427, len(texts)
    sess = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    reference = embed(texts, tokenizer(), sess)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        labels = {}
        for precision in ["int16", "int8", "f32"]:
            out = tmp / f"{precision}.npy"
            run("embed", "--texts", tmp / "texts.txt", "--output", out, "--precision", precision)
            got = np.load(out)
            cos = (got * reference).sum(1) / (
                np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1)
            )
            worst = np.abs(got - reference).max()
            emit(f"embeddings, {precision}: worst element {worst:.1e}, cosine min {cos.min():.7f} "
                  f"mean {cos.mean():.7f} over {len(texts)} texts")
            lines = run("classify", "--texts", tmp / "texts.txt", "--precision", precision).stdout
            labels[precision] = [set(json.loads(l)["labels"]) for l in lines.splitlines()]
            metrics = run("eval", "--split", TEST, "--precision", precision,
                          "--cache", tmp / f"cache-{precision}").stdout
            emit(f"eval, {precision}:\n{metrics}")
        for precision in ["int16", "int8"]:
            pairs = list(zip(labels[precision], labels["f32"]))
            differ = sum(len(a ^ b) for a, b in pairs)
            texts_differ = sum(a != b for a, b in pairs)
            emit(f"decisions that differ between {precision} and f32: {differ} of {len(texts) * 28} "
                 f"({texts_differ} texts)")
    perf_doc.record("all_test_texts.py", "```text\n" + "\n".join(REPORT) + "\n```")


if __name__ == "__main__":
    main()
