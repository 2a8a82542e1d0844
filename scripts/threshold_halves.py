#!/usr/bin/env python3
"""How well do thresholds tuned on dev carry to rows they were not tuned on?

For each model's dev scores (the JSON lines `emotions classify --texts dev.txt --model M
--output M.jsonl` writes), split dev in random halves, tune thresholds on one half, score the
macro-F1 on the other, both ways, over --repeats halvings. Compares one tuning (the grid
argmax `emotions tune` does) with bagged tuning (the mean threshold over --resamples bootstrap
resamples, what `emotions tune --bootstrap` does, with numpy's generator instead of the
binary's). Reads dev only.

    python3 scripts/threshold_halves.py ../shared/data/go_emotions/dev.tsv a.jsonl b.jsonl
"""
import argparse
import json

import numpy as np

GRID = np.arange(1, 100) / 100


def f1(scores, gold, thresholds):
    pred = scores >= thresholds
    tp = (pred & gold).sum(0)
    fp = (pred & ~gold).sum(0)
    fn = (~pred & gold).sum(0)
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def tune(scores, gold):
    """Per label, the grid threshold of highest F1; ties to the one nearest 0.5."""
    curves = np.stack([f1(scores, gold, np.full(scores.shape[1], g)) for g in GRID])
    best = np.empty(scores.shape[1])
    for k in range(scores.shape[1]):
        ties = GRID[curves[:, k] >= curves[:, k].max() - 1e-12]
        best[k] = ties[np.argmin(abs(ties - 0.5))]
    return best


def bagged(scores, gold, resamples, rng):
    picks = [rng.integers(0, len(scores), len(scores)) for _ in range(resamples)]
    return np.mean([tune(scores[i], gold[i]) for i in picks], 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("split", help="dev.tsv (text, label ids, id)")
    ap.add_argument("scores", nargs="+", help="emotions classify JSON lines, one per dev row")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--resamples", type=int, default=30)
    args = ap.parse_args()
    rows = [line.rstrip("\n").split("\t") for line in open(args.split, encoding="utf-8")]
    for path in args.scores:
        lines = [json.loads(line)["scores"] for line in open(path, encoding="utf-8")]
        if len(lines) != len(rows):
            raise SystemExit(f"{path}: expected {len(rows)} lines (one per dev row), found {len(lines)}")
        labels = list(lines[0])
        scores = np.array([[d[label] for label in labels] for d in lines])
        gold = np.zeros_like(scores, dtype=bool)
        for i, row in enumerate(rows):
            for j in row[1].split(","):
                gold[i, int(j)] = True
        rng = np.random.default_rng(0)
        single, bag = [], []
        for _ in range(args.repeats):
            perm = rng.permutation(len(scores))
            halves = (perm[: len(perm) // 2], perm[len(perm) // 2 :])
            for a, b in (halves, halves[::-1]):
                single.append(f1(scores[b], gold[b], tune(scores[a], gold[a])).mean())
                bag.append(f1(scores[b], gold[b], bagged(scores[a], gold[a], args.resamples, rng)).mean())
        in_sample = f1(scores, gold, tune(scores, gold)).mean()
        print(
            f"{path}: tuned on all of dev {in_sample:.4f} (in sample); on the other half: "
            f"one tuning {np.mean(single):.4f}, bagged {np.mean(bag):.4f} "
            f"(difference {np.mean(bag) - np.mean(single):+.4f} ± {np.std(np.array(bag) - single) / np.sqrt(len(bag)):.4f})"
        )


if __name__ == "__main__":
    main()
