//! Every committed head, every row, through tract's decluttered and optimised plans, fused and
//! unfused, against onnxruntime's reference scores and decisions.

use emotions_conformance::{AbsTolerance, read_fixture};
use emotions_labels::{DecisionPolicy, NUM_LABELS, Thresholds};
use emotions_runtime::{Head, HeadLayout, Plan};

const HEADS: [(&str, HeadLayout); 3] = [
    ("linear_classifier_shuffled", HeadLayout::PerLabelOutputs),
    ("matmul_sigmoid_shuffled", HeadLayout::PerLabelOutputs),
    ("gemm_single_output", HeadLayout::SingleOutput),
];

/// The contract: tract within 1e-6 of onnxruntime on every element.
const TOLERANCE: AbsTolerance = AbsTolerance(1e-6);

fn head_path(name: &str) -> std::path::PathBuf {
    emotions_conformance::fixtures_dir().join(format!("heads/{name}.onnx"))
}

#[test]
fn every_head_matches_onnxruntime_in_every_plan() {
    let inputs = read_fixture("heads/inputs.npy");
    assert!(inputs.rows() >= 200, "at least 200 rows");
    let policy = DecisionPolicy::PerLabel(Thresholds::card_defaults());
    for (name, layout) in HEADS {
        let want = read_fixture(&format!("heads/{name}.scores.npy"));
        let want_decisions = read_fixture(&format!("heads/{name}.decisions.npy"));
        assert_eq!((want.rows(), want.dim()), (inputs.rows(), NUM_LABELS));
        for plan in [Plan::Decluttered, Plan::Optimized] {
            for fuse in [false, true] {
                let head = Head::builder_from_path(head_path(name))
                    .plan(plan)
                    .fuse(fuse)
                    .build()
                    .unwrap();
                assert_eq!(head.info().layout, layout);
                assert_eq!(
                    head.info().fused,
                    fuse,
                    "{name}: every committed head is linear-logistic"
                );
                let got = head.predict(inputs.data(), inputs.rows()).unwrap();
                let case = format!("{name} {plan:?} fused={fuse}");
                match TOLERANCE.compare(&got, want.data(), NUM_LABELS) {
                    Ok(report) => eprintln!("{case}: {report}"),
                    Err(mismatch) => panic!("{case}: {mismatch}"),
                }
                let decisions = policy.decide_rows(&got);
                for (row, d) in decisions.iter().enumerate() {
                    for label in 0..NUM_LABELS {
                        let want = want_decisions.row(row)[label] == 1.0;
                        assert_eq!(
                            d.is_predicted(label),
                            want,
                            "{case}: row {row}, label {label}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn batch_size_does_not_change_scores() {
    let inputs = read_fixture("heads/inputs.npy");
    let head = Head::builder_from_path(head_path("linear_classifier_shuffled"))
        .build()
        .unwrap();
    let all = head.predict(inputs.data(), inputs.rows()).unwrap();
    for (start, len) in [(0, 1), (7, 3), (100, 64), (inputs.rows() - 1, 1)] {
        let d = inputs.dim();
        let part = head
            .predict(&inputs.data()[start * d..(start + len) * d], len)
            .unwrap();
        let want = &all[start * NUM_LABELS..(start + len) * NUM_LABELS];
        TOLERANCE
            .compare(&part, want, NUM_LABELS)
            .unwrap_or_else(|m| panic!("batch {start}+{len}: {m}"));
    }
}

#[test]
fn one_head_serves_many_threads() {
    let inputs = read_fixture("heads/inputs.npy");
    let head = Head::builder_from_path(head_path("matmul_sigmoid_shuffled"))
        .build()
        .unwrap();
    let want = head.predict(inputs.data(), inputs.rows()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (head, inputs, want) = (&head, &inputs, &want);
            s.spawn(move || {
                for _ in 0..20 {
                    let got = head.predict(inputs.data(), inputs.rows()).unwrap();
                    assert_eq!(&got, want, "thread {t}");
                }
            });
        }
    });
}

/// `predict` validates its input itself: the first non-finite value is named by row and column,
/// whichever worker thread holds it, in every plan.
#[test]
fn non_finite_inputs_name_the_first_bad_row_in_every_plan() {
    let inputs = read_fixture("heads/inputs.npy");
    let dim = inputs.dim();
    // Enough rows that the input is split between threads and into several blocks.
    let rows = 1500;
    let mut x: Vec<f32> = (0..rows)
        .flat_map(|i| inputs.row(i % inputs.rows()).to_vec())
        .collect();
    x[1200 * dim + 3] = f32::INFINITY;
    x[901 * dim + 17] = f32::NAN;
    for plan in [Plan::Decluttered, Plan::Optimized] {
        for fuse in [false, true] {
            let head = Head::builder_from_path(head_path("gemm_single_output"))
                .plan(plan)
                .fuse(fuse)
                .threads(2)
                .build()
                .unwrap();
            let err = head.predict(&x, rows).unwrap_err().to_string();
            assert!(
                err.contains("row 901, column 17") && err.contains("NaN"),
                "{plan:?} fused={fuse}: {err}"
            );
        }
    }
}
