#!/usr/bin/env python3
"""Fails when a build of the Python binding alone would compile a dependency with other features
than `cargo test --workspace` does, and names what crates/feature-union/Cargo.toml must add.

Cargo resolves features per build. `pip install bindings/python` builds one package, so without
crates/feature-union it compiles every crate whose features differ, and everything above it, a
second time (.ci/run's Python stage took 7.75 min that way; with the union, maturin's build takes 37 s).
Usage: scripts/check_feature_union.py   (from anywhere; needs cargo)
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = "x86_64-unknown-linux-gnu"


def features(*args):
    """{package: {feature list, ...}}: a package can be built twice, for the host (build scripts,
    proc-macros) and for the target, with different features."""
    out = subprocess.run(
        ["cargo", "tree", *args, "--target", TARGET, "-e", "normal,build", "--prefix", "none",
         "-f", "{p}|{f}"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        if "|" not in line:
            continue
        package, feats = line.replace(" (*)", "").split("|")
        if str(ROOT) in package:  # a workspace member: rebuilt anyway
            continue
        found.setdefault(package, set()).add(feats)
    return found


workspace = features("--workspace", "-e", "dev")  # `cargo test` turns dev-dependencies on too
python = features("-p", "emotions-python")
drifted = [(p, sets, workspace.get(p, set())) for p, sets in sorted(python.items())
           if sets != workspace.get(p, set())]
for package, alone, together in drifted:
    print(f"{package}: features {sorted(alone)} when the Python binding is built alone, "
          f"{sorted(together)} in the workspace's build", file=sys.stderr)
if drifted:
    sys.exit(f"{len(drifted)} dependencies would be compiled twice in CI: add their workspace "
             "features to crates/feature-union/Cargo.toml")
print(f"feature union holds: {len(python)} dependencies of the Python binding, "
      "the same features as in the workspace's build")
