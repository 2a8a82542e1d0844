//! The default text classifier (MiniLM with a LoRA adapter and its head), adapters beside head
//! files, and what stays the plain encoder's: `embed`, and embeddings given as input.

use crate::util::*;

const TEXT: &str = "Thank you so much, this is wonderful!";

fn scores(row: &serde_json::Value) -> Vec<f64> {
    emotions::LABELS
        .iter()
        .map(|l| row["scores"][l].as_f64().unwrap())
        .collect()
}

/// A copy of `models/tuned` (head, thresholds, adapter) in the scratch folder.
fn tuned_copy(s: &Scratch) -> std::path::PathBuf {
    let dir = s.path("tuned");
    std::fs::create_dir(&dir).unwrap();
    copy_files(
        &repo("models/tuned"),
        &dir,
        &["head.onnx", "thresholds.json", "adapter.safetensors"],
    );
    dir
}

/// `classify --model HEAD --text TEXT`.
fn classify_text(head: &std::path::Path) -> std::process::Output {
    run(
        &[
            "classify",
            "--model",
            head.to_str().unwrap(),
            "--text",
            TEXT,
        ],
        None,
    )
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn text_goes_through_the_adapter_and_embeddings_through_the_plain_head() {
    let s = Scratch::new("tuned");
    let o = run(&["classify", "-v", "--text", TEXT], None);
    let log = stderr(&o);
    // The integer projections add the adapter's term beside the weights; f32 merges it in.
    if log.contains("precision int16") || log.contains("precision int8") {
        assert!(log.contains("36 with a low-rank adapter"), "{log}");
    } else {
        assert!(log.contains("precision f32"), "{log}");
    }
    let tuned = json_lines(&ok(o));
    // The same text through the shipped files, named explicitly.
    let explicit = json_lines(&ok(run(
        &[
            "classify",
            "--model",
            repo("models/tuned/head.onnx").to_str().unwrap(),
            "--text",
            TEXT,
        ],
        None,
    )));
    assert_eq!(max_diff(&scores(&tuned[0]), &scores(&explicit[0])), 0.0);
    assert_eq!(tuned[0]["labels"], explicit[0]["labels"]);

    // `embed` is the plain encoder; the default head for embeddings is the plain head.
    let emb = s.path("e.npy");
    ok(run(
        &["embed", "--text", TEXT, "--output", emb.to_str().unwrap()],
        None,
    ));
    let from_embeddings = json_lines(&ok(run(
        &["classify", "--embeddings", emb.to_str().unwrap()],
        None,
    )));
    let plain_head = json_lines(&ok(run(
        &[
            "classify",
            "--model",
            repo("models/head/head.onnx").to_str().unwrap(),
            "--text",
            TEXT,
        ],
        None,
    )));
    assert!(max_diff(&scores(&from_embeddings[0]), &scores(&plain_head[0])) < 1e-6);
    // And the two models really differ.
    assert!(max_diff(&scores(&tuned[0]), &scores(&plain_head[0])) > 1e-3);
}

#[test]
fn a_head_file_brings_its_adapter_and_refuses_the_wrong_one() {
    let s = Scratch::new("adapter");
    let dir = tuned_copy(&s);
    let head = dir.join("head.onnx");
    let default = ok(run(&["classify", "--text", TEXT], None));
    let copied = ok(classify_text(&head));
    assert_eq!(default, copied);

    // Without its adapter.
    std::fs::rename(dir.join("adapter.safetensors"), s.path("kept.safetensors")).unwrap();
    fails_with(
        classify_text(&head),
        "the head was trained with encoder adapter",
    );
    // Another adapter: a valid file, but not the one the head records.
    let mut other = std::fs::read(s.path("kept.safetensors")).unwrap();
    let n = other.len();
    other[n - 4..].copy_from_slice(&0.5f32.to_le_bytes());
    std::fs::write(dir.join("adapter.safetensors"), &other).unwrap();
    fails_with(classify_text(&head), "is adapter");
    // A broken adapter file is named.
    std::fs::write(dir.join("adapter.safetensors"), &other[..100]).unwrap();
    fails_with(classify_text(&head), "adapter.safetensors");
    // An adapter beside a head trained without one.
    let plain = s.path("plain");
    std::fs::create_dir(&plain).unwrap();
    copy_files(
        &repo("models/head"),
        &plain,
        &["head.onnx", "thresholds.json"],
    );
    std::fs::copy(
        s.path("kept.safetensors"),
        plain.join("adapter.safetensors"),
    )
    .unwrap();
    fails_with(
        classify_text(&plain.join("head.onnx")),
        "the head records no adapter",
    );
}

#[test]
fn an_adapter_for_another_encoder_is_refused_with_its_name() {
    let s = Scratch::new("adapter-targets");
    let dir = tuned_copy(&s);
    // Rename one target (both its tensors) to a projection MiniLM does not have, keeping the
    // file valid.
    let mut bytes = std::fs::read(dir.join("adapter.safetensors")).unwrap();
    let from = b"layer.0.attention.self.query";
    let mut renamed = 0;
    while let Some(at) = bytes.windows(from.len()).position(|w| w == from) {
        bytes[at + 6] = b'9';
        renamed += 1;
    }
    assert_eq!(renamed, 2);
    std::fs::write(dir.join("adapter.safetensors"), &bytes).unwrap();
    let o = run(
        &[
            "classify",
            "--model",
            dir.join("head.onnx").to_str().unwrap(),
            "--text",
            TEXT,
        ],
        None,
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("adapter.safetensors") && err.contains("layer.9"),
        "{err}"
    );
    assert!(err.contains("matches 0 projections"), "{err}");
}

#[test]
fn the_server_embeds_with_the_plain_encoder_and_classifies_with_the_adapter() {
    let server = crate::serve::Server::start(&[]);
    let (status, body) = server.request(
        "POST",
        "/embed",
        serde_json::json!({ "inputs": [TEXT] })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let served: Vec<Vec<f64>> = serde_json::from_str(&body).unwrap();
    let cli = json_lines(&ok(run(&["embed", "--text", TEXT], None)));
    let cli: Vec<f64> = cli[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(served[0].len(), 384);
    assert!(max_diff(&served[0], &cli) < 1e-6);
    // Embedding first, then classifying, in one server: one graph, run without the adapter's
    // low-rank terms, then with them.
    let (status, body) = server.request(
        "POST",
        "/classify",
        serde_json::json!({ "inputs": [TEXT] })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cli = json_lines(&ok(run(&["classify", "--text", TEXT], None)));
    assert!(max_diff(&scores(&served[0]), &scores(&cli[0])) < 1e-6);
}

/// The tuned classifier's `embed` is the plain encoder's: in the integer precisions, its own
/// graph run without the adapter's low-rank terms (no second load), bit for bit what the plain
/// encoder loaded on its own gives; in f32, where the adapter is merged into the weights, the
/// plain encoder loaded anew.
#[test]
fn embed_of_the_tuned_classifier_is_the_plain_encoders_bit_for_bit() {
    let texts = [
        TEXT,
        "I can't believe they cancelled the show, this is so annoying.",
        "ok",
        "Why would anyone do that? I'm honestly confused and a bit scared.",
    ];
    for precision in [
        emotions::Precision::Int16,
        emotions::Precision::Int8,
        emotions::Precision::F32,
    ] {
        let options = emotions::EncoderOptions {
            precision,
            ..Default::default()
        };
        let tuned = emotions::Classifier::builder()
            .encoder_options(options)
            .build()
            .unwrap();
        let adapted = tuned.encoder().expect("the default has an encoder");
        let view = adapted.without_adapter();
        assert_eq!(view.is_some(), precision.is_integer(), "{precision:?}");
        if let Some(view) = &view {
            assert_eq!(view.rewrites().low_rank, 0);
            assert_eq!(adapted.rewrites().low_rank, 36);
            assert!(view.without_adapter().is_none());
        }
        let plain = emotions::load_encoder(&emotions::EncoderChoice::Default, options, None)
            .unwrap()
            .unwrap();
        let want = plain.embed(&texts).unwrap();
        let got = tuned.embed(&texts).unwrap();
        assert_eq!(got.len(), want.len());
        let differing = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differing, 0, "{precision:?}: {differing} values differ");
        assert_eq!(
            tuned.encoder().unwrap().fingerprint().split('+').next(),
            Some(plain.fingerprint())
        );
        if let Some(view) = view {
            assert_eq!(view.fingerprint(), plain.fingerprint());
            assert_eq!(view.embeddings_id(), plain.embeddings_id());
        }
        // The adapted embeddings differ from the plain ones: the terms are left out, not lost.
        let features = tuned.features(&texts).unwrap();
        assert!(
            features
                .iter()
                .zip(&want)
                .any(|(a, b)| (a - b).abs() > 1e-3),
            "{precision:?}"
        );
    }
}
