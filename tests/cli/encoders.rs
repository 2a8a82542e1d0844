//! Choosing an encoder's ONNX file, reporting how it loaded, and telling whether it is the one a
//! head was trained on, by model rather than by folder name. The encoder folder is the committed
//! 2-layer bge-small replica (crates/conformance/fixtures/bge).

use crate::util::*;
use std::path::{Path, PathBuf};

fn replica() -> PathBuf {
    repo("crates/conformance/fixtures/bge")
}

/// A copy of the replica's folder with only the ONNX files `keep` (paths inside the folder).
fn replica_copy(dir: &Path, keep: &[&str]) {
    let configs = [
        "tokenizer.json",
        "config.json",
        "sentence_bert_config.json",
        "modules.json",
        "1_Pooling/config.json",
    ];
    copy_files(&replica(), dir, &configs);
    copy_files(&replica(), dir, keep);
}

#[test]
fn encoder_file_picks_the_graph_and_verbose_reports_its_rewrites() {
    let dir = replica();
    // 8-bit activations where the graph asks for them and the class that runs has VNNI (the
    // child reads the same EMOTIONS_ISA as this process).
    let vnni = emotions::Isa::selected().is_ok_and(|isa| isa.has_u8_dot());
    let quantized = if vnni {
        "attention 2/2, GELU 2, layer norms 5, projections 12 (0 in int16, 12 in u8)"
    } else {
        "attention 2/2, GELU 2, layer norms 5, projections 12 (12 in int16)"
    };
    for (file, rewrites) in [
        (
            "legacy_t5.onnx",
            "attention 2/2, GELU 2, layer norms 5, projections 12 (12 in int16)",
        ),
        ("onnx/model_quantized.onnx", quantized),
    ] {
        let o = run(
            &[
                "embed",
                "--text",
                "hi there",
                "--encoder",
                dir.to_str().unwrap(),
                "--encoder-file",
                file,
                "-v",
                // The integer projections, which the default is only on AVX-512 machines.
                "--precision",
                "int16",
            ],
            None,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("emotions: encoder {} (", dir.join(file).display())),
            "{err}"
        );
        assert!(
            err.contains(&format!("): {rewrites}; kernels ")),
            "{file}: {err}"
        );
        assert!(
            err.trim_end().ends_with(", precision int16"),
            "{file}: {err}"
        );
        assert_eq!(json_lines(&stdout(&o)).len(), 1);
    }
    // Without -v, nothing on stderr.
    let o = run(
        &["embed", "--text", "hi", "--encoder", dir.to_str().unwrap()],
        None,
    );
    assert!(
        o.status.success() && stderr(&o).is_empty(),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_folder_without_model_onnx_lists_its_onnx_files() {
    let s = Scratch::new("onnx-files");
    let dir = s.path("xenova");
    replica_copy(&dir, &["onnx/model_quantized.onnx", "dynamo.onnx"]);
    fails_with(
        run(
            &["embed", "--text", "hi", "--encoder", dir.to_str().unwrap()],
            None,
        ),
        "encoder folder is missing model.onnx (or onnx/model.onnx); it has dynamo.onnx, onnx/model_quantized.onnx: choose one with --encoder-file",
    );
    fails_with(
        run(
            &[
                "embed",
                "--text",
                "hi",
                "--encoder",
                dir.to_str().unwrap(),
                "--encoder-file",
                "onnx/model.onnx",
            ],
            None,
        ),
        "encoder folder is missing onnx/model.onnx",
    );
    let o = run(&["embed", "--text", "hi", "--encoder-file", "m.onnx"], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--encoder <DIR>"), "{}", stderr(&o));
}

/// The default head names all-MiniLM-L6-v2 and records no fingerprint: the check compares the
/// model's configuration, whatever the folder is called.
#[test]
fn the_mismatch_check_looks_at_the_model_not_the_folder_name() {
    let s = Scratch::new("mismatch-by-model");
    let minilm = s.path("some-other-name");
    minilm_copy(&minilm, |_, text| text);
    let o = classify_hi(&["--encoder", minilm.to_str().unwrap()]);
    assert!(
        o.status.success() && stderr(&o).is_empty(),
        "{}",
        stderr(&o)
    );
    let disguised = s.path("all-MiniLM-L6-v2");
    replica_copy(&disguised, &["onnx/model.onnx"]);
    let o = classify_hi(&["--encoder", disguised.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: the head was trained on 'all-MiniLM-L6-v2' embeddings but the encoder is 'all-MiniLM-L6-v2': that model is 6 layers, 384 wide, mean pooling, normalised, this one is 2 layers, 384 wide, CLS pooling, normalised"),
        "{}",
        stderr(&o)
    );
}

/// A head trained by `emotions train` records its encoder's fingerprint, which decides.
#[test]
fn a_recorded_fingerprint_decides() {
    let s = Scratch::new("mismatch-by-fingerprint");
    let o = run(&["embed", "--text", "hi", "-v"], None);
    let err = stderr(&o);
    let fingerprint = err
        .split(['(', ')'])
        .find(|p| p.len() == 16 && p.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no fingerprint in {err}"));
    for (recorded, warns) in [(fingerprint, false), ("0123456789abcdef", true)] {
        let head = s.write(
            &format!("{recorded}.onnx"),
            head_onnx(
                384,
                &[
                    ("encoder", "all-MiniLM-L6-v2"),
                    ("encoder_fingerprint", recorded),
                ],
            ),
        );
        let o = classify_hi(&["--model", head.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let warned = stderr(&o).contains(&format!(
            "the head records encoder fingerprint {recorded}, this encoder's is {fingerprint}"
        ));
        assert_eq!(warned, warns, "{recorded}: {}", stderr(&o));
        assert_eq!(stderr(&o).contains("warning"), warns, "{}", stderr(&o));
    }
}
