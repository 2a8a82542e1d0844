"""Shared paths and the element-by-element comparison the binding's tests hold it to."""
import os
import pathlib
import shutil

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "crates/conformance/fixtures"


def fixture(rel):
    return FIXTURES / rel


def assert_close(got, want, tolerance, what):
    """Every element of `got` within `tolerance` of `want`; the failure names the worst one."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    diff = np.abs(got - want)
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    assert diff[worst] <= tolerance, (
        f"{what}: worst element {tuple(int(i) for i in worst)}: got {got[worst]!r}, "
        f"expected {want[worst]!r}, |diff| {diff[worst]:.3e} > tolerance {tolerance:.0e}"
    )
    return float(diff[worst])


def min_cosine(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    num = (got * want).sum(axis=1)
    den = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    return float((num / den).min())


@pytest.fixture(scope="session")
def cli():
    """The `emotions` binary to compare with: $EMOTIONS_CLI, else the workspace's build."""
    given = os.environ.get("EMOTIONS_CLI")
    if given:
        return given
    for profile in ("release", "debug"):
        path = ROOT / "target" / profile / "emotions"
        if path.is_file():
            return str(path)
    found = shutil.which("emotions")
    if found:
        return found
    pytest.fail("no emotions binary: build it (cargo build) or set EMOTIONS_CLI")
