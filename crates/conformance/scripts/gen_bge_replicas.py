"""Structural replicas of BAAI/bge-small-en-v1.5, exported by the real tools, with onnxruntime
reference embeddings. Hugging Face cannot be reached from here, so the weights are random; the
shape is bge-small's (hidden 384, 12 heads, intermediate 1536, 512 positions, CLS pooling,
normalised), and every graph comes from the exporter a user would run.

Fixture generation only: Python never runs inside emotions. Two interpreters, versions pinned:

    python3 -m venv /work/replica-venv
    /work/replica-venv/bin/pip install -r crates/conformance/scripts/requirements-replicas.txt
    python3 -m venv /work/replica-venv-t440
    echo /work/replica-venv/lib/python3.11/site-packages > \\
        /work/replica-venv-t440/lib/python3.11/site-packages/base.pth
    /work/replica-venv-t440/bin/pip install -r crates/conformance/scripts/requirements-replicas-t440.txt

The second one shares the first one's torch and adds transformers 4.40 (the 2023-24 export that
Xenova's repositories hold) and optimum-onnx. Then, from the repository root:

    /work/replica-venv/bin/python crates/conformance/scripts/gen_bge_replicas.py all \\
        --layers 2 --cut-vocab --out crates/conformance/fixtures/bge \\
        --python-t440 /work/replica-venv-t440/bin/python

writes the committed 2-layer fixtures, and `--layers 12 --out target/bge-full` (no
`--cut-vocab`) the full-depth replicas used for speed and long texts (not committed: 130 MB
each).

Layout of `--out`, one sentence-transformers folder, as BAAI's repository has it:

    config.json tokenizer.json sentence_bert_config.json modules.json 1_Pooling/config.json
    onnx/model.onnx            optimum-onnx `main_export`, opset 18 (BAAI's own onnx/ file)
    onnx/model_quantized.onnx  onnxruntime quantize_dynamic of onnx/model.onnx (Xenova's)
    legacy_t440.onnx           transformers 4.40 eager, torch.onnx.export opset 14 (TorchScript)
    legacy_t5.onnx             transformers 5.x, torch.onnx.export(dynamo=False), opset 17
    dynamo.onnx                transformers 5.x, torch.onnx.export(dynamo=True), opset 20
    reference/texts.json       the texts
    reference/<file>.npy       onnxruntime's embeddings of the texts, per ONNX file (f32 [N, 384])
    reference/head_scores_<file>.npy  P(pos) of the card-format fixture head
                               (heads/matmul_sigmoid_shuffled) on those embeddings, f32 [N, 28],
                               label order

Weights: seeded normal(0, 0.02), as BERT initialises, then rounded to 4 significant bits (so
that git compresses them; the arithmetic is ordinary f32 and no weight column is an int8 grid).
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
MINILM = ROOT / "models/minilm"
ENCODER_TEXTS = ROOT / "crates/conformance/fixtures/encoder/texts.json"
HEAD = ROOT / "crates/conformance/fixtures/heads/matmul_sigmoid_shuffled.onnx"
LABELS = (ROOT / "../shared/data/go_emotions/emotions.txt").read_text().split()
SEED = 20261127
MAX_SEQ = 512
F32_FILES = ["onnx/model.onnx", "legacy_t440.onnx", "legacy_t5.onnx", "dynamo.onnx"]
ALL_FILES = F32_FILES + ["onnx/model_quantized.onnx"]


def texts():
    """Fixture texts: the encoder fixture's, plus long ones that reach 512 tokens."""
    base = json.loads(ENCODER_TEXTS.read_text())
    picked = [t for t in base if t.strip()][:40]
    words = "i feel so happy and grateful but also a little nervous about tomorrow".split()
    picked.append(" ".join(words[i % len(words)] for i in range(300)))
    picked.append(" ".join(words[(i * 7) % len(words)] for i in range(700)))
    return picked


def cut_tokenizer(tok_json, keep_ids):
    """A WordPiece tokenizer.json whose vocabulary holds only `keep_ids` (renumbered in order).
    Greedy longest-match segmentation over a subset that contains every piece the texts use
    gives the same pieces, so the texts tokenise as before."""
    vocab = tok_json["model"]["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    kept = sorted(keep_ids)
    new_id = {old: new for new, old in enumerate(kept)}
    tok_json["model"]["vocab"] = {by_id[old]: new for old, new in new_id.items()}
    for added in tok_json.get("added_tokens", []):
        added["id"] = new_id[added["id"]]
    post = tok_json.get("post_processor") or {}
    for name, special in post.get("special_tokens", {}).items():
        special["ids"] = [new_id[i] for i in special["ids"]]
    return tok_json


def build(args):
    import numpy as np
    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok_json = json.loads((MINILM / "tokenizer.json").read_text())
    vocab_size = len(tok_json["model"]["vocab"])
    if args.cut_vocab:
        full = Tokenizer.from_str(json.dumps(tok_json))
        full.no_truncation()
        used = set(range(104))  # [PAD], [unused*], [UNK], [CLS], [SEP], [MASK]
        for enc in full.encode_batch(texts()):
            used.update(enc.ids)
        tok_json = cut_tokenizer(tok_json, used)
        vocab_size = len(tok_json["model"]["vocab"])
    tok_json["truncation"] = None
    tok_json["padding"] = None
    (out / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False))

    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=384, num_hidden_layers=args.layers,
        num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512,
        type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12,
    )
    model = BertModel(config, add_pooling_layer=True).eval()
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                w = 1.0 + 0.1 * torch.randn(p.shape, generator=gen) if name.endswith("weight") \
                    else 0.1 * torch.randn(p.shape, generator=gen)
            else:
                w = 0.02 * torch.randn(p.shape, generator=gen) if name.endswith("weight") \
                    else 0.01 * torch.randn(p.shape, generator=gen)
            # 4 significant bits: frexp gives w = m * 2^e with 0.5 <= |m| < 1.
            m, e = np.frexp(w.numpy().astype(np.float64))
            p.copy_(torch.from_numpy(np.ldexp(np.round(m * 16) / 16, e).astype(np.float32)))
    torch.save(model.state_dict(), out / "weights.pt")
    cfg = config.to_dict()
    keep = ["architectures", "attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob",
            "hidden_size", "initializer_range", "intermediate_size", "layer_norm_eps",
            "max_position_embeddings", "model_type", "num_attention_heads", "num_hidden_layers",
            "pad_token_id", "type_vocab_size", "vocab_size"]
    cfg["architectures"] = ["BertModel"]
    (out / "config.json").write_text(json.dumps({k: cfg[k] for k in keep if k in cfg}, indent=2))
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": MAX_SEQ, "do_lower_case": True}, indent=2))
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling/config.json").write_text(json.dumps({
        "word_embedding_dimension": 384, "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }, indent=2))


def load_model(out):
    """The replica, with the attention each transformers version picks by default (eager in
    4.40, SDPA in 5.x), as a user's export gets it."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig.from_dict(json.loads((out / "config.json").read_text()))
    model = BertModel(config).eval()
    model.load_state_dict(torch.load(out / "weights.pt"))
    return model


def dummy_inputs():
    import torch

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 2307, 102, 0]]) % 100 + 101
    return ids, torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), torch.zeros_like(ids)


def export_torchscript(out, file, opset):
    """torch.onnx.export with the TorchScript exporter, as transformers.js' and most 2023-24
    scripts called it: three inputs, `last_hidden_state` out, dynamic batch and sequence."""
    import torch

    class ByName(torch.nn.Module):
        # transformers 5 reordered forward()'s parameters: pass the inputs by name.
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids)
            return out.last_hidden_state, out.pooler_output

    model = ByName(load_model(out)).eval()
    ids, mask, types = dummy_inputs()
    torch.onnx.export(
        model, (ids, mask, types), str(out / file), dynamo=False, opset_version=opset,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_axes={n: {0: "batch_size", 1: "sequence_length"}
                      for n in ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]},
    )


def export_dynamo(out, file):
    import torch

    model = load_model(out)
    ids, mask, types = dummy_inputs()
    batch, seq = torch.export.Dim("batch_size"), torch.export.Dim("sequence_length")
    dims = {0: batch, 1: seq}
    program = torch.onnx.export(
        model, (), kwargs={"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        dynamo=True, opset_version=20, external_data=False,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_shapes={"input_ids": dims, "attention_mask": dims, "token_type_ids": dims},
    )
    program.save(str(out / file), external_data=False)


def export_optimum(out):
    """optimum-onnx's exporter, as `optimum-cli export onnx --task feature-extraction` runs it."""
    import torch
    from optimum.exporters.onnx import main_export

    model_dir = out / "hf"
    model = load_model(out)
    model.save_pretrained(model_dir)
    shutil.copy(out / "tokenizer.json", model_dir / "tokenizer.json")
    tmp = out / "optimum-tmp"
    main_export(str(model_dir), output=str(tmp), task="feature-extraction", opset=18,
                library_name="transformers", do_validation=False)
    (out / "onnx").mkdir(exist_ok=True)
    shutil.move(str(tmp / "model.onnx"), out / "onnx/model.onnx")
    shutil.rmtree(tmp)
    shutil.rmtree(model_dir)
    del torch


def quantize(out):
    """onnxruntime's `quantize_dynamic` as transformers.js' conversion script calls it for BERT:
    int8 weights per tensor, u8 activations quantised per tensor at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(out / "onnx/model.onnx"), str(out / "onnx/model_quantized.onnx"),
                     weight_type=QuantType.QInt8, per_channel=False, reduce_range=False,
                     extra_options={"EnableSubgraph": True, "MatMulConstBInput": True})


def reference(out):
    """Embeddings as sentence-transformers computes them: no truncation past 512, batches of 8
    padded to their longest text, CLS pooling, L2 normalisation."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_SEQ)
    ref = out / "reference"
    ref.mkdir(exist_ok=True)
    sample = texts()
    (ref / "texts.json").write_text(json.dumps(sample, ensure_ascii=False, indent=0))
    encs = tok.encode_batch(sample)
    for file in ALL_FILES:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(out / file), opts, providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        emb = np.zeros((len(sample), 384), np.float32)
        for start in range(0, len(sample), 8):
            batch = encs[start:start + 8]
            width = max(len(e.ids) for e in batch)
            feed = {
                "input_ids": np.array([e.ids + [0] * (width - len(e.ids)) for e in batch], np.int64),
                "attention_mask": np.array([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in batch], np.int64),
                "token_type_ids": np.array([e.type_ids + [0] * (width - len(e.ids)) for e in batch], np.int64),
            }
            states = sess.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in names})[0]
            cls = states[:, 0, :]
            emb[start:start + len(batch)] = cls / np.linalg.norm(cls, axis=1, keepdims=True)
        stem = file.replace("/", "_").replace(".onnx", "")
        np.save(ref / f"{stem}.npy", emb)
        print(f"{file}: {len(sample)} texts, longest {max(len(e.ids) for e in encs)} tokens")
        # The card-format head on these embeddings.
        head = ort.InferenceSession(str(HEAD), providers=["CPUExecutionProvider"])
        outs = head.run(None, {"logits": emb})
        names = [o.name for o in head.get_outputs()]
        scores = np.stack([outs[names.index(label)][:, 1] for label in LABELS], axis=1)
        np.save(ref / f"head_scores_{stem}.npy", scores.astype(np.float32))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("step", choices=["all", "build", "t5", "t440", "quantize", "reference"])
    p.add_argument("--out", required=True)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--cut-vocab", action="store_true")
    p.add_argument("--python-t440")
    args = p.parse_args()
    out = pathlib.Path(args.out).resolve()
    if args.step in ("all", "build"):
        build(args)
    if args.step in ("all", "t5"):
        export_torchscript(out, "legacy_t5.onnx", 17)
        export_dynamo(out, "dynamo.onnx")
    if args.step == "all":
        subprocess.run([args.python_t440, __file__, "t440", "--out", str(out)], check=True)
    if args.step == "t440":
        import transformers
        assert transformers.__version__.startswith("4.40"), transformers.__version__
        export_torchscript(out, "legacy_t440.onnx", 14)
        export_optimum(out)
    if args.step in ("all", "quantize"):
        quantize(out)
    if args.step in ("all", "reference"):
        reference(out)
    if args.step == "all":
        (out / "weights.pt").unlink()


if __name__ == "__main__":
    main()
