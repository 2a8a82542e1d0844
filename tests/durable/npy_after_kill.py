"""numpy, the reader users have, on a `.npy` left by `emotions classify` killed with SIGKILL.

Usage: python npy_after_kill.py EMOTIONS_BINARY DEV_TSV
At several points of a run, a kill -9; numpy must then load exactly the rows the header
counts, equal to an uninterrupted run's first rows, and `--resume` must complete the file to
the uninterrupted run's bytes.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

binary, dev = sys.argv[1], sys.argv[2]
work = tempfile.mkdtemp(prefix="emotions-durable-")
texts = os.path.join(work, "t.txt")
with open(dev, encoding="utf-8") as f, open(texts, "w", encoding="utf-8") as out:
    for line in list(f)[:400]:
        out.write(line.split("\t")[0] + "\n")
args = [binary, "classify", "--texts", texts, "--chunk-size", "16", "--threads", "1"]


def header_rows(path):
    try:
        with open(path, "rb") as f:
            head = f.read(128).decode("latin-1")
    except FileNotFoundError:
        return 0
    m = re.search(r"'shape': \((\d+),", head)
    return int(m.group(1)) if m else 0


whole = os.path.join(work, "whole.npy")
subprocess.run(args + ["--output", whole], check=True)
full = np.load(whole)
assert full.shape == (400, 28), full.shape
for at in (16, 130, 290):
    out = os.path.join(work, f"k{at}.npy")
    child = subprocess.Popen(args + ["--output", out], stderr=subprocess.DEVNULL)
    while header_rows(out) < at and child.poll() is None:
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    rows = header_rows(out)
    got = np.load(out)
    assert got.shape == (rows, 28), (got.shape, rows)
    assert np.array_equal(got, full[:rows]), f"killed at {at}: rows differ"
    subprocess.run(args + ["--output", out, "--resume"], check=True)
    with open(out, "rb") as a, open(whole, "rb") as b:
        assert a.read() == b.read(), f"killed at {at}: resumed file differs"
    print(f"killed after {rows} rows: numpy loads {rows} rows; --resume gives the same file")
