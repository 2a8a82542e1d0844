"""Side by side in one Python process: `emotions.Classifier().embed` against the Python the
seed's card implies (`tokenizers` + onnxruntime on the same MiniLM file, masked mean pooling,
batches of 32 sorted by length), on the first 1,000 go_emotions test texts.

Needs the binding installed as a release build (a debug build is many times slower) and the
pinned fixture tools:

    /tmp/venv/bin/pip install -r crates/conformance/scripts/requirements.txt
    /tmp/venv/bin/maturin build --release -m bindings/python/Cargo.toml -o target/wheels-release
    /tmp/venv/bin/pip install --force-reinstall --no-deps target/wheels-release/emotions-*.whl
    /tmp/venv/bin/python benches/python_side_by_side.py [--runs 3] [--texts 1000]

It prints Markdown and writes it to docs/PERFORMANCE.md (benches/perf_doc.py). What it
measures, all in this process unless said:
- `embed` of the texts at 1 and 2 threads, median of `--runs` passes each, the two sides
  alternating so that a slow moment of the machine hits both; the ratio is onnxruntime's time
  over ours (> 1: emotions is faster), and the min cosine between the two sides' rows;
- the same with `precision="f32"`, the exact mode;
- the GIL: one `Classifier(threads=1)`, one Python thread embedding all the texts against two
  Python threads embedding a half each (same results checked, element for element);
- set-up in a fresh interpreter: `import emotions; emotions.Classifier()` against
  `import onnxruntime, tokenizers` + the tokenizer + the session, then the first text.
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/minilm/model.onnx"
DATA = ROOT / "../shared/data/go_emotions"
# The sentence benches/onnxruntime_baseline.py and the criterion benches time.
SHORT_TEXT = "Thank you so much, this is truly wonderful and I love it!"
CALLS = 50

sys.path.insert(0, str(ROOT / "crates/conformance/scripts"))
from gen_encoder import embed as ort_embed, tokenizer  # noqa: E402

sys.path.insert(0, str(ROOT / "benches"))
import perf_doc  # noqa: E402

import emotions  # noqa: E402

REPORT = []


def emit(line=""):
    print(line, flush=True)
    REPORT.append(line)


def session(threads, model=None):
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    return ort.InferenceSession(model or str(MODEL), o, providers=["CPUExecutionProvider"])


def test_texts(n):
    lines = (DATA / "test.tsv").read_text(encoding="utf-8").split("\n")
    texts = [l.split("\t")[0] for l in lines if l][:n]
    if len(texts) < n:
        sys.exit(f"{DATA / 'test.tsv'}: expected at least {n} rows, found {len(texts)}")
    return texts


def min_cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


# onnxruntime's pool threads spin for a while after a run (0.04 s of CPU time in a 0.2 s sleep
# after 50 one-text runs at 2 threads, onnxruntime 1.32), on a core the next pass needs: timed
# right after, `embed` of one text at 2 threads took 3.3 ms rather than 2.2. Each pass waits
# this long first, whichever side it times.
SETTLE_S = 0.1


def alternate(fns, runs):
    """Median seconds of each function over `runs` rounds, after one untimed warm-up round;
    within a round the functions run one after the other, so they share the machine's state,
    each after SETTLE_S of quiet."""
    outs = [fn() for fn in fns]
    times = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            time.sleep(SETTLE_S)
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times], outs


def fresh(code):
    """Seconds the child measures for itself (perf_counter around `code`), median of 3 fresh
    interpreters, so that nothing is imported or cached from this process."""
    program = (
        "import time\nt0 = time.perf_counter()\n" + code +
        "\nt1 = time.perf_counter()\nfirst()\nt2 = time.perf_counter()\nprint(t1 - t0, t2 - t1)\n"
    )
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", program], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
        runs.append((float(out[0]), float(out[1])))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


SETUP_EMOTIONS = """
import emotions
clf = emotions.Classifier()
def first():
    clf.embed(["Thank you so much!"])
"""

SETUP_ORT = f"""
import sys
sys.path.insert(0, {str(ROOT / "crates/conformance/scripts")!r})
import onnxruntime as ort
from gen_encoder import embed, tokenizer
tok = tokenizer()
o = ort.SessionOptions()
o.intra_op_num_threads = 2
sess = ort.InferenceSession({str(MODEL)!r}, o, providers=["CPUExecutionProvider"])
def first():
    embed(["Thank you so much!"], tok, sess)
"""


def ms(s):
    if s < 0.01:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--texts", type=int, default=1000)
    args = ap.parse_args()
    texts = test_texts(args.texts)
    tok = tokenizer()

    emit(f"emotions {emotions.__version__} (kernels: {emotions.Classifier(threads=1).isa}), "
         f"onnxruntime {__import__('onnxruntime').__version__}, tokenizers "
         f"{__import__('tokenizers').__version__}, Python {sys.version.split()[0]}; "
         f"the first {len(texts):,} go_emotions test texts; median of {args.runs} passes "
         "after one warm-up pass, the sides alternating. Ratio: onnxruntime's time over "
         "emotions' (> 1: emotions is faster).")
    emit()
    default_precision = emotions.Classifier(threads=1).precision
    emit("| `embed`, in process | threads | tokenizers + onnxruntime f32 | emotions default "
         f"(here {default_precision}) | emotions `precision=\"f32\"` |")
    emit("|---|---|---|---|---|")
    for threads in (1, 2):
        sess = session(threads)
        default = emotions.Classifier(threads=threads)
        exact = emotions.Classifier(threads=threads, precision="f32")
        (t_ort, t_def, t_f32), (want, got, got_f32) = alternate(
            [lambda: ort_embed(texts, tok, sess), lambda: default.embed(texts),
             lambda: exact.embed(texts)], args.runs)
        emit(f"| {len(texts):,} texts | {threads} | {ms(t_ort)} | {ms(t_def)} "
             f"(**{t_ort / t_def:.2f}×**), min cos {min_cosine(got, want):.7f} | {ms(t_f32)} "
             f"({t_ort / t_f32:.2f}×), min cos {min_cosine(got_f32, want):.7f} |")
    emit()

    # One text at a time, as a service answering single requests calls it: per-call medians,
    # the sides alternating in passes of CALLS calls.
    import gen_shipped
    from onnxruntime_baseline import head_scores
    merged = gen_shipped.merged_model(MODEL, ROOT / "models/tuned/adapter.safetensors").SerializeToString()
    one = [SHORT_TEXT]
    assert len(tok.encode(SHORT_TEXT).ids) == 16
    emit(f"| one text of 16 tokens, in process (median per call, {CALLS} calls a pass) | threads "
         "| tokenizers + onnxruntime f32 | emotions default | ratio |")
    emit("|---|---|---|---|---|")
    for threads in (1, 2):
        sess, tuned = session(threads), session(threads, merged)
        head = session(threads, str(ROOT / "models/tuned/head.onnx"))
        clf = emotions.Classifier(threads=threads)
        cases = [
            ("`embed` (MiniLM)", lambda: ort_embed(one, tok, sess), lambda: clf.embed(one)),
            ("`scores` (the tuned default: MiniLM, adapter, head)",
             lambda: head_scores(head, ort_embed(one, tok, tuned)),
             lambda: clf.scores(one)),
        ]
        for name, ort_fn, our_fn in cases:
            (t_ort, t_our), (want, got) = alternate(
                [lambda: [ort_fn() for _ in range(CALLS)][-1],
                 lambda: [our_fn() for _ in range(CALLS)][-1]], max(args.runs, 5))
            worst = float(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)).max())
            emit(f"| {name}, max abs diff {worst:.1e} | {threads} | {ms(t_ort / CALLS)} | "
                 f"{ms(t_our / CALLS)} | **{t_ort / t_our:.2f}×** |")
    emit()

    # The GIL: if it were held while the encoder runs, two Python threads would take as long
    # as one doing both halves.
    clf = emotions.Classifier(threads=1)
    half = len(texts) // 2
    parts = [None, None]

    def one_thread():
        return clf.embed(texts)

    def two_threads():
        def run(i, chunk):
            parts[i] = clf.embed(chunk)
        workers = [threading.Thread(target=run, args=(0, texts[:half])),
                   threading.Thread(target=run, args=(1, texts[half:]))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return np.concatenate(parts)

    (t_one, t_two), (whole, halves) = alternate([one_thread, two_threads], args.runs)
    if not np.array_equal(whole, halves):
        sys.exit(f"two threads' halves differ from one thread's: max |Δ| "
                 f"{np.abs(whole - halves).max():.3e}")
    emit("| the GIL: one `Classifier(threads=1)` | one Python thread, all texts | two Python "
         "threads, a half each | two / one |")
    emit("|---|---|---|---|")
    emit(f"| {len(texts):,} texts | {ms(t_one)} | {ms(t_two)} | **{t_two / t_one:.2f}×** "
         "(results identical) |")
    emit()

    e_setup, e_first = fresh(SETUP_EMOTIONS)
    o_setup, o_first = fresh(SETUP_ORT)
    emit("| set-up, fresh interpreter (median of 3) | onnxruntime | emotions | ratio |")
    emit("|---|---|---|---|")
    emit(f"| `import emotions; emotions.Classifier()` / `import onnxruntime, tokenizers`, "
         f"tokenizer + session | {ms(o_setup)} | {ms(e_setup)} | {o_setup / e_setup:.2f}× |")
    emit(f"| then the first text's `embed` | {ms(o_first)} | {ms(e_first)} | "
         f"{o_first / e_first:.2f}× |")
    emit(f"| both | {ms(o_setup + o_first)} | {ms(e_setup + e_first)} | "
         f"{(o_setup + o_first) / (e_setup + e_first):.2f}× |")

    perf_doc.record("python_side_by_side.py", "\n".join(REPORT))


if __name__ == "__main__":
    main()
