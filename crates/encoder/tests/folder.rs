//! Encoder folders that disagree with their model are refused or adjusted at load, with the
//! file named, instead of failing on some text later.

use emotions_encoder::{Encoder, EncoderErrorKind, EncoderOptions, Precision};
use std::path::{Path, PathBuf};

fn minilm() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/minilm")
}

/// A copy of the MiniLM folder with `edit(file name, text)` applied to its JSON files.
fn copy_with(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("1_Pooling")).unwrap();
    for f in [
        "model.onnx",
        "tokenizer.json",
        "config.json",
        "sentence_bert_config.json",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        let from = minilm().join(f);
        if f.ends_with(".json") {
            let text = edit(f, std::fs::read_to_string(&from).unwrap());
            std::fs::write(dir.path().join(f), text).unwrap();
        } else {
            std::fs::copy(&from, dir.path().join(f)).unwrap();
        }
    }
    dir
}

#[test]
fn a_vocabulary_past_the_token_table_is_refused() {
    let dir = copy_with(|f, text| {
        if f != "tokenizer.json" {
            return text;
        }
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["added_tokens"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "id": 30522, "content": "[EXTRA]", "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            }));
        v.to_string()
    });
    let err = Encoder::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err.kind, EncoderErrorKind::Config { .. }), "{err}");
    assert!(
        err.to_string().ends_with(
            "token \"[EXTRA]\" has id 30522, but the model's token embedding table has 30522 rows (ids 0 to 30521)"
        ),
        "{err}"
    );
}

#[test]
fn a_word_whose_id_is_past_the_token_table_is_refused() {
    // The same number of words, one of them moved far out: the count alone looks fine.
    let dir = copy_with(|f, text| {
        if f != "tokenizer.json" {
            return text;
        }
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["model"]["vocab"]["hi"] = serde_json::json!(999_999);
        v.to_string()
    });
    let err = Encoder::from_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "token \"hi\" has id 999999, but the model's token embedding table has 30522 rows (ids 0 to 30521)"
        ),
        "{err}"
    );
}

#[test]
fn a_max_seq_length_past_the_position_table_is_clamped_with_a_warning() {
    let dir = copy_with(|f, text| {
        if f == "sentence_bert_config.json" {
            text.replace("256", "100000")
        } else {
            text
        }
    });
    let encoder = Encoder::from_dir(dir.path()).unwrap();
    assert_eq!(encoder.max_seq_length(), 512);
    assert!(
        encoder.warnings()[0]
            .contains("max_seq_length 100000 is longer than the model's 512 positions"),
        "{:?}",
        encoder.warnings()
    );
    // A 2,000-word text now truncates to 512 tokens instead of failing.
    let long = "word ".repeat(2000);
    assert_eq!(encoder.tokenize(&long).unwrap().ids.len(), 512);
    assert_eq!(encoder.embed(&[long]).unwrap().len(), 384);
}

#[test]
fn a_text_with_no_tokens_is_an_error_not_a_panic() {
    // A post-processor that adds no [CLS] / [SEP]: the empty text has no tokens at all.
    let dir = copy_with(|f, text| {
        if f != "tokenizer.json" {
            return text;
        }
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["post_processor"] = serde_json::Value::Null;
        v.to_string()
    });
    let encoder = Encoder::from_dir(dir.path()).unwrap();
    let err = encoder.embed(&["fine", ""]).unwrap_err();
    assert!(
        matches!(err.kind, EncoderErrorKind::NoTokens { index: 1 }),
        "{err}"
    );
}

#[test]
fn a_huge_line_is_tokenised_only_as_far_as_truncation_keeps() {
    let encoder = Encoder::from_dir(minilm()).unwrap();
    // The same tokenizer, truncating as the encoder does, but always tokenising everything.
    let mut whole = tokenizers::Tokenizer::from_file(minilm().join("tokenizer.json")).unwrap();
    whole
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 256,
            ..Default::default()
        }))
        .unwrap();
    whole.with_padding(None);
    // Whole words, punctuation, accents, tabs and runs of spaces.
    let unit = "Thank you so much, this is wonderful!  Élan vital,\tcafé   ";
    for repeats in [1_200, 5_000, 40_000] {
        let text = unit.repeat(repeats);
        let want = whole.encode_fast(text.as_str(), true).unwrap();
        let got = encoder.tokenize(&text).unwrap();
        assert_eq!(got.ids, want.get_ids(), "{} bytes", text.len());
        assert_eq!(got.type_ids, want.get_type_ids());
    }
    // 10 MB: only its start is tokenised.
    let huge = unit.repeat(170_000);
    assert!(huge.len() > 10_000_000);
    let started = std::time::Instant::now();
    let tokens = encoder.tokenize(&huge).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(tokens.ids.len(), 256);
    assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn a_tokenizer_file_that_makes_tokenizers_panic_is_an_error() {
    // Found by the encoder_folder fuzz target: a "decoder" entry whose JSON is cut.
    let bad = include_bytes!("data/tokenizer_bad_decoder.json");
    let dir = copy_with(|_, text| text);
    std::fs::write(dir.path().join("tokenizer.json"), bad).unwrap();
    let err = Encoder::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err.kind, EncoderErrorKind::Tokenizer { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("tokenizer.json: cannot load the tokenizer"),
        "{err}"
    );
}

/// An int8 calibration made for other weights is refused in `Precision::Int8`, naming the file
/// and the projection; the other precisions do not read the file at all.
#[test]
fn an_int8_calibration_for_other_weights_is_refused() {
    let dir = copy_with(|_, text| text);
    let calibration = std::fs::read_to_string(minilm().join("calibration.json")).unwrap();
    let changed = calibration.replacen("\"q_sum\": 2704", "\"q_sum\": 2705", 1);
    assert_ne!(changed, calibration);
    let at = dir.path().join("calibration.json");
    std::fs::write(&at, changed).unwrap();
    let load = |precision| {
        let options = EncoderOptions {
            precision,
            ..Default::default()
        };
        Encoder::from_dir_with(dir.path(), options)
    };
    let err = load(Precision::Int8).err().unwrap().to_string();
    assert!(
        err.contains("calibration.json: int8 calibration: projection node_MatMul_48: calibrated for [384, 384] weights with sum 2705, found [384, 384] with sum 2704"),
        "{err}"
    );
    assert!(load(Precision::Int16).is_ok());
    std::fs::write(&at, "{").unwrap();
    let err = load(Precision::Int8).err().unwrap().to_string();
    assert!(
        err.contains("calibration.json: int8 calibration: not JSON"),
        "{err}"
    );
    // Not even UTF-8: still unread outside int8.
    std::fs::write(&at, [0xff, 0xfe]).unwrap();
    assert!(load(Precision::Int16).is_ok());
    assert!(load(Precision::F32).is_ok());
    assert!(load(Precision::Int8).is_err());
}
