//! Projections with 8-bit activations, for graphs that ask for them: onnxruntime's
//! `quantize_dynamic` output (`DynamicQuantizeLinear` + `MatMulInteger`), whose activations are
//! rounded to u8 per tensor at run time.
//!
//! Here they are rounded per token instead, asymmetrically as the file does per tensor (`s =
//! (max - min) / 255`, stored as `round(x / s) + zero`). `vpdpbusd` multiplies four u8
//! activations by four int8 weights per lane: twice the rate of [`crate::i16xi8`]. The sums are
//! exact: `Σ (xq - zero)·w = Σ xq·w - zero·Σ w`, with `Σ w` per feature computed at load. The
//! fast paths are AVX-512 VNNI and, on AArch64, `SDOT` (dotprod) and `USMMLA` (i8mm); a
//! portable path gives the same bits for tests and other CPUs (where the encoder uses the
//! 16-bit kernels instead).

use crate::generic::i16xi8::Output;
use crate::generic::u8xi8::{BLOCK, FILL, OUTLIER_MAX, Operands};
use crate::isa::Isa;
use crate::pool::for_each_index;
use rayon::prelude::*;

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
        let (a, a16, token_scales, zeros) = self.quantise(fast, x, m);
        let op = Operands {
            w: self,
            a: &a,
            a16: &a16,
            token_scales: &token_scales,
            zeros: &zeros,
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

    /// Rows of `x` as u8 (`m × k4`), the outlier channels as i16 (`m × o_even`), and each
    /// row's scale and zero point.
    ///
    /// Each token is rounded asymmetrically, `xq = round(x / s) + zero` with `s = (max - min) /
    /// 255` over the other channels (and 0): a GELU's output, nearly all ≥ 0, takes half the
    /// step that `max|x| / 127` would. Rows are spread over the current pool: run before the
    /// column blocks, on one thread this was 5% of a 2-thread `embed`.
    #[allow(clippy::type_complexity)]
    fn quantise(&self, fast: bool, x: &[f32], m: usize) -> (Vec<u8>, Vec<i16>, Vec<f32>, Vec<i32>) {
        let (k, k4) = (self.k, self.k4);
        // Rows of at least one value, so that every row has its chunk; without outliers the
        // kernels read none of it.
        let o_stride = self.o_even.max(1);
        let mut a = vec![FILL; m * k4];
        let mut a16 = vec![0i16; m * o_stride];
        let mut scales = vec![0f32; m];
        let mut zeros = vec![0i32; m];
        let scratch = || vec![0f32; if self.outliers.is_empty() { 0 } else { k }];
        let one = |rest: &mut Vec<f32>, (row, ((q, q16), (scale, zero))): RowOut| {
            let x = &x[row * k..(row + 1) * k];
            (*scale, *zero) = self.quantise_row(fast, x, rest, &mut q[..k], q16);
        };
        let rows = a
            .par_chunks_mut(k4)
            .zip(a16.par_chunks_mut(o_stride))
            .zip(scales.par_iter_mut().zip(zeros.par_iter_mut()))
            .enumerate();
        match crate::pool::current() {
            // Fewer rows are not worth waking a thread for.
            Some(pool) if m >= 64 => pool.install(|| rows.for_each_init(scratch, one)),
            _ => {
                let mut rest = scratch();
                let rows = a
                    .chunks_mut(k4)
                    .zip(a16.chunks_mut(o_stride))
                    .zip(scales.iter_mut().zip(zeros.iter_mut()))
                    .enumerate();
                rows.for_each(|row| one(&mut rest, row));
            }
        }
        if self.o_even == 0 {
            a16 = Vec::new();
        }
        (a, a16, scales, zeros)
    }

    /// One token: its u8 row `q` (`k` values), its outliers `q16`, and its scale and zero
    /// point. `rest` is scratch of `k` values when there are outlier channels.
    fn quantise_row(
        &self,
        fast: bool,
        x: &[f32],
        rest: &mut [f32],
        q: &mut [u8],
        q16: &mut [i16],
    ) -> (f32, i32) {
        // The other channels' range sets the step; the outliers' are zeroed here.
        let mut outlier_max = 0f32;
        let mut finite = true;
        let others = match self.outliers.is_empty() {
            true => x,
            false => {
                rest.copy_from_slice(x);
                for &o in &self.outliers {
                    finite &= rest[o].is_finite();
                    outlier_max = outlier_max.max(rest[o].abs());
                    rest[o] = 0.0;
                }
                &rest[..]
            }
        };
        let (lo, hi) = min_max(fast, others);
        if !finite || !lo.is_finite() || !hi.is_finite() {
            return (f32::NAN, 0);
        }
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let step = ((hi - lo) / 255.0).max(outlier_max / OUTLIER_MAX);
        if step == 0.0 {
            return (0.0, 0);
        }
        // -lo / step is within 0..=255 by construction.
        let zero = (round_even(-lo / step) as i32).clamp(0, 255);
        let inv = 1.0 / step;
        round_row(fast, others, inv, zero, q);
        for (q, &o) in q16.iter_mut().zip(&self.outliers) {
            *q = round_even((x[o] * inv).clamp(-OUTLIER_MAX, OUTLIER_MAX)) as i16;
        }
        (step, zero)
    }
}

type RowOut<'a> = (
    usize,
    ((&'a mut [u8], &'a mut [i16]), (&'a mut f32, &'a mut i32)),
);

/// `v.round_ties_even()` as an integer (a zero may lose its sign), for |v| ≤ 2^22, without a
/// libm call: x86-64's baseline has no rounding instruction, and `rintf` per outlier value was
/// 1.5% of `embed`. Adding and subtracting 1.5 · 2^23 leaves no fraction bits, rounding to
/// nearest even.
fn round_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    debug_assert!(v.abs() <= 4_194_304.0);
    (v + MAGIC) - MAGIC
}

/// `q = clamp(round_ties_even(x · inv) + zero, 0, 255)`.
fn round_row(fast: bool, x: &[f32], inv: f32, zero: i32, q: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: `fast` is only set where the ISA has AVX-512 VNNI.
        return unsafe { crate::x86_64::u8xi8::quantise_row(x, inv, zero, q) };
    }
    let _ = fast;
    for (q, v) in q.iter_mut().zip(x) {
        // |x · inv| ≤ 255 but for the outliers' step, which only makes it smaller.
        *q = (round_even(v * inv) as i32 + zero).clamp(0, 255) as u8;
    }
}

/// The least and the largest of `x`, both NaN if any is NaN.
fn min_max(fast: bool, x: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: as above.
        return unsafe { crate::x86_64::u8xi8::min_max(x) };
    }
    let _ = fast;
    match x.iter().any(|v| v.is_nan()) {
        true => (f32::NAN, f32::NAN),
        false => x
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            }),
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

    #[test]
    fn rounding_without_libm_is_round_ties_even() {
        let mut v = -300.0f32;
        while v <= 300.0 {
            for x in [v, v + 0.5, v + 0.25, v + 0.75, v + 1e-3, v - 1e-3] {
                // As integers, which is how they are used: -0.5 gives +0, not -0.
                assert_eq!(round_even(x) as i32, x.round_ties_even() as i32, "{x}");
            }
            v += 1.0;
        }
        for x in [
            32767.0f32,
            -32767.0,
            32766.5,
            -32766.5,
            4_194_303.5,
            -4_194_303.5,
        ] {
            assert_eq!(round_even(x), x.round_ties_even(), "{x}");
        }
    }

    /// Each token's step spans its own range (and 0) in 255 steps, with the zero point where 0
    /// falls: a row of values ≥ 0 takes half the step of `max|x| / 127`. Every value comes
    /// back within half a step, on every class the CPU runs.
    #[test]
    fn tokens_are_rounded_over_their_own_range() {
        let k = 37;
        let q = vec![1i8; k * 3];
        let weights = Uint8Weights::new(&q, k, 3, vec![1.0; 3]);
        let rows: Vec<f32> = [
            (0..k).map(|i| i as f32 / 36.0).collect::<Vec<_>>(),
            (0..k).map(|i| -1.0 + 4.0 * i as f32 / 36.0).collect(),
            (0..k).map(|i| 0.5 + i as f32).collect(),
        ]
        .concat();
        for isa in Isa::all_available() {
            let fast = isa.has_u8_dot();
            let (a, _, scales, zeros) = weights.quantise(fast, &rows, 3);
            assert_eq!(scales, [1.0 / 255.0, 4.0 / 255.0, 36.5 / 255.0], "{isa}");
            // 1 / (4 / 255) = 63.75 steps below 0; a row of positives has its zero at 0.
            assert_eq!(zeros, [0, 64, 0], "{isa}");
            for r in 0..3 {
                for i in 0..k {
                    let back = (a[r * weights.k4 + i] as i32 - zeros[r]) as f32 * scales[r];
                    let x = rows[r * k + i];
                    assert!(
                        (back - x).abs() <= scales[r] * 0.5001,
                        "{isa} {r} {i}: {back} {x}"
                    );
                }
            }
        }
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
                    // The step is set by the other channels' range (outliers take it too, in i16).
                    let (lo, hi) = row
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !outliers.contains(i))
                        .fold((0f32, 0f32), |(lo, hi), (_, &v)| (lo.min(v), hi.max(v)));
                    let half_step = (hi - lo) as f64 / 510.0;
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
                        // Each activation off by at most half a step of (max - min) / 255.
                        let bound: f64 = (0..k).map(|i| w(i).abs()).sum::<f64>() * half_step
                            + 1e-5 * want.abs().max(1.0);
                        assert!((got as f64 - want).abs() <= bound, "{got} vs {want}");
                    }
                }
            }
        }
    }
}
