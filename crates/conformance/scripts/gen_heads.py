"""Generate classifier heads in the model card's format and their onnxruntime reference outputs.

Run from the repository root (fixture generation only):

    python -m venv /tmp/venv && /tmp/venv/bin/pip install -r crates/conformance/scripts/requirements.txt
    /tmp/venv/bin/python crates/conformance/scripts/gen_heads.py

Writes to crates/conformance/fixtures/heads/:
  inputs.npy                  f32 [N, 384]: random unit-norm rows plus edge rows
  <head>.onnx                 the head
  <head>.scores.npy           f32 [N, 28]: onnxruntime's P(pos) per label, label order
  <head>.decisions.npy        f32 [N, 28]: 1.0 where P(pos) >= card threshold, else 0.0
Everything is seeded; rerunning reproduces the same bytes.
"""
import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parents[3]
OUT = ROOT / "crates/conformance/fixtures/heads"
LABELS = (ROOT / "../shared/data/go_emotions/emotions.txt").read_text().split()
assert len(LABELS) == 28
THRESHOLDS = json.loads((ROOT / "thresholds.json").read_text())
D = 384
K = len(LABELS)
OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]


def shuffled_labels(rng):
    """Output order is not label order; the card's first output is `surprise`."""
    order = [l for l in LABELS if l != "surprise"]
    rng.shuffle(order)
    return ["surprise"] + order


def weights(rng):
    w = rng.normal(0.0, 1.5, size=(D, K)).astype(np.float32)
    b = rng.normal(-1.5, 1.0, size=(K,)).astype(np.float32)
    return w, b


def inputs(rng):
    rows = rng.normal(size=(240, D)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    edge = [
        np.zeros(D, np.float32),                                   # all zeros: sigmoid(bias)
        np.full(D, 1e3, np.float32),                               # large magnitude: saturates
        -np.full(D, 1e3, np.float32),
        np.eye(D, dtype=np.float32)[5] * 1e3,                      # large, one feature
        np.where(np.arange(D) % 2 == 0, 1e3, -1e3).astype(np.float32),  # large, alternating signs
        rng.normal(size=D).astype(np.float32) * 1e-20,             # tiny magnitude
        np.full(D, 1e-38, np.float32),                             # near the smallest normal f32
        np.eye(D, dtype=np.float32)[0] * 3.0,                      # one-hot
        np.eye(D, dtype=np.float32)[D - 1] * -3.0,
    ]
    # Rows whose logits straddle zero finely.
    edge += [r * s for r, s in zip(rows[:8], [1e-3, 1e-2, 0.1, 0.25, 0.5, 0.75, 1.25, 1.5])]
    return np.concatenate([rows, np.stack(edge)]).astype(np.float32)


def linear_classifier_head(rng, w, b):
    """skl2onnx-style: one binary LinearClassifier (LOGISTIC) per label, with its int64 label."""
    x = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", D])
    nodes, outputs = [], []
    for label in shuffled_labels(rng):
        k = LABELS.index(label)
        nodes.append(helper.make_node(
            "LinearClassifier", ["logits"], [f"{label}_label", label], name=f"lc_{label}",
            domain="ai.onnx.ml", classlabels_ints=[0, 1], coefficients=w[:, k].tolist(),
            intercepts=[float(b[k])], multi_class=0, post_transform="LOGISTIC"))
        outputs.append(helper.make_tensor_value_info(label, TensorProto.FLOAT, ["N", 2]))
        outputs.append(helper.make_tensor_value_info(f"{label}_label", TensorProto.INT64, ["N"]))
    graph = helper.make_graph(nodes, "go_emotions_linear_classifier", [x], outputs)
    return helper.make_model(graph, opset_imports=OPSETS, ir_version=8, producer_name="gen_heads.py")


def matmul_head(rng, w, b):
    """torch-style: MatMul + Add + Sigmoid, then per label Slice, 1 - p, Concat -> [N, 2]."""
    x = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", D])
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array([1.0], np.float32), "one"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = [helper.make_node("MatMul", ["logits", "W"], ["z0"]),
             helper.make_node("Add", ["z0", "b"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["p"])]
    outputs = []
    for label in shuffled_labels(rng):
        k = LABELS.index(label)
        inits += [numpy_helper.from_array(np.array([k], np.int64), f"start_{k}"),
                  numpy_helper.from_array(np.array([k + 1], np.int64), f"end_{k}")]
        nodes += [helper.make_node("Slice", ["p", f"start_{k}", f"end_{k}", "axis1"], [f"pos_{k}"]),
                  helper.make_node("Sub", ["one", f"pos_{k}"], [f"neg_{k}"]),
                  helper.make_node("Concat", [f"neg_{k}", f"pos_{k}"], [label], axis=1)]
        outputs.append(helper.make_tensor_value_info(label, TensorProto.FLOAT, ["N", 2]))
    graph = helper.make_graph(nodes, "go_emotions_matmul", [x], outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=OPSETS[:1], ir_version=8, producer_name="gen_heads.py")


def gemm_single_output_head(rng, w, b):
    """One [N, 28] output, columns in a shuffled order named by the `labels` metadata."""
    perm = rng.permutation(K)
    x = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", D])
    inits = [numpy_helper.from_array(np.ascontiguousarray(w[:, perm].T), "Wt"),
             numpy_helper.from_array(b[perm], "b")]
    nodes = [helper.make_node("Gemm", ["embedding", "Wt", "b"], ["z"], transB=1),
             helper.make_node("Sigmoid", ["z"], ["probabilities"])]
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", K])
    graph = helper.make_graph(nodes, "go_emotions_gemm", [x], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=OPSETS[:1], ir_version=8, producer_name="gen_heads.py")
    helper.set_model_props(model, {"labels": json.dumps([LABELS[i] for i in perm])})
    return model


def bad_heads(rng, w, b):
    """Heads with a wrong signature, each to be rejected with an error that says which."""
    good = linear_classifier_head(rng, w, b)
    missing = onnx.ModelProto()
    missing.CopyFrom(good)
    keep = [o for o in missing.graph.output if o.name != "grief"]
    del missing.graph.output[:]
    missing.graph.output.extend(keep)

    def single(name, x_type, x_shape, node):
        x = helper.make_tensor_value_info("logits", x_type, x_shape)
        out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", K])
        graph = helper.make_graph([node], name, [x], [out])
        model = helper.make_model(graph, opset_imports=OPSETS[:1] + [helper.make_opsetid("example.custom", 1)], ir_version=8)
        helper.set_model_props(model, {"labels": json.dumps(LABELS)})
        return model

    sig = helper.make_node("Sigmoid", ["logits"], ["probabilities"])
    return {
        "missing_grief": missing,
        "width_383": single("w", TensorProto.FLOAT, ["N", 383], sig),
        "rank_3": single("r", TensorProto.FLOAT, ["N", 1, D], sig),
        "int64_input": single("i", TensorProto.INT64, ["N", D], sig),
        "unknown_op": single("u", TensorProto.FLOAT, ["N", D],
                             helper.make_node("EmotionMagic", ["logits"], ["probabilities"], domain="example.custom")),
    }


def reference_scores(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    if "probabilities" in outs:
        labels = json.loads({p.key: p.value for p in model.metadata_props}["labels"])
        return np.stack([outs["probabilities"][:, labels.index(l)] for l in LABELS], axis=1)
    return np.stack([outs[l][:, 1] for l in LABELS], axis=1)


def main():
    rng = np.random.default_rng(20261126)
    OUT.mkdir(parents=True, exist_ok=True)
    x = inputs(rng)
    np.save(OUT / "inputs.npy", x)
    thresholds = np.array([THRESHOLDS[l] for l in LABELS], np.float32)
    builders = {
        "linear_classifier_shuffled": linear_classifier_head,
        "matmul_sigmoid_shuffled": matmul_head,
        "gemm_single_output": gemm_single_output_head,
    }
    for name, build in builders.items():
        w, b = weights(rng)
        model = build(rng, w, b)
        onnx.checker.check_model(model)
        onnx.save(model, OUT / f"{name}.onnx")
        scores = reference_scores(model, x).astype(np.float32)
        # Every row must be well-posed in f32: the reference within 6e-7 of the exact (f64)
        # value, so that the 1e-6 contract tests the engine, not summation order. (A x50
        # mixed-sign row whose logit cancels to ~0 was dropped: onnxruntime itself was 8e-5
        # off the exact value there.)
        with np.errstate(over="ignore"):
            exact = 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ w + b)))
        err = np.abs(scores - exact).max()
        assert err < 6e-7, (name, err, int(np.abs(scores - exact).max(axis=1).argmax()))
        np.save(OUT / f"{name}.scores.npy", scores)
        np.save(OUT / f"{name}.decisions.npy", (scores >= thresholds).astype(np.float32))
        print(f"{name}: {x.shape[0]} rows, scores in [{scores.min():.3g}, {scores.max():.3g}], "
              f"{int((scores >= thresholds).sum())} positive decisions")


    (OUT / "bad").mkdir(exist_ok=True)
    w, b = weights(rng)
    for name, model in bad_heads(rng, w, b).items():
        onnx.save(model, OUT / "bad" / f"{name}.onnx")


if __name__ == "__main__":
    main()
