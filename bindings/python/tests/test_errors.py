"""Bad input is a Python exception with the library's message, never a crash."""
import numpy as np
import pytest

import emotions
from conftest import fixture


@pytest.fixture(scope="module")
def clf():
    return emotions.Classifier()


def test_type_errors(clf):
    with pytest.raises(TypeError, match=r"texts\[1\]: expected str, found int"):
        clf.embed(["ok", 5])
    with pytest.raises(TypeError, match="texts: expected a str or an iterable of str, found int"):
        clf.scores(5)
    with pytest.raises(TypeError, match="embeddings: expected float32 or float64, found int64"):
        clf.scores(embeddings=np.zeros((1, 384), dtype=np.int64))
    with pytest.raises(TypeError, match="thresholds: expected a path"):
        emotions.Classifier(thresholds=0.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"top_k": 0}, "top_k: expected 1 to 28, found 0"),
        ({"top_k": 29}, "top_k: expected 1 to 28, found 29"),
        ({"threads": 0}, "threads: expected 1 to 256, found 0"),
        ({"precision": "int4"}, "precision: expected 'int16', 'int8' or 'f32', found \"int4\""),
        ({"threshold": 0.5, "top_k": 2}, "at most one of thresholds, threshold and top_k"),
        ({"threshold": 1.5}, r"must be finite and in \[0, 1\], found 1.5"),
        ({"thresholds": [0.5] * 27}, "thresholds: expected 28 thresholds in label order, found 27"),
        ({"thresholds": {"joy": 0.5}}, "thresholds: label 'admiration' is missing"),
    ],
)
def test_bad_arguments_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        emotions.Classifier(**kwargs)


def test_bad_embeddings_are_value_errors(clf):
    with pytest.raises(ValueError, match=r"embeddings: expected shape \(N, 384\), found \[2, 383\]"):
        clf.scores(embeddings=np.zeros((2, 383), dtype=np.float32))
    with pytest.raises(ValueError, match=r"embeddings: expected shape \(N, 384\), found \[384\]"):
        clf.scores(embeddings=np.zeros(384, dtype=np.float32))
    x = np.zeros((3, 384), dtype=np.float32)
    x[2, 7] = np.nan
    with pytest.raises(ValueError, match="embeddings: row 2, column 7: expected a finite number, found NaN"):
        clf.scores(embeddings=x)
    y = np.zeros((2, 384))
    y[1, 3] = 1e300
    with pytest.raises(ValueError, match="embeddings: row 1, column 3: expected a finite number within float32's range, found 1e300"):
        clf.scores(embeddings=y)
    with pytest.raises(ValueError, match="give exactly one of texts and embeddings"):
        clf.scores()
    with pytest.raises(ValueError, match="give exactly one of texts and embeddings"):
        clf.scores(["x"], embeddings=np.zeros((1, 384), dtype=np.float32))


def test_missing_files_are_file_not_found_errors(tmp_path):
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(FileNotFoundError, match="nowhere.onnx"):
        emotions.Classifier(model=missing)
    with pytest.raises(FileNotFoundError, match="thresholds.json"):
        emotions.Classifier(thresholds=tmp_path / "thresholds.json")
    with pytest.raises(FileNotFoundError, match="encoder folder is missing model.onnx"):
        emotions.Classifier(encoder=tmp_path)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("width_383", "383"),
        ("unknown_op", "unknown_op.onnx"),
        ("int64_input", "int64_input.onnx"),
        ("missing_grief", "grief"),
        ("rank_3", "rank_3.onnx"),
    ],
)
def test_refused_models_are_model_errors(bad, message):
    with pytest.raises(emotions.ModelError, match=message):
        emotions.Classifier(model=fixture(f"heads/bad/{bad}.onnx"))
    assert issubclass(emotions.ModelError, Exception)


def test_a_file_that_is_not_a_model_is_a_model_error(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(emotions.ModelError, match="model.onnx"):
        emotions.Classifier(model=path)


def test_errors_leave_the_classifier_usable(clf):
    want = clf.scores(["still fine"])
    with pytest.raises(TypeError):
        clf.scores(["a"] * 1500 + [None])
    np.testing.assert_array_equal(clf.scores(["still fine"]), want)
