"""Writes models/minilm/calibration.json: which of all-MiniLM-L6-v2's projections take 8-bit
activations in `--precision int8` (the default on AVX-512 VNNI), and each one's outlier channels.

Outlier channels: a layer norm's output has a few channels that are large on every token;
rounded per token to 8 bits with the rest, they set a coarse step for all. The kernels round
those channels to i16 at the step the other channels set (crates/kernels/src/u8xi8.rs), so they
are found here: the 16 channels with the largest |x| over CALIBRATION_TEXTS go_emotions *train*
texts, as onnxruntime computes the f32 graph (one text at a time, no padding).

Which projections, by measured sensitivity: each of the 36 alone in 8 bits (with its outliers),
`emotions embed --precision int8` of the first SENSITIVITY_TEXTS go_emotions *train* texts,
against onnxruntime f32 on the same file; its loss is 1 - mean cosine. Then the projections in
order of loss per multiply-add, each taken while the summed losses stay within BUDGET (the
contract's mean cosine is 0.9999, a loss of 1e-4). Losses add up closely: the 2026-12-07 set
summed to 6.9e-5 alone and measured 6.5e-5 together on 2,000 dev texts.

    cargo build --release && python scripts/calibrate_int8.py [--check]

It needs a CPU with AVX-512 VNNI (elsewhere `--precision int8` runs no 8-bit projection, so
there is nothing to measure) and takes about 3 minutes. `--check` recomputes and fails if the
file differs (the layout test does not run it: it needs onnxruntime).
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/minilm"
DATA = ROOT.parent / "shared/data/go_emotions"
OUT = MODEL / "calibration.json"
BIN = ROOT / "target/release/emotions"
CALIBRATION_TEXTS = 200
SENSITIVITY_TEXTS = 2000
BUDGET = 7e-5
OUTLIERS = 16
# Per layer, the six weight projections in graph order.
KINDS = ["query", "key", "value", "attention output", "intermediate", "output"]


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


def outlier_channels(model, projections):
    """Per projection, its OUTLIERS channels of largest |x| over the calibration texts."""
    model = onnx.load_from_string(model.SerializeToString())
    inputs = sorted({n.input[0] for n in projections})
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
    return {
        n.name: sorted(int(c) for c in np.argsort(-amax[n.input[0]], kind="stable")[:OUTLIERS])
        for n in projections
    }


class Sensitivity:
    """Losses of calibrations on the sensitivity texts: `emotions embed` in a copy of the model
    folder against onnxruntime f32 on the same file."""

    def __init__(self, tmp):
        sys.path.insert(0, str(ROOT / "crates/conformance/scripts"))
        from gen_encoder import embed, tokenizer

        lines = (DATA / "train.tsv").read_text(encoding="utf-8").splitlines()[:SENSITIVITY_TEXTS]
        texts = [line.split("\t")[0] for line in lines]
        self.texts = tmp / "texts.txt"
        self.texts.write_text("\n".join(texts) + "\n", encoding="utf-8")
        sess = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
        self.reference = embed(texts, tokenizer(), sess).astype(np.float64)
        self.folder = tmp / "model"
        self.folder.mkdir()
        for f in MODEL.rglob("*"):
            if f.is_file() and f.name != "calibration.json":
                (self.folder / f.relative_to(MODEL)).parent.mkdir(parents=True, exist_ok=True)
                (self.folder / f.relative_to(MODEL)).symlink_to(f)
        self.out = tmp / "embeddings.npy"

    def loss(self, table):
        (self.folder / "calibration.json").write_text(json.dumps({"projections": table}))
        run = subprocess.run(
            [str(BIN), "embed", "--encoder", str(self.folder), "--texts", str(self.texts),
             "--precision", "int8", "--output", str(self.out), "-v"],
            check=True, capture_output=True, text=True,
        )
        if f"{len(table)} in u8" not in run.stderr:
            raise SystemExit(f"no 8-bit projections ran (a CPU without AVX-512 VNNI?):\n{run.stderr}")
        got = np.load(self.out).astype(np.float64)
        ref = self.reference
        cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
        return float(1.0 - cos.mean())


def main():
    model = onnx.load(MODEL / "model.onnx")
    projections = weight_matmuls(model)
    assert len(projections) == 36, len(projections)
    outliers = outlier_channels(model, projections)
    everything = {}
    for i, node in enumerate(projections):
        q_sum, shape = int8_sum(model, node)
        everything[node.name] = {
            "kind": KINDS[i % 6],
            "layer": i // 6,
            "k": shape[0],
            "n": shape[1],
            "q_sum": q_sum,
            "outliers": outliers[node.name],
        }
    with tempfile.TemporaryDirectory() as tmp:
        sensitivity = Sensitivity(Path(tmp))
        for name, entry in everything.items():
            # Three significant digits: what the choice needs, and stable from run to run.
            entry["loss_alone"] = float(f"{sensitivity.loss({name: entry}):.3g}")
            print(f"{name} ({entry['kind']}, layer {entry['layer']}): {entry['loss_alone']:.3g}", flush=True)
        by_rate = sorted(everything, key=lambda n: everything[n]["loss_alone"] / (everything[n]["k"] * everything[n]["n"]))
        table, summed = {}, 0.0
        for name in by_rate:
            if summed + everything[name]["loss_alone"] <= BUDGET:
                table[name] = everything[name]
                summed += everything[name]["loss_alone"]
        table = {n: table[n] for n in everything if n in table}
        together = sensitivity.loss(table)
    macs = sum(e["k"] * e["n"] for e in table.values()) / sum(e["k"] * e["n"] for e in everything.values())
    print(f"{len(table)} projections, {macs:.0%} of the multiply-adds; losses sum to {summed:.3g}, together {together:.3g}")
    doc = {
        "about": "8-bit activations for --precision int8: the projections that take them and their outlier channels (scripts/calibrate_int8.py)",
        "model_sha256": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
        "calibration": f"go_emotions train: outliers from the first {CALIBRATION_TEXTS} rows (onnxruntime f32, one text at a time); each projection's loss alone (1 - mean cosine against onnxruntime f32) on the first {SENSITIVITY_TEXTS}; the least loss per multiply-add first, within {BUDGET:g} summed",
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
