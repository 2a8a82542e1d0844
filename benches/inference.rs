//! Criterion benches. Run: `cargo bench --bench inference`.
//!
//! Inputs are the committed conformance rows, so `benches/onnxruntime_baseline.py` can time
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

/// go_emotions test texts, in file order.
fn test_texts(n: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/go_emotions/test.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .take(n)
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

/// The sentence the onnxruntime script also times: 16 tokens with [CLS] and [SEP].
pub const SHORT_TEXT: &str = "Thank you so much, this is truly wonderful and I love it!";

fn encoder(c: &mut Criterion) {
    emotions_encoder::set_threads(2).unwrap();
    let options = emotions_encoder::EncoderOptions {
        workers: 2,
        ..Default::default()
    };
    let encoder =
        emotions::Encoder::from_files_with(emotions::defaults::encoder_files(), options).unwrap();
    assert_eq!(encoder.tokenize(SHORT_TEXT).unwrap().ids.len(), 16);
    let mut group = c.benchmark_group("encoder");
    group.sample_size(20);
    group.bench_function("1_short_text", |b| {
        b.iter(|| encoder.embed(black_box(&[SHORT_TEXT])).unwrap())
    });
    let texts = test_texts(32);
    group.throughput(Throughput::Elements(32));
    group.bench_function("32_go_emotions_texts", |b| {
        b.iter(|| encoder.embed(black_box(&texts)).unwrap())
    });
    group.finish();

    let classifier = emotions::Classifier::builder()
        .encoder_options(options)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("end_to_end");
    group.sample_size(20);
    group.bench_function("1_short_text_to_labels", |b| {
        b.iter(|| classifier.classify_texts(black_box(&[SHORT_TEXT])).unwrap())
    });
    group.throughput(Throughput::Elements(32));
    group.bench_function("32_texts_to_labels", |b| {
        b.iter(|| classifier.classify_texts(black_box(&texts)).unwrap())
    });
    group.finish();
}

fn encoder_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("encoder_load_and_first_text", |b| {
        b.iter(|| {
            let e = emotions::Encoder::from_files(emotions::defaults::encoder_files()).unwrap();
            e.embed(&[SHORT_TEXT]).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, head, head_load, encoder, encoder_load);
criterion_main!(benches);
