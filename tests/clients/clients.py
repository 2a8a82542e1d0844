"""The real clients, unmodified, against a live `emotions serve`.

Usage: clients.py EMOTIONS_BINARY

Starts the server on a free loopback port, then checks that
- huggingface_hub's InferenceClient.text_classification (with and without top_k) returns the
  scores `emotions classify` prints, within 1e-6;
- InferenceClient.feature_extraction and OpenAI's embeddings.create (float and base64) return
  the embeddings `emotions embed` prints, within 1e-6;
- OpenAI's models.list names the encoder, and embeddings.create with the token ids TEI's
  /tokenize gives returns the same embeddings as the texts;
- TEI's /tokenize, /decode and /embed_all over plain HTTP (urllib), as TEI's users call them: the
  ids round-trip through /decode and /tokenize, and /embed_all's token vectors, mean-pooled and normalised as MiniLM
  pools them, are the embeddings.
Prints one line per check and a closing "N passed, N failed" line; exits 1 on any failure.
"""

import base64
import json
import os
import subprocess
import sys

import urllib.request
import numpy as np
from huggingface_hub import InferenceClient
from openai import OpenAI

TEXTS = [
    "Thank you so much, this is wonderful!",
    "I can't believe they cancelled the show, I'm so angry.",
    "hmm, not sure what to think about that",
]
TOLERANCE = 1e-6


def run_cli(binary, *args):
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def start_server(binary):
    server = subprocess.Popen(
        [binary, "serve", "--addr", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = server.stderr.readline()
    marker = "http://127.0.0.1:"
    if marker not in line:
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    port = int(line.split(marker)[1].split(" ")[0])
    return server, f"http://127.0.0.1:{port}"


def main():
    binary = os.path.abspath(sys.argv[1])
    # Offline: the clients must never reach for a hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    want_scores = [row["scores"] for row in run_cli(binary, "classify", *sum((["--text", t] for t in TEXTS), []))]
    want_embeddings = np.array(run_cli(binary, "embed", *sum((["--text", t] for t in TEXTS), [])), dtype=np.float32)
    server, url = start_server(binary)
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)

    try:
        hf = InferenceClient(model=url)
        for i, text in enumerate(TEXTS):
            got = hf.text_classification(text)
            worst = max(abs(e.score - want_scores[i][e.label]) for e in got)
            ordered = all(a.score >= b.score for a, b in zip(got, got[1:]))
            check(
                f"huggingface_hub text_classification, text {i}",
                len(got) == 28 and ordered and worst <= TOLERANCE,
                f"{len(got)} labels, top {got[0].label} {got[0].score:.6f}, worst |diff| {worst:.2e}",
            )
        top = hf.text_classification(TEXTS[0], top_k=3)
        ranked = sorted(want_scores[0].items(), key=lambda kv: -kv[1])[:3]
        check(
            "huggingface_hub text_classification top_k=3",
            [e.label for e in top] == [k for k, _ in ranked]
            and max(abs(e.score - s) for e, (_, s) in zip(top, ranked)) <= TOLERANCE,
            ", ".join(f"{e.label} {e.score:.6f}" for e in top),
        )
        for i, text in enumerate(TEXTS):
            got = np.asarray(hf.feature_extraction(text), dtype=np.float32).reshape(-1)
            worst = float(np.max(np.abs(got - want_embeddings[i])))
            check(
                f"huggingface_hub feature_extraction, text {i}",
                got.shape == (384,) and worst <= TOLERANCE,
                f"shape {got.shape}, worst |diff| {worst:.2e}",
            )
        oa = OpenAI(base_url=url + "/v1", api_key="not-needed")
        for fmt in ["float", "base64", None]:
            kwargs = {} if fmt is None else {"encoding_format": fmt}
            resp = oa.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, **kwargs)
            # Asked for explicitly, base64 comes back as the strings; left to the client's
            # default, the client asks for base64 and decodes it itself.
            got = np.array(
                [
                    np.frombuffer(base64.b64decode(d.embedding), dtype="<f4")
                    if isinstance(d.embedding, str)
                    else d.embedding
                    for d in resp.data
                ],
                dtype=np.float32,
            )
            worst = float(np.max(np.abs(got - want_embeddings)))
            check(
                f"openai embeddings.create encoding_format={fmt or '(client default)'}",
                got.shape == want_embeddings.shape
                and worst <= TOLERANCE
                and resp.usage.prompt_tokens > len(TEXTS) * 2,
                f"shape {got.shape}, worst |diff| {worst:.2e}, prompt_tokens {resp.usage.prompt_tokens}",
            )
        models = oa.models.list()
        ids = [m.id for m in models.data]
        check("openai models.list", ids == ["all-MiniLM-L6-v2"], f"{ids}")

        # TEI's tokenizer routes, as a TEI user calls them: plain HTTP.
        def post(path, body):
            req = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())

        tokens = post("/tokenize", {"inputs": TEXTS})
        token_ids = [[t["id"] for t in row] for row in tokens]
        spans_ok = all(
            t["special"] == (t["start"] is None)
            and (t["special"] or text.encode()[t["start"]:t["stop"]].decode() == t["text"])
            for row, text in zip(tokens, TEXTS)
            for t in row
        )
        check(
            "TEI /tokenize",
            len(tokens) == len(TEXTS) and spans_ok and all(r[0]["text"] == "[CLS]" and r[-1]["text"] == "[SEP]" for r in tokens),
            f"{[len(r) for r in tokens]} tokens, offsets match the texts: {spans_ok}",
        )
        decoded = post("/decode", {"ids": token_ids})
        again = [[t["id"] for t in row] for row in post("/tokenize", {"inputs": decoded})]
        check(
            "TEI /decode of /tokenize's ids, tokenised again",
            again == token_ids,
            f"{decoded[1]!r}",
        )
        resp = oa.embeddings.create(model="all-MiniLM-L6-v2", input=token_ids, encoding_format="float")
        got = np.array([d.embedding for d in resp.data], dtype=np.float32)
        worst = float(np.max(np.abs(got - want_embeddings)))
        check(
            "openai embeddings.create with token ids",
            got.shape == want_embeddings.shape
            and worst <= TOLERANCE
            and resp.usage.prompt_tokens == sum(map(len, token_ids)),
            f"worst |diff| {worst:.2e} from the texts' embeddings, prompt_tokens {resp.usage.prompt_tokens}",
        )
        states = post("/embed_all", {"inputs": TEXTS})
        pooled = np.array([np.asarray(s, dtype=np.float32).mean(0) for s in states])
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        worst = float(np.max(np.abs(pooled - want_embeddings)))
        check(
            "TEI /embed_all, mean-pooled",
            [len(s) for s in states] == [len(r) for r in token_ids]
            and all(len(v) == 384 for s in states for v in s)
            and worst <= TOLERANCE,
            f"{[len(s) for s in states]} token vectors, pooled worst |diff| {worst:.2e}",
        )
    finally:
        server.terminate()
        server.wait(timeout=30)

    passed = sum(results)
    failed = len(results) - passed
    print(f"clients: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
