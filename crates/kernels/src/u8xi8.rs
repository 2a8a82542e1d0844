//! Projections with 8-bit activations, for graphs that ask for them: onnxruntime's
//! `quantize_dynamic` output (`DynamicQuantizeLinear` + `MatMulInteger`), whose activations are
//! rounded to u8 per tensor at run time.
//!
//! Here they are rounded per token instead, symmetrically (`s = max|x| / 127`, stored as
//! `round(x / s) + 128`): measured about as accurate as the file's per-tensor asymmetric
//! rounding (see the conformance suite). `vpdpbusd` multiplies four u8
//! activations by four int8 weights per lane: twice the rate of [`crate::i16xi8`]. The sums are
//! exact: `Σ (xq - 128)·w = Σ xq·w - 128·Σ w`, with `Σ w` per feature computed at load. The
//! fast paths are AVX-512 VNNI and, on AArch64, `SDOT` (dotprod) and `USMMLA` (i8mm); a
//! portable path gives the same bits for tests and other CPUs (where the encoder uses the
//! 16-bit kernels instead).

use crate::generic::i16xi8::Output;
use crate::generic::u8xi8::{BLOCK, OUTLIER_MAX, Operands, ZERO};
use crate::i16xi8::{abs_max, quantise_rows};
use crate::isa::Isa;
use crate::pool::for_each_index;

pub use crate::generic::u8xi8::Uint8Weights;

impl Uint8Weights {
    /// `y = x · W (+ bias) (+ residual)` for `m` rows of `x` (`m × k`), into `y` (`m × n`), on
    /// the 8-bit dot-product kernel where `isa` has one ([`Isa::has_u8_dot`]: VNNI, `SDOT`,
    /// `USMMLA`), else the portable one: the same bits. Column blocks are spread over the current pool.
    ///
    /// # Panics
    /// When the slices are not those lengths.
    pub fn run(
        &self,
        isa: Isa,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        y: &mut [f32],
    ) {
        let fast = match self.outliers.is_empty() {
            true => isa.has_u8_dot(),
            false => Uint8Weights::outliers_run_fast_on(isa),
        };
        assert_eq!(x.len(), m * self.k);
        assert_eq!(y.len(), m * self.n);
        assert!(bias.is_none_or(|b| b.len() == self.n));
        assert!(residual.is_none_or(|r| r.len() == m * self.n));
        if m == 0 {
            return;
        }
        let (a, a16, token_scales) = self.quantise(isa, fast, x, m);
        let op = Operands {
            w: self,
            a: &a,
            a16: &a16,
            token_scales: &token_scales,
            bias,
            residual,
            m,
        };
        let out = Output {
            y: y.as_mut_ptr(),
            n: self.n,
        };
        let block = |b: usize| {
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: an `Isa` comes only from detection, and this one has VNNI; block b
                // writes only its own columns of y.
                return unsafe { crate::x86_64::u8xi8::block_vnni(&op, b, out) };
            }
            #[cfg(target_arch = "aarch64")]
            {
                use crate::{aarch64::u8xi8 as arm, isa::IsaClass};
                // SAFETY: an `Isa` comes only from detection, and `fast` holds only for the
                // two classes with dotprod (i8mm too on the first); block b writes only its own
                // columns of y.
                if fast {
                    return match isa.class() {
                        IsaClass::NeonI8mm => unsafe { arm::block_i8mm(&op, b, out) },
                        _ => unsafe { arm::block_dotprod(&op, b, out) },
                    };
                }
            }
            // SAFETY: block b writes only its own columns of y.
            unsafe { op.block_portable(b, out) }
        };
        for_each_index(self.n.div_ceil(BLOCK), block);
    }

    /// Whether `isa` has an 8-bit kernel with the outlier part: AVX-512 VNNI's (the AArch64
    /// dot-product copies have none, and would run the portable loop instead).
    pub fn outliers_run_fast_on(isa: Isa) -> bool {
        isa.has_u8_dot() && cfg!(target_arch = "x86_64")
    }

    /// Rows of `x` as u8 (`m × k4`, zero-point 128, padded with it), the outlier channels as
    /// i16 (`m × o_even`), and each row's scale.
    fn quantise(&self, isa: Isa, fast: bool, x: &[f32], m: usize) -> (Vec<u8>, Vec<i16>, Vec<f32>) {
        let isa = if fast { isa } else { Isa::portable() };
        let round = |x: &[f32], inv: f32, q: &mut [u8]| {
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: `fast` is only set where the ISA has AVX-512 VNNI.
                return unsafe { crate::x86_64::u8xi8::quantise_row(x, inv, q) };
            }
            for (q, v) in q.iter_mut().zip(x) {
                *q = ((v * inv).round_ties_even() as i32 + ZERO) as u8;
            }
        };
        if self.outliers.is_empty() {
            let (a, scales) = quantise_rows(isa, x, (m, self.k, self.k4), 127.0, ZERO as u8, round);
            return (a, Vec::new(), scales);
        }
        let (k, o_even) = (self.k, self.o_even);
        let mut a = vec![ZERO as u8; m * self.k4];
        let mut a16 = vec![0i16; m * o_even];
        let mut scales = vec![0f32; m];
        let mut rest = vec![0f32; k];
        for row in 0..m {
            let x = &x[row * k..(row + 1) * k];
            // The other channels' largest value sets the step; the outliers' are zeroed here.
            rest.copy_from_slice(x);
            let mut outlier_max = 0f32;
            let mut finite = true;
            for &o in &self.outliers {
                finite &= rest[o].is_finite();
                outlier_max = outlier_max.max(rest[o].abs());
                rest[o] = 0.0;
            }
            let amax = abs_max(isa, &rest);
            if !finite || !amax.is_finite() {
                scales[row] = f32::NAN;
                continue;
            }
            let step = (amax / 127.0).max(outlier_max / OUTLIER_MAX);
            if step == 0.0 {
                continue;
            }
            scales[row] = step;
            let inv = 1.0 / step;
            round(&rest, inv, &mut a[row * self.k4..row * self.k4 + k]);
            for (q, &o) in a16[row * o_even..].iter_mut().zip(&self.outliers) {
                *q = (x[o] * inv)
                    .round_ties_even()
                    .clamp(-OUTLIER_MAX, OUTLIER_MAX) as i16;
            }
        }
        (a, a16, scales)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every shape edge (k not a multiple of 4, n past a block, rows past a tile), with bias,
    /// residual and a NaN row: the VNNI and portable paths give the same bits, within the
    /// rounding of 8-bit activations of f64 math.
    #[test]
    fn both_paths_give_the_same_bits_close_to_f64() {
        for (m, k, n) in [(1, 4, 1), (13, 385, 50), (9, 1536, 97)] {
            let q: Vec<i8> = values(k * n, 3)
                .iter()
                .map(|v| (v * 127.0).round() as i8)
                .collect();
            let scales: Vec<f32> = (0..n).map(|c| 0.01 + c as f32 * 1e-4).collect();
            // Without outlier channels, and with some (an odd count, so the i16 part pads).
            for outliers in [vec![], vec![k - 1, 0, k / 2]] {
                let weights = Uint8Weights::with_outliers(&q, k, n, scales.clone(), &outliers);
                let mut x = values(m * k, 5);
                for r in 0..m {
                    for &o in &outliers {
                        x[r * k + o] *= 40.0;
                    }
                }
                x[(m - 1) * k + 1 % k] = f32::NAN;
                let bias = values(n, 7);
                let residual = values(m * n, 11);
                let mut portable = vec![0f32; m * n];
                weights.run(
                    Isa::portable(),
                    &x,
                    m,
                    Some(&bias),
                    Some(&residual),
                    &mut portable,
                );
                // Every class the CPU runs: VNNI's own kernel, and the portable one elsewhere.
                for isa in Isa::all_available() {
                    for threads in [1, 2] {
                        let mut got = vec![0f32; m * n];
                        crate::pool::with_threads(threads, || {
                            weights.run(isa, &x, m, Some(&bias), Some(&residual), &mut got)
                        });
                        let same = portable
                            .iter()
                            .zip(&got)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{isa} at {threads} threads, {m}×{k}×{n}");
                    }
                }
                for r in 0..m {
                    let row = &x[r * k..(r + 1) * k];
                    // The step is set by the other channels (outliers take it too, in i16).
                    let amax =
                        row.iter()
                            .enumerate()
                            .filter(|(i, _)| !outliers.contains(i))
                            .fold(0f32, |a, (_, v)| a.max(v.abs())) as f64;
                    for c in 0..n {
                        let got = portable[r * n + c];
                        if r == m - 1 {
                            assert!(got.is_nan(), "a NaN row stays NaN");
                            continue;
                        }
                        let w = |i: usize| q[i * n + c] as f64 * scales[c] as f64;
                        let want: f64 = (0..k).map(|i| row[i] as f64 * w(i)).sum::<f64>()
                            + bias[c] as f64
                            + residual[r * n + c] as f64;
                        // Each activation off by at most half a step of amax / 127.
                        let bound: f64 = (0..k).map(|i| w(i).abs()).sum::<f64>() * amax / 254.0
                            + 1e-5 * want.abs().max(1.0);
                        assert!((got as f64 - want).abs() <= bound, "{got} vs {want}");
                    }
                }
            }
        }
    }
}
