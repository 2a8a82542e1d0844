"""onnxruntime's outputs for the models `emotions` ships and the heads its trainers write.

- The tuned encoder: models/minilm/model.onnx with models/tuned/adapter.safetensors merged in
  numpy, independently of the Rust merge: each projection `Add(MatMul(x, W), <stem>.bias)` gets
  W + (B·A)ᵀ (PEFT layout, scale already in B). Embedded like gen_encoder.py (mean pooling,
  L2 normalisation) on the conformance texts.
- Every head in HEADS on the embeddings of the encoder it was trained on: the plain encoder's
  reference embeddings (fixtures/encoder/embeddings.npy) for the default and MLP heads, the
  tuned ones for the tuned head (text to scores, both halves from onnxruntime). Unit-length
  rows: the random head fixtures' rows of norm 1000 put the f32 rounding of a logit at 1e-5,
  over the 1e-6 any two correct runtimes can promise for mid-range scores. (Until stop 43
  every head also got the other encoder's embeddings; with a candidate adapter of 2026-12-06,
  the default head on a tuned embedding it was not built for came to 1.04e-6 in tract's
  generic plans, whose f32 sum was 1.0e-6 from the f64 value where onnxruntime's was 5e-8.)

Run from the repository root (fixture generation only; see requirements.txt):

    /tmp/venv/bin/python crates/conformance/scripts/gen_shipped.py

mlp_head.onnx, an MLP head as `emotions train` writes it, was made with (debug build; the
first 400 train and 200 dev rows):

    head -400 ../shared/data/go_emotions/train.tsv > /tmp/mlpfix/train.tsv
    head -200 ../shared/data/go_emotions/dev.tsv > /tmp/mlpfix/dev.tsv
    emotions train --split /tmp/mlpfix/train.tsv --dev /tmp/mlpfix/dev.tsv --hidden 64 \
        --cache /tmp/mlpfix/cache --output crates/conformance/fixtures/shipped/mlp_head.onnx

Writes to crates/conformance/fixtures/shipped/:
  tuned_embeddings.npy   f32 [N, 384], texts of fixtures/encoder/texts.json
  tuned_text_scores.npy  f32 [N, 28], the tuned head on tuned_embeddings.npy
  <head>.scores.npy      f32 [N, 28] for each head on its own encoder's embeddings
"""
import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import gen_encoder  # noqa: E402
from gen_heads import reference_scores  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[3]
OUT = ROOT / "crates/conformance/fixtures/shipped"
FIXTURES = ROOT / "crates/conformance/fixtures"
HEADS = {
    "default_head": ROOT / "models/head/head.onnx",
    "tuned_head": ROOT / "models/tuned/head.onnx",
    # Written by `emotions train --hidden` (see the docstring), committed beside its scores.
    "mlp_head": FIXTURES / "shipped/mlp_head.onnx",
}


def read_safetensors(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        assert entry["dtype"] == "F32", entry
        a, b = entry["data_offsets"]
        out[name] = np.frombuffer(data[a:b], "<f4").reshape(entry["shape"])
    return out


def merged_model(model_path, adapter_path):
    model = onnx.load(str(model_path))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def value(name):
        """The f32 value of a weight: an initializer, or Mul(Cast(q), scale) of initializers."""
        if name in inits:
            return numpy_helper.to_array(inits[name]).astype(np.float32)
        node = producer[name]
        assert node.op_type == "Mul", node.op_type
        a, b = node.input
        cast_in, scale = (a, b) if producer.get(a) is not None and producer[a].op_type == "Cast" else (b, a)
        q = numpy_helper.to_array(inits[producer[cast_in].input[0]]).astype(np.float32)
        return q * numpy_helper.to_array(inits[scale]).astype(np.float32)

    stems = {}
    for add in (n for n in g.node if n.op_type == "Add"):
        for i in add.input:
            if i in inits and i.endswith(".bias"):
                for j in add.input:
                    if j != i and j in producer and producer[j].op_type == "MatMul":
                        stems[i[:-len(".bias")]] = producer[j]
    tensors = read_safetensors(adapter_path)
    targets = sorted({k.rsplit(".lora_", 1)[0] for k in tensors})
    for t in targets:
        matches = [s for s in stems if s == t or s.endswith("." + t)]
        assert len(matches) == 1, (t, matches)
        mm = stems[matches[0]]
        a = tensors[f"{t}.lora_A.weight"]
        b = tensors[f"{t}.lora_B.weight"]
        w = value(mm.input[1]) + (b @ a).T.astype(np.float32)
        name = matches[0] + ".merged_weight"
        g.initializer.append(numpy_helper.from_array(w.astype(np.float32), name))
        mm.input[1] = name
    print(f"merged {len(targets)} adapter targets")
    return model


def report_summation(name, head, x, scores):
    """For a MatMul + Add + Sigmoid head: how far onnxruntime and an in-order f32 sum (tract's
    MatMul) land from the f64 scores, the figures behind shipped.rs's two head tolerances."""
    if [n.op_type for n in head.graph.node[:3]] != ["MatMul", "Add", "Sigmoid"]:
        return
    inits = {t.name: numpy_helper.to_array(t) for t in head.graph.initializer}
    w, b = inits["output.weight"], inits["output.bias"]
    z64 = x.astype(np.float64) @ w.astype(np.float64) + b.astype(np.float64)
    exact = 1 / (1 + np.exp(-z64))
    z32 = np.zeros((x.shape[0], w.shape[1]), np.float32)
    for k in range(w.shape[0]):
        z32 = z32 + x[:, k:k + 1].astype(np.float32) * w[k:k + 1, :].astype(np.float32)
    in_order = 1 / (1 + np.exp(-(z32 + b).astype(np.float64)))
    print(f"{name}: |logit| up to {np.abs(z64).max():.2f}; from the f64 scores: onnxruntime "
          f"{np.abs(scores - exact).max():.2e}, an in-order f32 sum {np.abs(in_order - exact).max():.2e}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = merged_model(ROOT / "models/minilm/model.onnx", ROOT / "models/tuned/adapter.safetensors")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    texts = json.loads((FIXTURES / "encoder/texts.json").read_text(encoding="utf-8"))
    emb = gen_encoder.embed(texts, gen_encoder.tokenizer(), sess)
    np.save(OUT / "tuned_embeddings.npy", emb)
    tuned = onnx.load(str(HEADS["tuned_head"]))
    np.save(OUT / "tuned_text_scores.npy", reference_scores(tuned, emb).astype(np.float32))
    plain = np.load(FIXTURES / "encoder/embeddings.npy")
    for name, path in HEADS.items():
        x = emb if name == "tuned_head" else plain
        head = onnx.load(str(path))
        scores = reference_scores(head, x).astype(np.float32)
        np.save(OUT / f"{name}.scores.npy", scores)
        report_summation(name, head, x, scores)
    print(f"{len(texts)} texts; heads {list(HEADS)}, each on its own encoder's embeddings")


if __name__ == "__main__":
    main()
