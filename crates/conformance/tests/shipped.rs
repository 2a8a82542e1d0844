//! The models `emotions` ships (`models/`) against onnxruntime (`scripts/gen_shipped.py`): the
//! heads on random inputs, and the tuned encoder (MiniLM with the LoRA adapter merged at load)
//! on the conformance texts, merged independently in numpy for the reference.

use emotions_conformance::{AbsTolerance, cosine, fixtures_dir, minilm_dir, read_fixture};
use emotions_encoder::{Encoder, EncoderAdapter, EncoderOptions, PlanShapes, Precision};
use emotions_labels::NUM_LABELS;
use emotions_runtime::{Head, Plan};
use std::path::PathBuf;

/// Heads the trainers write are held to onnxruntime as tightly as the fixture heads, on the
/// fused kernel that runs them by default.
const HEAD_TOLERANCE: AbsTolerance = AbsTolerance(1e-6);
/// tract's own f32 MatMul (every other plan) sums each logit in order. On the tuned head of
/// 2026-12-06 (logits up to 11.2, Σ|x·w| up to 11.5) an in-order f32 sum lands 1.3e-6 from the
/// f64 value (numpy, `gen_shipped.py` prints it), tract 1.49e-6 from onnxruntime, which is
/// 3.7e-7 from f64: the f32 rounding of those sums, not a fault of either runtime.
const TRACT_SUM_TOLERANCE: AbsTolerance = AbsTolerance(2e-6);
/// As `encoder.rs`: the exact mode, and the default 16-bit integer projections (the merged
/// weights are not on an int8 grid, so they are rounded to 11 bits per column).
const EXACT: AbsTolerance = AbsTolerance(1e-4);
const INT16: AbsTolerance = AbsTolerance(5e-4);

fn models(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join("models")
        .join(rel)
}

fn texts() -> Vec<String> {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures_dir().join("encoder/texts.json")).unwrap(),
    )
    .unwrap()
}

/// The reference embeddings of the encoder a head was trained on (unit-length rows, as heads
/// get them; see `gen_shipped.py`): the tuned encoder's for the tuned head, the plain one's for
/// the others.
fn head_inputs(name: &str) -> emotions_io::Embeddings {
    read_fixture(if name == "tuned_head" {
        "shipped/tuned_embeddings.npy"
    } else {
        "encoder/embeddings.npy"
    })
}

#[test]
fn shipped_heads_match_onnxruntime_in_every_plan() {
    let heads = [
        ("default_head", models("head/head.onnx")),
        ("tuned_head", models("tuned/head.onnx")),
        ("mlp_head", fixtures_dir().join("shipped/mlp_head.onnx")),
    ];
    for (name, file) in heads {
        let inputs = head_inputs(name);
        let want = read_fixture(&format!("shipped/{name}.scores.npy"));
        assert_eq!((want.rows(), want.dim()), (inputs.rows(), NUM_LABELS));
        for plan in [Plan::Decluttered, Plan::Optimized] {
            for fuse in [false, true] {
                let head = Head::builder_from_path(&file)
                    .plan(plan)
                    .fuse(fuse)
                    .build()
                    .unwrap();
                // Fusion applies to linear heads only; the MLP runs on tract's graph.
                assert_eq!(head.info().fused, fuse && name != "mlp_head", "{name}");
                let got = head.predict(inputs.data(), inputs.rows()).unwrap();
                let case = format!("{name} {plan:?} fused={}", head.info().fused);
                let our_kernel = head.info().fused && plan == Plan::Optimized;
                let tolerance = if our_kernel {
                    HEAD_TOLERANCE
                } else {
                    TRACT_SUM_TOLERANCE
                };
                match tolerance.compare(&got, want.data(), NUM_LABELS) {
                    Ok(report) => eprintln!("{case}: {report}"),
                    Err(mismatch) => panic!("{case}: {mismatch}"),
                }
            }
        }
    }
}

fn tuned_encoder(precision: Precision, plans: PlanShapes) -> Encoder {
    let adapter = EncoderAdapter::from_file(models("tuned/adapter.safetensors")).unwrap();
    let options = EncoderOptions {
        precision,
        plans,
        ..Default::default()
    };
    Encoder::from_dir_file_adapted(minilm_dir(), None::<&str>, options, Some(&adapter)).unwrap()
}

fn tuned_embeddings_match(encoder: &Encoder, tolerance: AbsTolerance, min_cosine: f64) -> Vec<f32> {
    let texts = texts();
    let want = read_fixture("shipped/tuned_embeddings.npy");
    assert_eq!(want.rows(), texts.len());
    let got = encoder.embed(&texts).unwrap();
    let report = tolerance
        .compare(&got, want.data(), want.dim())
        .unwrap_or_else(|m| panic!("{m}"));
    let d = want.dim();
    let (worst, min) = (0..texts.len())
        .map(|i| (i, cosine(&got[i * d..(i + 1) * d], want.row(i))))
        .fold((0, 1.0f64), |a, (i, c)| if c < a.1 { (i, c) } else { a });
    eprintln!("tuned embeddings: {report}; min cosine {min:.8} (text {worst})");
    assert!(
        min >= min_cosine,
        "text {worst} {:?}: cosine {min}",
        texts[worst]
    );
    got
}

/// Text to scores: the tuned head on our embeddings against onnxruntime's whole pipeline.
fn tuned_scores_match(embeddings: &[f32], tolerance: AbsTolerance) {
    let head = Head::builder_from_path(models("tuned/head.onnx"))
        .build()
        .unwrap();
    let scores = head.predict(embeddings, texts().len()).unwrap();
    let want = read_fixture("shipped/tuned_text_scores.npy");
    let report = tolerance
        .compare(&scores, want.data(), NUM_LABELS)
        .unwrap_or_else(|m| panic!("{m}"));
    eprintln!("tuned text to scores: {report}");
}

#[test]
fn tuned_encoder_matches_onnxruntime_in_both_plans() {
    for plans in [PlanShapes::Symbolic, PlanShapes::Buckets] {
        let encoder = tuned_encoder(Precision::F32, plans);
        // Exact mode merges the adapter into the f32 weights.
        let r = encoder.rewrites();
        assert_eq!(
            (r.attention, r.linear, r.int16, r.low_rank),
            (6, 36, 0, 0),
            "{r}"
        );
        let got = tuned_embeddings_match(&encoder, EXACT, 0.99999);
        tuned_scores_match(&got, AbsTolerance(1e-5));
    }
}

#[test]
fn tuned_encoder_default_precision_is_within_its_stated_accuracy() {
    let encoder = tuned_encoder(Precision::Int16, PlanShapes::Symbolic);
    // The int8 weights stay exact on the integer kernels; the adapter adds its term beside.
    let r = encoder.rewrites();
    assert_eq!(
        (r.attention, r.linear, r.int16, r.low_rank),
        (6, 36, 36, 36),
        "{r}"
    );
    let got = tuned_embeddings_match(&encoder, INT16, 0.99999);
    tuned_scores_match(&got, AbsTolerance(1e-3));
}

#[test]
fn the_adapter_changes_the_encoder_and_its_fingerprint() {
    let plain = Encoder::from_dir(minilm_dir()).unwrap();
    let tuned = tuned_encoder(Precision::Int16, PlanShapes::Symbolic);
    assert!(
        tuned
            .fingerprint()
            .starts_with(&format!("{}+", plain.fingerprint()))
    );
    assert_ne!(plain.embeddings_id(), tuned.embeddings_id());
    let texts = ["I am so happy for you!"];
    let (a, b) = (plain.embed(&texts).unwrap(), tuned.embed(&texts).unwrap());
    let c = cosine(&a, &b);
    assert!(c < 0.999, "the adapter should move embeddings, cosine {c}");
}
