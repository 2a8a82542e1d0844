"""The binding gives what the `emotions` command line gives, on the conformance texts."""
import json
import subprocess

import numpy as np
import pytest

import emotions
from conftest import assert_close, fixture

# A text per line for the CLI: the fixture texts that hold no line break.
TEXTS = [
    t
    for t in json.loads(fixture("encoder/texts.json").read_text(encoding="utf-8"))
    if "\n" not in t and "\r" not in t
]
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "texts.txt"
    path.write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    return path


def run(cli, *args):
    return subprocess.run([cli, *args], check=True, capture_output=True, text=True).stdout


def test_the_texts_cover_the_fixture():
    assert len(TEXTS) >= 200


@pytest.mark.parametrize("precision", ["f32", "int16"])
def test_classify_matches_the_cli(cli, texts_file, precision):
    lines = run(cli, "classify", "--texts", str(texts_file), "--precision", precision).splitlines()
    want = [json.loads(l) for l in lines]
    got = emotions.Classifier(precision=precision).predict(TEXTS)
    assert len(got) == len(want) == len(TEXTS)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.labels == w["labels"], f"text {i} {TEXTS[i]!r}"
        assert list(g.scores) == list(w["scores"])
    assert_close(
        [list(g.scores.values()) for g in got],
        [list(w["scores"].values()) for w in want],
        TOLERANCE,
        f"classify scores, {precision}",
    )


@pytest.mark.parametrize("precision", ["f32", "int16"])
def test_embed_matches_the_cli(cli, texts_file, tmp_path, precision):
    out = tmp_path / "embeddings.npy"
    run(cli, "embed", "--texts", str(texts_file), "--precision", precision, "--output", str(out))
    got = emotions.Classifier(precision=precision).embed(TEXTS)
    assert_close(got, np.load(out), TOLERANCE, f"embed, {precision}")


def test_classify_embeddings_matches_the_cli(cli, tmp_path):
    x = np.load(fixture("encoder/embeddings.npy"))
    path = tmp_path / "x.npy"
    np.save(path, x)
    out = tmp_path / "scores.npy"
    run(cli, "classify", "--embeddings", str(path), "--output", str(out))
    assert_close(emotions.Classifier().scores(embeddings=x), np.load(out), TOLERANCE, "scores of embeddings")
