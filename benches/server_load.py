"""Latency of `emotions serve` under concurrent single-text requests.

Starts the release binary on a free loopback port, sends CLIENTS x REQUESTS `POST /classify`
requests (one go_emotions test text each, from CLIENTS threads), and prints the status counts,
throughput and latency percentiles. Standard library only.

    cargo build --release --bin emotions
    python3 benches/server_load.py [--bin PATH] [--clients 8] [--requests 100]
"""

import argparse
import json
import pathlib
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "../shared/data/go_emotions"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/emotions"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1, help="rounds against the same server; the first one meets cold plan caches")
    args = ap.parse_args()

    texts = [l.split("\t")[0] for l in (DATA / "test.tsv").read_text(encoding="utf-8").splitlines()]
    port = free_port()
    server = subprocess.Popen([args.bin, "serve", "--addr", f"127.0.0.1:{port}"], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(base + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit("server did not become healthy")

        rounds = []
        for _ in range(args.rounds):
            results = []
            lock = threading.Lock()

            def client(c):
                mine = []
                for i in range(args.requests):
                    text = texts[(c * args.requests + i) % len(texts)]
                    mine.append(post(base + "/classify", json.dumps({"inputs": text}).encode()))
                with lock:
                    results.extend(mine)

            threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rounds.append((results, time.perf_counter() - start))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    for r, (results, wall) in enumerate(rounds, 1):
        statuses = {}
        for st, _ in results:
            statuses[st] = statuses.get(st, 0) + 1
        lat = sorted(t for _, t in results)
        q = statistics.quantiles(lat, n=100)
        print(f"round {r}: {len(results)} requests from {args.clients} clients in {wall:.2f} s "
              f"({len(results) / wall:.0f} requests/s); statuses {statuses}; "
              f"latency p50 {q[49] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms")
    print(f"server exit code after SIGTERM: {server.returncode}")


if __name__ == "__main__":
    main()
