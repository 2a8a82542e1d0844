"""long_texts="chunk": a long text's late emotion is found, texts that fit are unchanged, and
the arguments are checked."""
import pathlib
import re

import numpy as np
import pytest

import emotions

ROOT = pathlib.Path(__file__).resolve().parents[3]
SHORT = ["Thank you so much!", "I am so sorry for your loss", "what time is it?"]


def late_thanks(words=1500):
    """Neutral go_emotions train texts (label 27 alone), then a last paragraph of thanks."""
    filler = []
    for line in (ROOT / "../shared/data/go_emotions/train.tsv").read_text(encoding="utf-8").splitlines():
        text, labels, _ = line.split("\t")
        if labels == "27":
            filler.extend(text.split())
        if len(filler) >= words:
            break
    return " ".join(filler[:words]) + (
        " Thank you so much for all your help! I really appreciate everything you did for us."
        " Thanks again, we are so grateful."
    )


def test_chunk_finds_the_late_emotion():
    text = late_thanks()
    assert "gratitude" not in emotions.Classifier().predict(text).labels
    assert "gratitude" in emotions.Classifier(long_texts="chunk").predict(text).labels
    mean = emotions.Classifier(long_texts="chunk", aggregate="mean").scores([text])
    top = emotions.Classifier(long_texts="chunk").scores([text])
    assert np.all(mean <= top)


def test_texts_that_fit_are_unchanged():
    plain, chunk = emotions.Classifier(), emotions.Classifier(long_texts="chunk", stride=10)
    assert np.array_equal(plain.scores(SHORT), chunk.scores(SHORT))
    assert np.array_equal(plain.embed(SHORT), chunk.embed(SHORT))


def test_chunked_embedding_reads_the_whole_text():
    text = late_thanks()
    first = emotions.Classifier().embed([text])[0]
    whole = emotions.Classifier(long_texts="chunk").embed([text])[0]
    assert abs(float(np.linalg.norm(whole)) - 1.0) < 1e-5
    assert float(first @ whole) < 0.999


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"long_texts": "sideways"}, 'long_texts: expected \'truncate\' or \'chunk\', found "sideways"'),
        ({"stride": 8}, "stride: only with long_texts='chunk'"),
        ({"aggregate": "mean"}, "aggregate: only with long_texts='chunk'"),
        ({"long_texts": "chunk", "aggregate": "median"}, "aggregate: expected 'max' or 'mean'"),
        ({"long_texts": "chunk", "stride": -1}, "stride: expected a whole number >= 0, found -1"),
        ({"long_texts": "chunk", "stride": 254}, "a stride of 254 tokens: expected fewer than the 254"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        emotions.Classifier(**kwargs)
