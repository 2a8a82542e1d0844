"""The binding against onnxruntime's reference outputs (crates/conformance/fixtures), at the
tolerances the Rust conformance tests state, on every instruction-set class this CPU runs."""
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import emotions
from conftest import assert_close, fixture, min_cosine

TEXTS = json.loads(fixture("encoder/texts.json").read_text(encoding="utf-8"))
# As crates/conformance/tests/{encoder,shipped}.rs and docs/CONFORMANCE.md: the exact mode,
# the 16-bit integer one, and 8-bit activations (the default on AVX-512 VNNI; int16 elsewhere).
EMBEDDING_TOLERANCE = {"f32": 1e-4, "int16": 5e-4, "int8": 6e-3}
TUNED_SCORE_TOLERANCE = {"f32": 1e-5, "int16": 1e-3, "int8": 3e-2}
HEAD_TOLERANCE = 1e-6
MIN_COSINE = {"f32": 0.99999, "int16": 0.99999, "int8": 0.999}


@pytest.mark.parametrize("precision", ["f32", "int16", "int8"])
def test_embeddings_match_onnxruntime(precision):
    got = emotions.Classifier(precision=precision).embed(TEXTS)
    want = np.load(fixture("encoder/embeddings.npy"))
    assert got.dtype == np.float32
    assert_close(got, want, EMBEDDING_TOLERANCE[precision], f"embed, {precision}")
    assert min_cosine(got, want) >= MIN_COSINE[precision]


@pytest.mark.parametrize("precision", ["f32", "int16", "int8"])
def test_tuned_text_scores_match_onnxruntime(precision):
    got = emotions.Classifier(precision=precision).scores(TEXTS)
    want = np.load(fixture("shipped/tuned_text_scores.npy"))
    assert_close(got, want, TUNED_SCORE_TOLERANCE[precision], f"scores of texts, {precision}")


@pytest.mark.parametrize(
    "head", ["linear_classifier_shuffled", "matmul_sigmoid_shuffled", "gemm_single_output"]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_head_scores_match_onnxruntime(head, dtype):
    clf = emotions.Classifier(model=fixture(f"heads/{head}.onnx"))
    x = np.load(fixture("heads/inputs.npy")).astype(dtype)
    got = clf.scores(embeddings=x)
    assert got.dtype == np.float32 and got.shape == (x.shape[0], 28)
    want = np.load(fixture(f"heads/{head}.scores.npy"))
    assert_close(got, want, HEAD_TOLERANCE, f"{head} scores, {np.dtype(dtype).name} input")


def test_default_head_scores_match_onnxruntime():
    # The plain head takes the plain embeddings, as `emotions classify --embeddings` does: its
    # reference inputs are the plain encoder's reference embeddings (gen_shipped.py).
    x = np.load(fixture("encoder/embeddings.npy"))
    got = emotions.Classifier().scores(embeddings=x)
    want = np.load(fixture("shipped/default_head.scores.npy"))
    assert_close(got, want, HEAD_TOLERANCE, "default head scores")


# Each class in its own process: the class is read once per process (EMOTIONS_ISA).
ISA_RUN = """
import json, sys
import numpy as np
import emotions
isa, precision, texts, out = sys.argv[1:]
clf = emotions.Classifier(precision=precision)
assert clf.isa == isa, (clf.isa, isa)
texts = json.load(open(texts, encoding="utf-8"))
np.save(out + ".embed.npy", clf.embed(texts))
np.save(out + ".scores.npy", clf.scores(texts))
"""


@pytest.mark.parametrize("precision", ["f32", "int16"])
@pytest.mark.parametrize("isa", emotions.available_isas())
def test_every_isa_class_matches_onnxruntime(isa, precision, tmp_path):
    out = str(tmp_path / "run")
    texts = str(fixture("encoder/texts.json"))
    env = dict(os.environ, EMOTIONS_ISA=isa)
    subprocess.run([sys.executable, "-c", ISA_RUN, isa, precision, texts, out], check=True, env=env)
    got = np.load(out + ".embed.npy")
    want = np.load(fixture("encoder/embeddings.npy"))
    assert_close(got, want, EMBEDDING_TOLERANCE[precision], f"embed, {isa}, {precision}")
    assert min_cosine(got, want) >= MIN_COSINE[precision]
    scores = np.load(out + ".scores.npy")
    want_scores = np.load(fixture("shipped/tuned_text_scores.npy"))
    assert_close(scores, want_scores, TUNED_SCORE_TOLERANCE[precision], f"scores, {isa}, {precision}")


def test_a_class_this_cpu_lacks_is_refused():
    # EMOTIONS_ISA naming the other architecture's class is never run.
    other = "avx2" if platform.machine() in ("aarch64", "arm64") else "neon"
    code = "import emotions; emotions.Classifier()"
    env = dict(os.environ, EMOTIONS_ISA=other)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert other in run.stderr and "ModelError" in run.stderr, run.stderr
