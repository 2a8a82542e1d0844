"""The tuned default (MiniLM + LoRA adapter + head) side by side: emotions against onnxruntime
running the same model (the adapter merged into the f32 weights in numpy, as
crates/conformance/scripts/gen_shipped.py builds it), text to scores, whole process, load
included; and emotions with the plain head, to show what the adapter costs.

    /tmp/venv/bin/python benches/tuned_side_by_side.py [--texts 1000] [--threads 2] [--repeats 3]

Needs a release build (`cargo build --release`) and ../shared/data/go_emotions.
"""
import argparse
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / "target/release/emotions"
DATA = ROOT / "../shared/data/go_emotions"

ORT_JOB = r"""
import json, pathlib, sys, time
sys.path.insert(0, str(pathlib.Path(sys.argv[1]) / "crates/conformance/scripts"))
import numpy as np, onnx, onnxruntime as ort
import gen_encoder, gen_shipped
from gen_heads import reference_scores
root = pathlib.Path(sys.argv[1]); threads = int(sys.argv[3])
texts = pathlib.Path(sys.argv[2]).read_text(encoding="utf-8").split("\n")[:-1]
model = gen_shipped.merged_model(root / "models/minilm/model.onnx", root / "models/tuned/adapter.safetensors")
opts = ort.SessionOptions(); opts.intra_op_num_threads = threads; opts.inter_op_num_threads = 1
sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
emb = gen_encoder.embed(texts, gen_encoder.tokenizer(), sess)
scores = reference_scores(onnx.load(str(root / "models/tuned/head.onnx")), emb)
np.save(sys.argv[4], scores.astype(np.float32))
"""


def timed(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


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
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import numpy as np
    lines = (DATA / "test.tsv").read_text(encoding="utf-8").split("\n")
    texts = [l.split("\t")[0] for l in lines if l][: a.texts]
    tmp = pathlib.Path(tempfile.mkdtemp())
    (tmp / "t.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (tmp / "job.py").write_text(ORT_JOB)
    cases = {
        "onnxruntime (merged f32 model)": [sys.executable, str(tmp / "job.py"), str(ROOT), str(tmp / "t.txt"),
                                           str(a.threads), str(tmp / "ort.npy")],
        "emotions tuned (default)": [str(BIN), "classify", "--threads", str(a.threads), "--texts",
                                     str(tmp / "t.txt"), "--output", str(tmp / "tuned.npy")],
        "emotions tuned --precision f32": [str(BIN), "classify", "--threads", str(a.threads), "--precision", "f32",
                                           "--texts", str(tmp / "t.txt"), "--output", str(tmp / "tuned32.npy")],
        "emotions plain head": [str(BIN), "classify", "--threads", str(a.threads), "--model",
                                str(ROOT / "models/head/head.onnx"), "--texts", str(tmp / "t.txt"),
                                "--output", str(tmp / "plain.npy")],
    }
    times = {k: [] for k in cases}
    for _ in range(a.repeats):
        for name, cmd in cases.items():
            times[name].append(timed(cmd))
    ref = np.load(tmp / "ort.npy")
    base = sorted(times["onnxruntime (merged f32 model)"])[a.repeats // 2]
    emit(f"{len(texts)} go_emotions test texts, {a.threads} threads, median of {a.repeats}, whole process")
    for name, ts in times.items():
        med = sorted(ts)[a.repeats // 2]
        extra = ""
        out = {"emotions tuned (default)": "tuned.npy", "emotions tuned --precision f32": "tuned32.npy"}.get(name)
        if out:
            extra = f", max |score - onnxruntime| {np.abs(np.load(tmp / out) - ref).max():.1e}"
        emit(f"  {name:<34} {med:6.2f} s  ratio {base / med:4.2f}x{extra}")
    perf_doc.record("tuned_side_by_side.py", "```text\n" + "\n".join(REPORT) + "\n```", variant=f"{a.threads} threads")


if __name__ == "__main__":
    main()
