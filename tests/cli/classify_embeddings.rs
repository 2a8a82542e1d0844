//! `emotions classify --embeddings`: scores, decisions and formats.

use crate::util::*;
use emotions::{LABELS, NUM_LABELS, Thresholds};

const HEADS: [&str; 3] = [
    "linear_classifier_shuffled",
    "matmul_sigmoid_shuffled",
    "gemm_single_output",
];

#[test]
fn jsonl_and_npy_inputs_match_onnxruntime_within_1e_5() {
    let scratch = Scratch::new("classify");
    let inputs = read_npy(&head_fixture("inputs.npy"));
    let jsonl = scratch.write("inputs.jsonl", to_jsonl(&inputs));
    let thresholds = Thresholds::card_defaults();
    for name in HEADS {
        let model = head_fixture(&format!("{name}.onnx"));
        let want = read_npy(&head_fixture(&format!("{name}.scores.npy")));
        for input in [head_fixture("inputs.npy"), jsonl.clone()] {
            let out = ok(run(
                &[
                    "classify",
                    "--embeddings",
                    input.to_str().unwrap(),
                    "--model",
                    model.to_str().unwrap(),
                ],
                None,
            ));
            let rows = json_lines(&out);
            assert_eq!(rows.len(), inputs.rows());
            let lines: Vec<&str> = out.lines().collect();
            for (r, row) in rows.iter().enumerate() {
                let scores = row["scores"].as_object().unwrap();
                assert_eq!(scores.len(), NUM_LABELS, "every label");
                let positions: Vec<usize> = LABELS
                    .iter()
                    .map(|l| lines[r].find(&format!("\"{l}\":")).unwrap())
                    .collect();
                assert!(
                    positions.windows(2).all(|w| w[0] < w[1]),
                    "label order: {}",
                    lines[r]
                );
                let mut predicted = vec![];
                for (k, label) in LABELS.iter().enumerate() {
                    let got = scores[*label].as_f64().unwrap();
                    let want = want.row(r)[k] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5,
                        "{name} row {r} {label}: {got} vs {want}"
                    );
                    if got as f32 >= thresholds.as_array()[k] {
                        predicted.push((got, *label));
                    }
                }
                predicted.sort_by(|a, b| b.0.total_cmp(&a.0));
                let labels: Vec<&str> = row["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l.as_str().unwrap())
                    .collect();
                assert_eq!(
                    labels,
                    predicted.iter().map(|p| p.1).collect::<Vec<_>>(),
                    "{name} row {r}"
                );
            }
        }
        let out = scratch.path("scores.npy");
        ok(run(
            &[
                "classify",
                "--embeddings",
                jsonl.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ],
            None,
        ));
        let got = read_npy(&out);
        assert_eq!((got.rows(), got.dim()), (inputs.rows(), NUM_LABELS));
        let worst = got
            .data()
            .iter()
            .zip(want.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{name}: npy output off by {worst}");
    }
}

#[test]
fn stdin_threshold_and_top_k() {
    let inputs = read_npy(&head_fixture("inputs.npy"));
    let model = head_fixture("matmul_sigmoid_shuffled.onnx");
    let stdin = to_jsonl(&inputs);
    let m = model.to_str().unwrap();
    let fixed = json_lines(&ok(run(
        &[
            "classify",
            "--embeddings",
            "-",
            "--model",
            m,
            "--threshold",
            "0.9",
        ],
        Some(stdin.as_bytes()),
    )));
    for row in &fixed {
        for l in row["labels"].as_array().unwrap() {
            assert!(row["scores"][l.as_str().unwrap()].as_f64().unwrap() >= 0.9);
        }
        let above = row["scores"]
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v.as_f64().unwrap() as f32 >= 0.9)
            .count();
        assert_eq!(row["labels"].as_array().unwrap().len(), above);
    }
    let top = json_lines(&ok(run(
        &[
            "classify",
            "--embeddings",
            "-",
            "--model",
            m,
            "--top-k",
            "3",
        ],
        Some(stdin.as_bytes()),
    )));
    for row in &top {
        let labels = row["labels"].as_array().unwrap();
        assert_eq!(labels.len(), 3);
        let mut all: Vec<f64> = row["scores"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .collect();
        all.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(
            row["scores"][labels[0].as_str().unwrap()].as_f64().unwrap(),
            all[0]
        );
        assert_eq!(
            row["scores"][labels[2].as_str().unwrap()].as_f64().unwrap(),
            all[2]
        );
    }
}

#[test]
fn default_model_runs_and_says_what_it_is() {
    let out = ok(run(
        &["classify", "--embeddings", "-"],
        Some(b"[0.1, 0.2]\n".repeat(0).as_slice()),
    ));
    assert_eq!(out, "", "no rows, no output");
    let help = ok(run(&["classify", "--help"], None));
    assert!(help.contains("embedded default head"), "{help}");
}

/// `emotions --help` and `serve --help` name every route the server answers.
#[test]
fn serve_help_lists_every_route() {
    let top = ok(run(&["--help"], None));
    let serve = ok(run(&["serve", "--help"], None));
    for route in [
        "/classify",
        "/predict",
        "/embed",
        "/info",
        "POST /",
        "/v1/embeddings",
        "/labels",
        "/health",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(serve.contains(route), "serve --help lacks {route}: {serve}");
        assert!(
            top.contains(route.trim_start_matches("POST ")),
            "--help lacks {route}: {top}"
        );
    }
}
