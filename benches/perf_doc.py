"""Writes a benchmark script's results into docs/PERFORMANCE.md, so a run needs no hand edits.

Each script's section is kept between markers, one per script and instruction-set class
(`<!-- begin onnxruntime_baseline.py avx2 -->` ... `<!-- end ... -->`), and is replaced
whole by the next run of the same script on the same class; everything outside the markers is
left as it is. A section says the commit (and whether the tree had changes), the date, the CPU
model, the class and the exact command.
"""
import datetime
import os
import pathlib
import platform
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs/PERFORMANCE.md"


def cpu_model():
    """The model name, with family and model: a virtual machine's "AMD EPYC" alone does not
    tell a Zen 3 (family 25, model 1) from a Zen 4 (family 25, model 17)."""
    try:
        fields = {}
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        if "model name" in fields:
            extra = [f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields]
            return fields["model name"] + (f" ({', '.join(extra)})" if extra else "")
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa_class():
    """The class the kernels run: EMOTIONS_ISA when set, else the widest this CPU has (the same
    rule as crates/kernels/src/isa.rs)."""
    forced = os.environ.get("EMOTIONS_ISA", "").strip().lower().replace("_", "-")
    if forced:
        return forced
    try:
        flags = set()
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        return "portable"
    avx2 = {"avx2", "fma"} <= flags
    avx512 = avx2 and {"avx512f", "avx512bw"} <= flags
    if avx512 and "avx512_vnni" in flags:
        return "avx512-vnni"
    if avx512:
        return "avx512"
    return "avx2" if avx2 else "portable"


def commit():
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{sha} (with uncommitted changes)" if dirty else sha


def record(script, markdown, argv=None, variant=None):
    """Replaces `script`'s section for this instruction-set class (and `variant`, such as a
    thread count, when a script is run several ways) with `markdown`."""
    isa = isa_class()
    key = f"{script} {isa}" + (f" {variant}" if variant else "")
    argv = argv if argv is not None else sys.argv
    env = f"EMOTIONS_ISA={os.environ['EMOTIONS_ISA']} " if os.environ.get("EMOTIONS_ISA") else ""
    command = env + " ".join(["python", *[str(a) for a in argv]])
    body = (
        f"<!-- begin {key} -->\n"
        f"### `{script}`, {isa} class" + (f", {variant}" if variant else "") + "\n\n"
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; kernels' class: **{isa}**\n"
        f"- commit {commit()}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
        f"- command: `{command}`\n\n"
        f"{markdown.strip()}\n"
        f"<!-- end {key} -->\n"
    )
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Performance\n\n## Runs\n\n"
    begin, end = f"<!-- begin {key} -->", f"<!-- end {key} -->"
    if begin in text and end in text:
        a = text.index(begin)
        b = text.index(end) + len(end) + 1
        text = text[:a] + body + text[b:]
    else:
        marker = "<!-- runs: new sections go above this line -->"
        if marker in text:
            text = text.replace(marker, body + "\n" + marker)
        else:
            text = text.rstrip() + "\n\n" + body
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}: {key}")
