//! The attention kernel: per (text, head), 16 query rows in the vector lanes, so the softmax
//! runs down the lanes with no horizontal reductions.

// The kernels index lanes, keys and rows explicitly: fixed-size loops over small arrays are
// what the compiler keeps in vector registers.
#![allow(clippy::needless_range_loop)]

use crate::generic::attention::{Operands, attend_generic};
use crate::isa::{F32Lanes, Isa};
#[cfg(target_arch = "x86_64")]
use crate::x86_64::f32 as x86;

pub use crate::generic::attention::{Bias, Scales, Shape};

/// Runs the fused block on `isa`, texts spread over the thread pool when it has one (a lone
/// batch with `--threads 2`).
#[allow(clippy::too_many_arguments)]
pub fn attend(
    isa: Isa,
    shape: &Shape,
    scales: Scales,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Bias,
    out: &mut [f32],
) {
    attend_with(isa, shape, scales, Operands { q, k, v, bias }, out)
}

/// [`attend`] on the instructions `isa` (a test may force any the CPU runs).
fn attend_with(isa: Isa, shape: &Shape, scales: Scales, ops: Operands, out: &mut [f32]) {
    let per_text = shape.seq * shape.heads * shape.depth;
    if per_text == 0 {
        return;
    }
    assert_eq!(out.len(), shape.batch * per_text);
    // One text per task: more than one block is more than one text.
    let Ok(()) =
        crate::pool::for_each_block::<std::convert::Infallible>(out, per_text, |b, out| {
            attend_text(isa, shape, scales, ops, b, out);
            Ok(())
        });
}

/// Text `b`'s output rows `[seq, heads, depth]`.
fn attend_text(isa: Isa, shape: &Shape, scales: Scales, ops: Operands, b: usize, out: &mut [f32]) {
    match isa.f32_lanes() {
        // SAFETY: an `Isa` comes only from detection, so this CPU runs its instructions.
        #[cfg(target_arch = "x86_64")]
        F32Lanes::Avx512 => unsafe { x86::attend_avx512(shape, scales, ops, b, out) },
        #[cfg(target_arch = "x86_64")]
        F32Lanes::Avx2 => unsafe { x86::attend_avx2(shape, scales, ops, b, out) },
        #[cfg(target_arch = "aarch64")]
        F32Lanes::Neon => unsafe { crate::aarch64::f32::attend_neon(shape, scales, ops, b, out) },
        _ => attend_generic::<false>(shape, scales, ops, b, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain f64 attention: `softmax((q·sq)(k·sk)ᵀ + bias) v`, bias `[batch, 1, seq, kseq]`.
    fn reference(
        s: &Shape,
        sq: f32,
        sk: f32,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        bias: &[f32],
    ) -> Vec<f64> {
        let (d, w) = (s.depth, s.heads * s.depth);
        let mut out = vec![0f64; s.batch * s.seq * w];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..s.seq {
                    let scores: Vec<f64> = (0..s.kseq)
                        .map(|j| {
                            let dot: f64 = (0..d)
                                .map(|x| {
                                    (q[(b * s.seq + i) * w + h * d + x] * sq) as f64
                                        * (k[(b * s.kseq + j) * w + h * d + x] * sk) as f64
                                })
                                .sum();
                            dot + bias[(b * s.seq + i) * s.kseq + j] as f64
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for x in 0..d {
                        out[((b * s.seq + i) * s.heads + h) * d + x] = (0..s.kseq)
                            .map(|j| e[j] / sum * v[(b * s.kseq + j) * w + h * d + x] as f64)
                            .sum();
                    }
                }
            }
        }
        out
    }

    /// [`attend`] forced onto `isa`, into an output filled with `fill` first.
    fn attend_on(
        isa: Isa,
        s: &Shape,
        scales: Scales,
        [q, k, v]: [&[f32]; 3],
        bias: Bias,
        fill: f32,
    ) -> Vec<f32> {
        let mut out = vec![fill; s.batch * s.seq * s.heads * s.depth];
        attend_with(isa, s, scales, Operands { q, k, v, bias }, &mut out);
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919) % 211) as f32 / 105.0 - 1.0)
            .collect()
    }

    #[test]
    fn fused_attention_matches_plain_attention() {
        // Odd sizes: rows past a block of 16, keys past a block of 8, depth past a block of 16.
        for (batch, seq, heads, depth) in [(2, 21, 3, 20), (1, 1, 2, 16), (3, 37, 2, 32)] {
            let s = Shape {
                batch,
                seq,
                kseq: seq,
                heads,
                depth,
            };
            let n = batch * seq * heads * depth;
            let (q, k, v) = (values(n, 1), values(n, 2), values(n, 3));
            // Mask the last two keys of text 0, as an attention mask's bias does.
            let mut bias = vec![0f32; batch * seq * seq];
            for i in 0..seq {
                for j in seq.saturating_sub(2).max(1)..seq {
                    bias[i * seq + j] = f32::MIN;
                }
            }
            let scales = Scales {
                q: 0.42,
                k: 0.42,
                nan_to_zero: true,
            };
            let want = reference(&s, 0.42, 0.42, &q, &k, &v, &bias);
            let bias = Some((&bias[..], [seq * seq, 0, seq, 1]));
            // The copies that fuse multiply-adds give the same bits, whatever their lane width
            // (AVX-512's and AVX2's).
            let mut fused: Option<(Isa, Vec<f32>)> = None;
            for isa in Isa::all_available() {
                let out = attend_on(isa, &s, scales, [&q, &k, &v], bias, 0.0);
                if isa.class() != crate::IsaClass::Portable {
                    match &fused {
                        None => fused = Some((isa, out.clone())),
                        Some((first, bits)) => assert!(
                            bits.iter()
                                .zip(&out)
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{isa} differs from {first}, {batch}×{seq}×{heads}×{depth}"
                        ),
                    }
                }
                let worst = out
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (*g as f64 - w).abs())
                    .fold(0f64, f64::max);
                assert!(
                    worst < 2e-6,
                    "{isa}, {batch}×{seq}×{heads}×{depth}: worst {worst:e}"
                );
            }
        }
    }

    #[test]
    fn texts_spread_over_a_thread_pool_give_identical_outputs() {
        use crate::pool::{single_threaded, with_threads};
        let s = Shape {
            batch: 5,
            seq: 19,
            kseq: 19,
            heads: 2,
            depth: 32,
        };
        let n = 5 * 19 * 64;
        let (q, k, v) = (values(n, 4), values(n, 5), values(n, 6));
        let bias = values(5 * 19 * 19, 7);
        let scales = Scales {
            q: 0.5,
            k: 0.5,
            nan_to_zero: true,
        };
        let run = || {
            let mut out = vec![0f32; n];
            attend(
                Isa::widest(),
                &s,
                scales,
                &q,
                &k,
                &v,
                Some((&bias, [361, 0, 19, 1])),
                &mut out,
            );
            out
        };
        let alone = single_threaded(run);
        let pooled = with_threads(2, run);
        assert!(
            alone
                .iter()
                .zip(&pooled)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn a_row_with_an_infinite_score_follows_the_graphs_nan_rule() {
        let s = Shape {
            batch: 1,
            seq: 3,
            kseq: 3,
            heads: 1,
            depth: 16,
        };
        let (q, k, v) = (values(48, 1), values(48, 2), values(48, 3));
        let mut bias = [0f32; 9];
        bias[4] = f32::INFINITY; // row 1: softmax is NaN
        let runs = Isa::all_available()
            .into_iter()
            .flat_map(|isa| [(isa, true, 0.0f32), (isa, false, f32::NAN)]);
        for (isa, nan_to_zero, check) in runs {
            let scales = Scales {
                q: 1.0,
                k: 1.0,
                nan_to_zero,
            };
            let bias = Some((&bias[..], [9, 0, 3, 1]));
            let out = attend_on(isa, &s, scales, [&q, &k, &v], bias, 7.0);
            let row1 = &out[16..32];
            assert!(
                row1.iter().all(|x| x.to_bits() == check.to_bits()),
                "{isa}: {row1:?}"
            );
            assert!(
                out[..16]
                    .iter()
                    .chain(&out[32..])
                    .all(|x| x.is_finite() && *x != 7.0)
            );
        }
    }
}
