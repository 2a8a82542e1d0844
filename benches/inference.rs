//! Criterion benches. Run: `cargo bench --bench inference`.
//!
//! Inputs are the committed conformance rows, so `scripts/bench_onnxruntime.py` can time
//! onnxruntime on the same data.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use emotions_runtime::Head;
use std::hint::black_box;
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/conformance/fixtures/heads")
        .join(name)
}

/// `rows` embedding rows, cycling through the committed inputs.
fn rows(n: usize) -> Vec<f32> {
    let bytes = std::fs::read(fixture("inputs.npy")).unwrap();
    let inputs = emotions_io::read_npy_f32(&bytes, "inputs.npy").unwrap();
    (0..n)
        .flat_map(|i| inputs.row(i % inputs.rows()).to_vec())
        .collect()
}

fn head(c: &mut Criterion) {
    let mut group = c.benchmark_group("head");
    let path = fixture("linear_classifier_shuffled.onnx");
    for fused in [true, false] {
        let head = Head::builder_from_path(&path).fuse(fused).build().unwrap();
        for n in [1usize, 32, 1024] {
            let input = rows(n);
            group.throughput(Throughput::Elements(n as u64));
            let id = BenchmarkId::new(if fused { "fused" } else { "unfused" }, n);
            group.bench_with_input(id, &input, |b, input| {
                b.iter(|| head.predict(black_box(input), n).unwrap())
            });
        }
    }
    group.finish();
}

fn head_load(c: &mut Criterion) {
    let bytes = std::fs::read(fixture("linear_classifier_shuffled.onnx")).unwrap();
    c.bench_function("head_load_and_optimise", |b| {
        b.iter(|| {
            Head::builder_from_bytes(bytes.clone(), "head")
                .build()
                .unwrap()
        })
    });
}

criterion_group!(benches, head, head_load);
criterion_main!(benches);
