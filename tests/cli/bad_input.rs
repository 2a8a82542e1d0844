//! Bad input: a clear message naming the file, line or row, and a non-zero exit. Rows before a
//! bad one are written whole; nothing is cut.

use crate::util::*;

fn row(n: usize) -> String {
    serde_json::to_string(&vec![0.01f32; n]).unwrap()
}

#[test]
fn short_row_names_the_line() {
    let s = Scratch::new("bad");
    let f = s.write(
        "e.jsonl",
        format!("{}\n{}\n{}\n", row(384), row(384), row(383)),
    );
    let o = run(&["classify", "--embeddings", f.to_str().unwrap()], None);
    fails_after(o, "line 3: expected 384 numbers, found 383", 2);
}

#[test]
fn malformed_json_and_non_finite_values() {
    let s = Scratch::new("bad");
    let f = s.write("e.jsonl", format!("{}\n[0.1, oops]\n", row(384)));
    fails_after(
        run(&["classify", "--embeddings", f.to_str().unwrap()], None),
        "line 2: invalid JSON",
        1,
    );
    let nan = format!("{}\n", row(384).replacen("0.01", "NaN", 1));
    fails_with(
        run(&["classify", "--embeddings", "-"], Some(nan.as_bytes())),
        "stdin: line 1: invalid JSON",
    );
    let big = format!("{}\n", row(384).replacen("0.01", "1e999", 1));
    fails_with(
        run(&["classify", "--embeddings", "-"], Some(big.as_bytes())),
        "stdin: line 1: invalid JSON",
    );
    let mut data = vec![0.01f32; 2 * 384];
    data[384 + 7] = f32::INFINITY;
    let npy = s.path("inf.npy");
    emotions_io::write_npy_f32(&npy, 2, 384, &data).unwrap();
    fails_after(
        run(&["classify", "--embeddings", npy.to_str().unwrap()], None),
        "row 1, column 7: expected a finite number, found inf",
        1,
    );
    let wide = s.path("wide.npy");
    emotions_io::write_npy_f32(&wide, 1, 385, &[0.0; 385]).unwrap();
    fails_with(
        run(&["classify", "--embeddings", wide.to_str().unwrap()], None),
        "expected 384 columns, found 385",
    );
}

#[test]
fn empty_file_is_no_rows_and_success() {
    let s = Scratch::new("bad");
    let f = s.write("empty.jsonl", "");
    let o = run(&["classify", "--embeddings", f.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

#[test]
fn missing_truncated_and_wrong_models() {
    let s = Scratch::new("bad");
    let input = s.write("e.jsonl", format!("{}\n", row(384)));
    let i = input.to_str().unwrap();
    fails_with(
        run(
            &[
                "classify",
                "--embeddings",
                i,
                "--model",
                "/nonexistent/model.onnx",
            ],
            None,
        ),
        "/nonexistent/model.onnx: cannot read model file",
    );
    let bytes = std::fs::read(head_fixture("linear_classifier_shuffled.onnx")).unwrap();
    let cut = s.write("cut.onnx", &bytes[..bytes.len() / 2]);
    fails_with(
        run(
            &[
                "classify",
                "--embeddings",
                i,
                "--model",
                cut.to_str().unwrap(),
            ],
            None,
        ),
        "not a valid ONNX model",
    );
    let wrong = head_fixture("bad/missing_grief.onnx");
    fails_with(
        run(
            &[
                "classify",
                "--embeddings",
                i,
                "--model",
                wrong.to_str().unwrap(),
            ],
            None,
        ),
        "missing label output(s) [\"grief\"]",
    );
    fails_with(
        run(&["classify", "--embeddings", "/nonexistent/e.jsonl"], None),
        "/nonexistent/e.jsonl",
    );
}

#[test]
fn bad_thresholds_name_the_label() {
    let s = Scratch::new("bad");
    let input = s.write("e.jsonl", format!("{}\n", row(384)));
    let i = input.to_str().unwrap();
    let mut t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("thresholds.json")).unwrap()).unwrap();
    t.as_object_mut().unwrap().remove("pride");
    let missing = s.write("missing.json", t.to_string());
    fails_with(
        run(
            &[
                "classify",
                "--embeddings",
                i,
                "--thresholds",
                missing.to_str().unwrap(),
            ],
            None,
        ),
        "label 'pride' is missing",
    );
    t["pride"] = serde_json::json!(-0.5);
    let range = s.write("range.json", t.to_string());
    fails_with(
        run(
            &[
                "classify",
                "--embeddings",
                i,
                "--thresholds",
                range.to_str().unwrap(),
            ],
            None,
        ),
        "threshold for 'pride' must be finite and in [0, 1], found -0.5",
    );
    fails_with(
        run(&["classify", "--embeddings", i, "--threshold", "2"], None),
        "must be finite and in [0, 1], found 2",
    );
}

/// A missing file's OS error is said once, not once by the file's error and again by its
/// source.
#[test]
fn a_missing_file_says_the_os_error_once() {
    for args in [
        &["classify", "--texts", "/nonexistent/t.txt"][..],
        &["classify", "--embeddings", "/nonexistent/e.npy"][..],
        &[
            "classify",
            "--text",
            "hi",
            "--thresholds",
            "/nonexistent/t.json",
        ][..],
    ] {
        let o = run(args, None);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert_eq!(
            err.matches("No such file or directory").count(),
            1,
            "{args:?}: {err}"
        );
        assert!(err.contains("/nonexistent/"), "{args:?}: {err}");
    }
}

#[test]
fn top_k_outside_1_to_28_is_refused() {
    for k in ["0", "29"] {
        let o = run(&["classify", "--text", "hi", "--top-k", k], None);
        assert_eq!(o.status.code(), Some(2), "--top-k {k}: {}", stderr(&o));
        assert!(stderr(&o).contains("--top-k"), "{}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
    let o = run(
        &["classify", "--text", "Thank you so much!", "--top-k", "28"],
        None,
    );
    let labels = &json_lines(&ok(o))[0]["labels"];
    assert_eq!(labels.as_array().map(Vec::len), Some(28));
}

/// Every numeric flag has a range that means something, checked before anything starts: a
/// value past it is a usage error (exit 2) naming the flag, not an allocation failure, a panic
/// after "serving on", or a server whose every request times out.
#[test]
fn numeric_flags_out_of_range_are_refused_up_front() {
    for args in [
        &["embed", "--text", "hi", "--batch-size", "1000000"][..],
        &["serve", "--max-concurrent", "2305843009213693952"][..],
        &["serve", "--batch-wait-ms", "18446744073709551615"][..],
        &["serve", "--max-batch", "0"][..],
        &["serve", "--max-inputs", "1000000"][..],
        &["serve", "--max-body-bytes", "99999999999"][..],
    ] {
        let o = run(args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let flag = args[args.len() - 2];
        assert!(stderr(&o).contains(flag), "{args:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("serving on"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_caught_panic_is_one_line_and_its_trace_is_for_verbose() {
    // A tokenizer.json that makes the tokenizers crate panic while loading (found by fuzzing).
    let s = Scratch::new("quiet-panic");
    let dir = s.path("enc");
    minilm_copy(&dir, |_, text| text);
    std::fs::copy(
        repo("crates/encoder/tests/data/tokenizer_bad_decoder.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let quiet = |extra: &[&str]| {
        let mut args = vec!["embed", "--encoder", d, "--text", "hi"];
        args.extend(extra);
        std::process::Command::new(BIN)
            .args(&args)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap()
    };
    let o = quiet(&[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("emotions: error: loading the encoder: ")
            && err.contains("tokenizer.json: cannot load the tokenizer"),
        "{err}"
    );
    let verbose = stderr(&quiet(&["-v"]));
    assert!(verbose.contains("panicked at"), "{verbose}");
}
