"""Shapes, dtypes and the pipeline-compatible call."""
import numpy as np
import pytest

import emotions

TEXTS = ["Thank you so much!", "I am so sorry for your loss", "This is disgusting.", ""]


@pytest.fixture(scope="module")
def clf():
    return emotions.Classifier()


def test_pipeline_shape(clf):
    out = clf(TEXTS)
    scores = clf.scores(TEXTS)
    assert isinstance(out, list) and len(out) == len(TEXTS)
    for row, want in zip(out, scores):
        assert [sorted(d) for d in row] == [["label", "score"]] * 28
        assert sorted(d["label"] for d in row) == sorted(emotions.LABELS)
        got = [d["score"] for d in row]
        assert got == sorted(got, reverse=True)
        by_label = {d["label"]: d["score"] for d in row}
        np.testing.assert_array_equal([by_label[l] for l in emotions.LABELS], want)
    assert out[0][0]["label"] == "gratitude"


def test_a_single_text_gives_one_result_not_a_list(clf):
    assert clf("Thank you so much!") == clf(["Thank you so much!"])[0]
    assert clf.predict("Thank you so much!").labels == clf.predict(["Thank you so much!"])[0].labels
    np.testing.assert_array_equal(clf.scores("hi"), clf.scores(["hi"])[0])
    np.testing.assert_array_equal(clf.embed("hi"), clf.embed(["hi"])[0])


def test_dtypes_and_shapes(clf):
    e = clf.embed(TEXTS)
    assert e.dtype == np.float32 and e.shape == (4, 384) and e.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    s = clf.scores(TEXTS)
    assert s.dtype == np.float32 and s.shape == (4, 28)
    assert ((0 <= s) & (s <= 1)).all()
    assert clf.embed("x").shape == (384,) and clf.scores("x").shape == (28,)
    assert clf.embed([]).shape == (0, 384) and clf.scores([]).shape == (0, 28)
    assert clf.scores(embeddings=e).shape == (4, 28)
    assert clf.scores(embeddings=e.tolist()).shape == (4, 28)
    # A strided view is read as its values.
    wide = np.repeat(e, 2, axis=1)[:, ::2]
    np.testing.assert_array_equal(clf.scores(embeddings=wide), clf.scores(embeddings=e))


def test_predictions_follow_the_thresholds(clf):
    predictions = clf.predict(TEXTS)
    scores = clf.scores(TEXTS)
    thresholds = clf.thresholds
    assert list(thresholds) == emotions.LABELS
    for p, row in zip(predictions, scores):
        assert list(p.scores) == emotions.LABELS
        np.testing.assert_array_equal(list(p.scores.values()), row)
        above = {l for l, s in zip(emotions.LABELS, row) if s >= thresholds[l]}
        assert set(p.labels) <= above | {"neutral"}
        assert p.labels == sorted(p.labels, key=lambda l: -p.scores[l])
        assert p.to_dict() == {"labels": p.labels, "scores": p.scores}
    assert "gratitude" in predictions[0].labels


def test_policies():
    top = emotions.Classifier(top_k=3)
    assert [len(p.labels) for p in top.predict(TEXTS)] == [3] * 4
    assert top.thresholds is None
    fixed = emotions.Classifier(threshold=0.0)
    assert fixed.thresholds == {l: 0.0 for l in emotions.LABELS}
    assert len(fixed.predict("hi").labels) == 28
    given = emotions.Classifier(thresholds={l: 0.99 for l in emotions.LABELS})
    assert list(given.thresholds.values()) == pytest.approx([0.99] * 28)
    listed = emotions.Classifier(thresholds=[0.99] * 28)
    assert listed.thresholds == given.thresholds


def test_thresholds_file(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text("[" + ", ".join(["0.25"] * 28) + "]")
    assert set(emotions.Classifier(thresholds=path).thresholds.values()) == {0.25}
    assert set(emotions.Classifier(thresholds=str(path)).thresholds.values()) == {0.25}


def test_any_iterable_streams_in_chunks_with_the_same_results(clf):
    # More than one chunk (1,024 texts) from a generator, against the same list in one call.
    texts = [f"text number {i} is {'great' if i % 3 else 'awful'}" for i in range(2100)]
    from_list = clf.scores(texts)
    from_generator = clf.scores(t for t in texts)
    np.testing.assert_array_equal(from_generator, from_list)
    np.testing.assert_array_equal(clf.embed(iter(texts[:1500])), clf.embed(texts[:1500]))
    assert len(clf(tuple(texts[:1030]))) == 1030


def test_labels_and_metadata(clf):
    assert clf.labels == emotions.LABELS and len(emotions.LABELS) == 28
    assert clf.precision in ("int16", "int8", "f32")
    assert clf.isa == emotions.available_isas()[0]
    assert emotions.available_isas()[-1] == "portable"
    assert emotions.Classifier(threads=1, precision="f32").threads == 1
    assert "Classifier(" in repr(clf) and "Prediction(labels=[" in repr(clf.predict("hi"))
