//! Heads with the wrong signature are refused on load, with an error that says what is wrong.

use emotions_runtime::{ErrorKind, Head, RuntimeError};

fn load(name: &str) -> RuntimeError {
    let path = emotions_conformance::fixtures_dir().join(format!("heads/bad/{name}.onnx"));
    Head::builder_from_path(&path).build().expect_err(name)
}

#[test]
fn missing_label_is_named() {
    let err = load("missing_grief");
    assert!(
        matches!(&err.kind, ErrorKind::MissingLabels { missing, .. } if missing == &["grief"]),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("missing label output(s) [\"grief\"]"),
        "{err}"
    );
}

#[test]
fn wrong_width_rank_and_type_are_named() {
    let err = load("width_383");
    assert!(
        err.to_string()
            .ends_with("input 'logits' must be 384 wide, found 383"),
        "{err}"
    );
    let err = load("rank_3");
    assert!(
        err.to_string()
            .ends_with("input 'logits' must have rank 2 [N, D], found rank 3"),
        "{err}"
    );
    let err = load("int64_input");
    assert!(
        err.to_string()
            .ends_with("input 'logits' must be float32, found int64"),
        "{err}"
    );
}

#[test]
fn unknown_op_is_named() {
    let err = load("unknown_op");
    assert!(
        err.to_string()
            .contains("uses op 'EmotionMagic' (domain 'example.custom'), which is not supported"),
        "{err}"
    );
}

#[test]
fn truncated_model_is_a_decode_error() {
    let path = emotions_conformance::fixtures_dir().join("heads/linear_classifier_shuffled.onnx");
    let bytes = std::fs::read(path).unwrap();
    for cut in [bytes.len() / 2, bytes.len() - 3, 10] {
        let err = Head::builder_from_bytes(bytes[..cut].to_vec(), "cut.onnx")
            .build()
            .unwrap_err();
        assert!(
            matches!(err.kind, ErrorKind::Decode { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn output_width_is_checked_after_typing() {
    // With any width allowed, this head's Sigmoid yields [N, 383] where 28 columns are declared.
    let path = emotions_conformance::fixtures_dir().join("heads/bad/width_383.onnx");
    let err = Head::builder_from_path(&path)
        .expected_dim(None)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err.kind, ErrorKind::OutputShape { name, .. } if name == "probabilities"),
        "{err}"
    );
}
