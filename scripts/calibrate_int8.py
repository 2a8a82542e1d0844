"""Writes models/minilm/calibration.json: which of all-MiniLM-L6-v2's projections take 8-bit
activations in `--precision int8`, and each one's outlier channels.

A layer norm's output has a few channels that are large on every token; rounded per token to
8 bits with the rest, they set a coarse step for all. The kernels round those channels to i16
at the step the other channels set (crates/kernels/src/u8xi8.rs), so they are found here: the
16 channels with the largest |x| over CALIBRATION_TEXTS go_emotions *train* texts, as
onnxruntime computes the f32 graph (one text at a time, no padding).

Which projections: per kind, the mean cosine loss against f32 of that kind alone in 8 bits
with these outliers, `embed` of the first 1,000 go_emotions *dev* texts (2026-12-04, Zen 5):
query 4.5e-6, key 8.0e-6, value 3.4e-5, attention output 1.5e-5, intermediate 4.9e-5, output
(after GELU, no fixed outliers) 3.0e-4. Query, key and intermediate (half of the projections'
multiply-adds) together lose 6.3e-5, inside the contract's 1e-4 with room; adding the value or
attention output projection left less than 1e-4 of margin on dev (mean 0.99990 / 0.99992).

    python scripts/calibrate_int8.py [--check]

`--check` recomputes and fails if the file differs (the layout test does not run it: it needs
onnxruntime).
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/minilm"
DATA = ROOT.parent / "shared/data/go_emotions"
OUT = MODEL / "calibration.json"
CALIBRATION_TEXTS = 200
OUTLIERS = 16
# Per layer, the six weight projections in graph order; these take 8-bit activations.
KINDS = ["query", "key", "value", "attention output", "intermediate", "output"]
EIGHT_BIT = {"query", "key", "intermediate"}


def weight_matmuls(model):
    """The MatMul nodes whose second input is a weight (a constant or a dequantised one)."""
    produced = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}

    def constant(name):
        if name in inits:
            return True
        n = produced.get(name)
        return n is not None and n.op_type in ("Mul", "Cast", "Constant") and all(constant(i) for i in n.input)

    return [n for n in model.graph.node if n.op_type == "MatMul" and constant(n.input[1])]


def int8_sum(model, node):
    """Σ q of the projection's int8 weights (`Mul(Cast(q), s)`), which the runtime checks."""
    produced = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    mul = produced[node.input[1]]
    for i in mul.input:
        cast = produced.get(i)
        if cast is not None and cast.op_type == "Cast":
            q = onnx.numpy_helper.to_array(inits[cast.input[0]])
            return int(q.astype(np.int64).sum()), list(q.shape)
    raise SystemExit(f"{node.name}: weights are not Mul(Cast(q), s)")


def main():
    model = onnx.load(MODEL / "model.onnx")
    projections = weight_matmuls(model)
    assert len(projections) == 36, len(projections)
    chosen = [(n, KINDS[i % 6]) for i, n in enumerate(projections) if KINDS[i % 6] in EIGHT_BIT]
    inputs = sorted({n.input[0] for n, _ in chosen})
    for name in inputs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    lines = (DATA / "train.tsv").read_text(encoding="utf-8").split("\n")[:CALIBRATION_TEXTS]
    amax = {name: None for name in inputs}
    for line in lines:
        e = tok.encode(line.split("\t")[0])
        feed = {
            "input_ids": np.array([e.ids], np.int64),
            "attention_mask": np.ones((1, len(e.ids)), np.int64),
            "token_type_ids": np.array([e.type_ids], np.int64),
        }
        feed = {k: v for k, v in feed.items() if k in {i.name for i in sess.get_inputs()}}
        outs = dict(zip(names, sess.run(None, feed)))
        for name in inputs:
            m = np.abs(outs[name]).reshape(-1, outs[name].shape[-1]).max(0)
            amax[name] = m if amax[name] is None else np.maximum(amax[name], m)
    table = {}
    for node, kind in chosen:
        channels = sorted(int(c) for c in np.argsort(-amax[node.input[0]], kind="stable")[:OUTLIERS])
        q_sum, shape = int8_sum(model, node)
        table[node.name] = {"kind": kind, "k": shape[0], "n": shape[1], "q_sum": q_sum, "outliers": channels}
    doc = {
        "about": "8-bit activations for --precision int8: the projections that take them and their outlier channels (scripts/calibrate_int8.py)",
        "model_sha256": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
        "calibration": f"go_emotions train, first {CALIBRATION_TEXTS} rows, onnxruntime f32, one text at a time",
        "projections": table,
    }
    # One line per projection.
    rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in table.items())
    head = json.dumps({k: v for k, v in doc.items() if k != "projections"}, indent=1)[:-2]
    text = f'{head},\n "projections": {{\n{rows}\n }}\n}}\n'
    json.loads(text)
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            raise SystemExit(f"{OUT} differs from what the calibration computes")
        print(f"{OUT}: as computed")
        return
    OUT.write_text(text)
    print(f"{OUT}: {len(table)} projections")


if __name__ == "__main__":
    main()
