//! Each kernel alone, on every instruction-set class this CPU runs, at MiniLM's sizes: a batch
//! of 32 texts of 24 tokens (768 token rows), 384 wide, 12 heads, 1536 in the feed-forward.
//!
//! `cargo bench -p emotions-kernels` (single-threaded; `-- head` for one group).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use emotions_kernels::attention::{Scales, Shape, attend};
use emotions_kernels::f32_rows::F32Weights;
use emotions_kernels::gelu::gelu_in_place;
use emotions_kernels::head::{HeadKernel, NUM_LABELS};
use emotions_kernels::i16xi8::{Int16Weights, int8_grid};
use emotions_kernels::layer_norm::normalise_rows;
use emotions_kernels::low_rank::LowRank;
use emotions_kernels::softmax::softmax_rows;
use emotions_kernels::u8xi8::Uint8Weights;
use emotions_kernels::{Isa, single_threaded};
use std::hint::black_box;

const TOKENS: usize = 768;
const HIDDEN: usize = 384;
const FFN: usize = 1536;

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005) | 1;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Int8-grid weights `[k, n]`: integers in ±127 times a scale per column.
/// Every column reaches ±127 in its first row, as a symmetric quantiser leaves it (else the
/// grid's per-column scale is not its maximum / 127, and no grid is found).
fn grid(k: usize, n: usize) -> Vec<f32> {
    let scale = |col: usize| 0.01 + col as f32 * 1e-5;
    let mut w: Vec<f32> = values(k * n, 3)
        .iter()
        .enumerate()
        .map(|(i, v)| (v * 127.0).round() * scale(i % n))
        .collect();
    for (col, w) in w[..n].iter_mut().enumerate() {
        *w = 127.0 * scale(col);
    }
    w
}

fn projections(c: &mut Criterion) {
    let (k, n) = (HIDDEN, FFN);
    let (scales, q) = int8_grid(&grid(k, n), k, n).expect("an int8 grid");
    let uint8 = Uint8Weights::new(&q, k, n, scales.clone());
    let x = values(TOKENS * k, 5);
    let mut y = vec![0f32; TOKENS * n];
    let mut group = c.benchmark_group("projection_768x384x1536");
    for isa in Isa::all_available() {
        // Packed for the class that runs them, as the runtime packs them.
        let int16 = Int16Weights::from_int8(&q, k, n, scales.clone(), isa);
        group.bench_function(BenchmarkId::new("i16xi8", isa), |b| {
            b.iter(|| single_threaded(|| int16.run(isa, black_box(&x), TOKENS, None, None, &mut y)))
        });
        // Only VNNI has the 8-bit kernel; the others run its portable loop.
        if isa.has_u8_dot() {
            group.bench_function(BenchmarkId::new("u8xi8", isa), |b| {
                b.iter(|| {
                    single_threaded(|| uint8.run(isa, black_box(&x), TOKENS, None, None, &mut y))
                })
            });
        }
    }
    let w = tract_data::prelude::Tensor::from_shape(&[k, n], &grid(k, n)).unwrap();
    let f32w = F32Weights::pack(&w).unwrap().expect("an f32 kernel");
    let xt = tract_data::prelude::Tensor::from_shape(&[TOKENS, k], &x).unwrap();
    let mut yt = tract_data::prelude::Tensor::from_shape(&[TOKENS, n], &y).unwrap();
    group.bench_function(BenchmarkId::new("f32_rows", f32w.kernel_name()), |b| {
        b.iter(|| single_threaded(|| f32w.run(black_box(&xt), TOKENS, None, None, &mut yt)))
    });
    group.finish();
}

fn f32_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("f32");
    let scale = values(HIDDEN, 7);
    let bias = values(HIDDEN, 9);
    let states = values(TOKENS * HIDDEN, 11);
    let ffn = values(TOKENS * FFN, 13);
    let (q, k, v) = (
        states.clone(),
        values(TOKENS * HIDDEN, 15),
        values(TOKENS * HIDDEN, 17),
    );
    let shape = Shape {
        batch: 32,
        seq: 24,
        kseq: 24,
        heads: 12,
        depth: HIDDEN / 12,
    };
    let scales = Scales {
        q: 0.125,
        k: 1.0,
        nan_to_zero: false,
    };
    let head = values(HIDDEN * NUM_LABELS, 19);
    let head_bias = values(NUM_LABELS, 21);
    let side = LowRank::new(
        8,
        HIDDEN,
        HIDDEN,
        &values(8 * HIDDEN, 23),
        &values(HIDDEN * 8, 25),
    );
    for isa in Isa::all_available() {
        group.bench_function(BenchmarkId::new("layer_norm_768x384", isa), |b| {
            let mut x = states.clone();
            b.iter(|| {
                single_threaded(|| normalise_rows(isa, black_box(&mut x), &scale, &bias, 1e-12))
            })
        });
        group.bench_function(BenchmarkId::new("gelu_768x1536", isa), |b| {
            let mut x = ffn.clone();
            b.iter(|| single_threaded(|| gelu_in_place(isa, black_box(&mut x)).unwrap()))
        });
        group.bench_function(BenchmarkId::new("attention_32x24x12x32", isa), |b| {
            let mut out = vec![0f32; TOKENS * HIDDEN];
            b.iter(|| {
                single_threaded(|| {
                    attend(isa, &shape, scales, &q, &k, &v, None, black_box(&mut out))
                })
            })
        });
        group.bench_function(BenchmarkId::new("head_1024x384", isa), |b| {
            let kernel = HeadKernel::new(isa, HIDDEN, &head, &head_bias);
            let x = values(1024 * HIDDEN, 27);
            let mut out = vec![0f32; 1024 * NUM_LABELS];
            b.iter(|| kernel.run(black_box(&x), &mut out))
        });
        group.bench_function(BenchmarkId::new("low_rank_768x384_r8", isa), |b| {
            let mut out = vec![0f32; TOKENS * HIDDEN];
            b.iter(|| single_threaded(|| side.add_to(isa, black_box(&states), TOKENS, &mut out)))
        });
    }
    group.bench_function("softmax_rows_32x12x24x24", |b| {
        let mut x = values(32 * 12 * 24 * 24, 29);
        b.iter(|| softmax_rows(black_box(&mut x), 24))
    });
    group.finish();
}

criterion_group! {
    name = kernels;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = projections, f32_kernels
}
criterion_main!(kernels);
