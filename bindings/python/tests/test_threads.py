"""One Classifier shared between Python threads gives what one thread gets."""
import threading

import numpy as np
import pytest

import emotions
from conftest import fixture
import json

TEXTS = json.loads(fixture("encoder/texts.json").read_text(encoding="utf-8"))


def run_in_threads(work, parts):
    results, errors = [None] * len(parts), []

    def run(i):
        try:
            results[i] = work(parts[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("threads", [1, 2])
def test_two_threads_sharing_one_classifier_match_one_thread(threads):
    clf = emotions.Classifier(threads=threads)
    halves = [TEXTS[: len(TEXTS) // 2], TEXTS[len(TEXTS) // 2 :]]
    alone = clf.embed(TEXTS)
    shared = run_in_threads(clf.embed, halves)
    np.testing.assert_array_equal(np.concatenate(shared), alone)
    scores = run_in_threads(clf.scores, halves)
    np.testing.assert_array_equal(np.concatenate(scores), clf.scores(TEXTS))
    calls = run_in_threads(clf, halves)
    assert calls[0] + calls[1] == clf(TEXTS)


def test_many_threads_on_one_text_each():
    clf = emotions.Classifier(threads=1)
    texts = TEXTS[:16]
    want = clf.scores(texts)
    got = run_in_threads(clf.scores, texts)
    np.testing.assert_array_equal(np.stack(got), want)
