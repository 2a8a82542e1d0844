"""Reference token ids and embeddings for the default encoder (all-MiniLM-L6-v2 int8), made with
Python `tokenizers` + onnxruntime exactly as sentence-transformers would: truncate to
max_seq_length (256), sort by length, batches of 32 padded to their longest text, masked mean
pooling, L2 normalisation.

Run from the repository root (fixture generation only; see requirements.txt):

    /tmp/venv/bin/python crates/conformance/scripts/gen_encoder.py

Writes to crates/conformance/fixtures/encoder/:
  texts.json           the texts: a seeded sample of go_emotions test texts plus edge cases
  token_ids.json       their token ids (with [CLS]/[SEP], truncated)
  embeddings.npy       f32 [N, 384] reference embeddings
  test_split_ids.txt   for every line of ../shared/data/go_emotions/test.tsv: "<count> <fnv1a64>"
                       of its token ids (u32 little-endian), so every id is checked without
                       storing megabytes
"""
import json
import pathlib

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[3]
MODEL = ROOT / "models/minilm"
OUT = ROOT / "crates/conformance/fixtures/encoder"
DATA = ROOT / "../shared/data/go_emotions"
MAX_SEQ = json.loads((MODEL / "sentence_bert_config.json").read_text())["max_seq_length"]

EDGE_TEXTS = [
    "", " ", "a", "!", "?", "é", "😀", "\t", "  leading and trailing spaces  ",
    "tabs\tinside\ttext", "line\nbreak inside", "windows\r\nline break", "many     spaces    between",
    "\u00a0non-breaking\u00a0space", "zero\u200bwidth\u200bspace", "soft\u00adhyphen",
    "I love this so much!!! 😍😍😍", "🎉🎉 congrats 🎉🎉", "👍🏽 skin tone, 👨‍👩‍👧 family zwj",
    "🏳️‍🌈 flag", "❤️❤️❤️", "¯\\_(ツ)_/¯",
    "Café crème brûlée, naïve résumé", "ÀÉÎÕÜ UPPER ACCENTS", "Ångström Øresund Łódź",
    "Спасибо большое, это прекрасно", "ありがとう、とても嬉しいです", "谢谢你，我很高兴",
    "감사합니다 정말 좋아요", "شكرا جزيلا، هذا رائع", "תודה רבה", "धन्यवाद, यह अद्भुत है",
    "Ευχαριστώ πολύ", "ขอบคุณมาก", "mixed English и русский 和中文",
    "<b>bold</b> and <i>italic</i>", "<a href=\"https://example.com\">link</a> &amp; &lt;tag&gt;",
    "<script>alert('x')</script>", "&nbsp;&quot;quoted&quot;", "[NAME] said hi to [RELIGION]",
    "I don't know... it's \"fine\" I guess", "WHY THE FUCK IS THIS HAPPENING", "lol lmao rofl",
    "ok.", "10/10 would recommend", "$100 for 3.5 hours?! 50% off", "email me at a.b@example.com",
    "https://www.reddit.com/r/test/comments/abc123", "#hashtag @mention", "C++ and C# and F#",
    "wow" * 40, "x" * 300, "supercalifragilisticexpialidocious" * 5,
    " ".join(["word"] * 400), " ".join(["héllo wörld"] * 200), "😀" * 300,
    "\u0000control\u0001chars\u001f", "\ufeffBOM at start", "combining e\u0301 accent", "ﬁ ligature ℌ math 𝔸",
]


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for b in np.asarray(ids, dtype="<u4").tobytes():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def read_split(name):
    rows = []
    for line in (DATA / f"{name}.tsv").read_text(encoding="utf-8").split("\n"):
        if line:
            rows.append(line.split("\t")[0])
    return rows


def tokenizer():
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_SEQ)
    return tok


def embed(texts, tok, sess, batch_size=32):
    encs = tok.encode_batch(texts)
    order = np.argsort([len(e.ids) for e in encs], kind="stable")
    out = np.zeros((len(texts), 384), np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        longest = max(len(encs[i].ids) for i in idx)
        ids = np.zeros((len(idx), longest), np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for r, i in enumerate(idx):
            n = len(encs[i].ids)
            ids[r, :n] = encs[i].ids
            mask[r, :n] = 1
            types[r, :n] = encs[i].type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = sess.run(None, {k.name: feed[k.name] for k in sess.get_inputs()})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        out[idx] = pooled
    return out


def session():
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(MODEL / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tok = tokenizer()
    test = read_split("test")
    with open(OUT / "test_split_ids.txt", "w") as f:
        for enc in tok.encode_batch(test):
            f.write(f"{len(enc.ids)} {fnv1a64(enc.ids):016x}\n")
    rng = np.random.default_rng(20261126)
    sample = [test[i] for i in sorted(rng.choice(len(test), 160, replace=False))]
    texts = EDGE_TEXTS + sample
    (OUT / "texts.json").write_text(json.dumps(texts, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    (OUT / "token_ids.json").write_text(
        "[\n" + ",\n".join(json.dumps(e.ids) for e in tok.encode_batch(texts)) + "\n]\n")
    np.save(OUT / "embeddings.npy", embed(texts, tok, session()))
    print(f"{len(test)} test-split id hashes, {len(texts)} texts embedded")


if __name__ == "__main__":
    main()
