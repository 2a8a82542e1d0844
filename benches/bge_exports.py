"""Each export of the 12-layer bge-small replica, whole process (load included), emotions against
Python + onnxruntime on the same file and texts, in one run.

Make the replicas first (fixture tooling, see the generator's docstring for the interpreters),
then run from the repository root:

    /work/replica-venv/bin/python crates/conformance/scripts/gen_bge_replicas.py all \\
        --layers 12 --out target/bge-full --python-t440 /work/replica-venv-t440/bin/python
    /tmp/venv/bin/python benches/bge_exports.py target/bge-full

For every ONNX file of the folder it times `emotions embed --encoder DIR --encoder-file FILE`
and the onnxruntime equivalent (sentence-transformers' pipeline: truncation at 512, batches of
32 sorted by length, CLS pooling, normalised) at 2 threads, checks their embeddings against each
other, and prints a Markdown table (ratio = onnxruntime time / emotions time; > 1 means emotions
is faster). The rewrite counts come from `emotions embed -v`.
"""
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from onnxruntime_baseline import BIN, ROOT, long_texts, session, test_texts, timed  # noqa: E402

FILES = ["onnx/model.onnx", "legacy_t440.onnx", "legacy_t5.onnx", "dynamo.onnx", "onnx/model_quantized.onnx"]
THREADS = 2


def _embed(folder, file, inp, out):
    from tokenizers import Tokenizer

    folder = pathlib.Path(folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(512)
    sess = session(folder / file)
    names = {i.name for i in sess.get_inputs()}
    texts = pathlib.Path(inp).read_text(encoding="utf-8").split("\n")[:-1]
    encs = tok.encode_batch(texts)
    order = np.argsort([len(e.ids) for e in encs], kind="stable")
    emb = np.zeros((len(texts), 384), np.float32)
    for start in range(0, len(texts), 32):
        idx = order[start:start + 32]
        batch = [encs[i] for i in idx]
        width = max(len(e.ids) for e in batch)
        pad = lambda rows: np.array([r + [0] * (width - len(r)) for r in rows], np.int64)
        feed = {
            "input_ids": pad([e.ids for e in batch]),
            "attention_mask": pad([[1] * len(e.ids) for e in batch]),
            "token_type_ids": pad([e.type_ids for e in batch]),
        }
        states = sess.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in names})[0]
        cls = states[:, 0, :]
        emb[idx] = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    np.save(out, emb)


def compare(a, b):
    a, b = np.load(a), np.load(b)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return cos.min(), np.abs(a - b).max()


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
    if len(sys.argv) > 1 and sys.argv[1] == "_embed":
        return _embed(*sys.argv[2:])
    folder = pathlib.Path(sys.argv[1]).resolve()
    subprocess.run(["cargo", "build", "--release", "--bin", "emotions"], cwd=ROOT, check=True)
    env = dict(os.environ, ORT_THREADS=str(THREADS))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        for name, texts in (("1,000 go_emotions test texts", test_texts(1000)), ("200 texts of 200-512 tokens", long_texts(200))):
            (d / "t.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
            for file in FILES:
                stem = file.replace("/", "_")
                ort = timed([sys.executable, __file__, "_embed", str(folder), file, str(d / "t.txt"), str(d / f"ort_{stem}.npy")], 1, env=env)
                cmd = [str(BIN), "embed", "--encoder", str(folder), "--encoder-file", file, "--texts", str(d / "t.txt"), "--threads", str(THREADS), "--output", str(d / f"me_{stem}.npy")]
                me = timed(cmd, 1)
                report = [str(BIN), "embed", "--encoder", str(folder), "--encoder-file", file, "--text", "hi", "-v"]
                rewrites = subprocess.run(report, capture_output=True, text=True, check=True).stderr.strip().split(": ")[-1]
                cos, diff = compare(d / f"me_{stem}.npy", d / f"ort_{stem}.npy")
                f32_cos = compare(d / f"me_{stem}.npy", d / "ort_onnx_model.onnx.npy")[0]
                ort_f32_cos = compare(d / f"ort_{stem}.npy", d / "ort_onnx_model.onnx.npy")[0]
                rows.append((name, file, ort, me, cos, diff, f32_cos, ort_f32_cos, rewrites))
                print(rows[-1], flush=True)  # progress, not the report
    emit(f"\n{THREADS} threads, whole process, load included; cosine and max |difference| against onnxruntime on the same file.\n")
    emit("| texts | file | onnxruntime | emotions | ratio | min cosine | max abs diff | min cosine to the f32 model: emotions / onnxruntime | peak RSS ort / emotions | rewrites |\n|---|---|---|---|---|---|---|---|---|---|")
    for name, file, ort, me, cos, diff, f32_cos, ort_f32_cos, rewrites in rows:
        emit(f"| {name} | `{file}` | {ort[0]:.2f} s | {me[0]:.2f} s | {ort[0] / me[0]:.2f}× | {cos:.7f} | {diff:.1e} | {f32_cos:.6f} / {ort_f32_cos:.6f} | {ort[1]:.0f} / {me[1]:.0f} MiB | {rewrites} |")
    perf_doc.record("bge_exports.py", "\n".join(REPORT))


if __name__ == "__main__":
    main()
