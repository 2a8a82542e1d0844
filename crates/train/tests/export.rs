//! The ONNX written for a trained head loads back through the runtime crate and gives the
//! in-memory model's scores within 1e-6, in every plan.

use emotions_labels::{LABELS, NUM_LABELS};
use emotions_runtime::{Head, Plan};
use emotions_train::{Dense, HeadGraph, TrainOptions, fit};
use std::collections::BTreeMap;

fn synthetic(rows: usize, dim: usize) -> (Vec<f32>, Vec<bool>) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    let x: Vec<f32> = (0..rows * dim).map(|_| next() * 2.0 - 1.0).collect();
    // Label k is "feature k plus feature k+1 is large", with noise.
    let y = (0..rows)
        .flat_map(|r| {
            let row = &x[r * dim..(r + 1) * dim];
            (0..NUM_LABELS)
                .map(|k| row[k % dim] + row[(k + 1) % dim] + 0.3 * (row[(k + 7) % dim]) > 0.4)
                .collect::<Vec<_>>()
        })
        .collect();
    (x, y)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn exported_linear_head_matches_in_memory_scores() {
    let dim = 384;
    let (x, y) = synthetic(600, dim);
    let model = fit(
        &x,
        600,
        dim,
        &y,
        NUM_LABELS,
        &TrainOptions {
            jobs: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let metadata = BTreeMap::from([("encoder".to_string(), "synthetic".to_string())]);
    let graph = HeadGraph {
        hidden: None,
        output: model.to_dense(),
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        metadata,
    };
    let bytes = graph.to_onnx_bytes().unwrap();
    let want = model.predict(&x, 600);
    for plan in [Plan::Decluttered, Plan::Optimized] {
        for fuse in [false, true] {
            let head = Head::builder_from_bytes(bytes.clone(), "exported")
                .plan(plan)
                .fuse(fuse)
                .build()
                .unwrap();
            assert_eq!(head.info().fused, fuse);
            assert_eq!(head.info().encoder(), Some("synthetic"));
            let got = head.predict(&x, 600).unwrap();
            let d = max_diff(&got, &want);
            assert!(d <= 1e-6, "{plan:?} fused={fuse}: max diff {d}");
        }
    }
}

#[test]
fn exported_mlp_head_runs_unfused() {
    let (dim, hidden) = (8, 5);
    let h = Dense {
        inputs: dim,
        outputs: hidden,
        weights: (0..dim * hidden).map(|i| (i as f32 * 0.37).sin()).collect(),
        bias: vec![0.1; hidden],
    };
    let o = Dense {
        inputs: hidden,
        outputs: NUM_LABELS,
        weights: (0..hidden * NUM_LABELS)
            .map(|i| (i as f32 * 0.11).cos())
            .collect(),
        bias: vec![-0.2; NUM_LABELS],
    };
    let graph = HeadGraph {
        hidden: Some(h.clone()),
        output: o.clone(),
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        metadata: BTreeMap::new(),
    };
    let head = Head::builder_from_bytes(graph.to_onnx_bytes().unwrap(), "mlp")
        .expected_dim(Some(dim))
        .build()
        .unwrap();
    assert!(!head.info().fused, "an MLP is not linear-logistic");
    let x: Vec<f32> = (0..3 * dim).map(|i| (i as f32 * 0.7).sin()).collect();
    let got = head.predict(&x, 3).unwrap();
    for r in 0..3 {
        let a: Vec<f64> = (0..hidden)
            .map(|j| {
                ((0..dim)
                    .map(|i| x[r * dim + i] as f64 * h.weights[i * hidden + j] as f64)
                    .sum::<f64>()
                    + h.bias[j] as f64)
                    .max(0.0)
            })
            .collect();
        for k in 0..NUM_LABELS {
            let z: f64 = (0..hidden)
                .map(|j| a[j] * o.weights[j * NUM_LABELS + k] as f64)
                .sum::<f64>()
                + o.bias[k] as f64;
            let p = 1.0 / (1.0 + (-z).exp());
            assert!(
                (got[r * NUM_LABELS + k] as f64 - p).abs() < 1e-6,
                "row {r} label {k}"
            );
        }
    }
}
