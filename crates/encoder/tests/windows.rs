//! `LongTexts::Chunk`'s windows: every token of a long text once in order, overlapping by the
//! stride, each with the special tokens and no longer than the model's length; the first
//! window is what truncation keeps, and a text that fits is its one window.

use emotions_encoder::{Encoder, LongTexts};
use std::path::Path;

fn minilm() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/minilm")
}

/// Over 64 KiB, so that it is tokenised in more than one piece.
fn long_text() -> String {
    let words = [
        "the",
        "report's",
        "numbers,",
        "naïve",
        "Zürich",
        "unbelievably",
        "(draft)",
        "2024",
    ];
    (0..14_000)
        .map(|i| words[i * 7 % words.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn windows_hold_every_token_once_in_order() {
    let encoder = Encoder::from_dir(minilm()).unwrap();
    let mut whole = tokenizers::Tokenizer::from_file(minilm().join("tokenizer.json")).unwrap();
    whole.with_truncation(None).unwrap();
    whole.with_padding(None);
    let text = long_text();
    assert!(text.len() > 1 << 16);
    let want = whole
        .encode_fast(text.as_str(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    let (cls, sep) = (101, 102);
    for stride in [None, Some(0), Some(100), Some(253)] {
        let stride_n = stride.unwrap_or(254 / 4);
        let windows = encoder.windows(&text, LongTexts::Chunk { stride }).unwrap();
        let mut got: Vec<u32> = Vec::new();
        for (k, w) in windows.iter().enumerate() {
            assert!(
                w.ids.len() <= encoder.max_seq_length(),
                "window {k}: {} tokens",
                w.ids.len()
            );
            assert_eq!((w.ids[0], *w.ids.last().unwrap()), (cls, sep), "window {k}");
            assert!(w.type_ids.iter().all(|&t| t == 0));
            let content = &w.ids[1..w.ids.len() - 1];
            if k == 0 {
                got.extend_from_slice(content);
            } else {
                // Each next window repeats the last `stride` tokens of the one before.
                assert_eq!(
                    &content[..stride_n],
                    &got[got.len() - stride_n..],
                    "window {k}"
                );
                got.extend_from_slice(&content[stride_n..]);
            }
        }
        assert_eq!(got, want, "stride {stride:?}");
        assert_eq!(
            windows[0],
            encoder.tokenize(&text).unwrap(),
            "the first window is truncation's"
        );
    }
    assert!(encoder.is_long(&text).unwrap());
}

#[test]
fn a_text_that_fits_is_its_one_window() {
    let encoder = Encoder::from_dir(minilm()).unwrap();
    let text = "Thank you so much, this is wonderful!";
    assert!(!encoder.is_long(text).unwrap());
    for long in [LongTexts::Truncate, LongTexts::Chunk { stride: None }] {
        assert_eq!(
            encoder.windows(text, long).unwrap(),
            vec![encoder.tokenize(text).unwrap()]
        );
    }
    let err = encoder
        .windows(text, LongTexts::Chunk { stride: Some(254) })
        .unwrap_err();
    assert!(err.to_string().contains("a stride of 254 tokens"), "{err}");
}
