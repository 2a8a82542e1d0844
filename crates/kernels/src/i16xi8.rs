//! Projections in integer arithmetic: activations quantised per token to 14-16 bits, int8
//! weights, exact i32 sums.
//!
//! An int8 export's projections are `x · (q · s)` with `q` int8 and `s` one f32 scale per
//! output feature. onnxruntime and the f32 path fold that to f32 weights and multiply in f32,
//! near this core's f32 peak. Here `x` is scaled per token to the widest integer range whose
//! sums cannot overflow i32 (`qmax · max|q| · k < 2^31`: 15 bits at k = 384, 14 at k = 1536),
//! and `vpdpwssd` does twice the f32 multiply-adds per instruction. The sums are exact, so the
//! only error is rounding the activations, about 2^-15 of each token's largest value; the
//! weights are the file's own int8 values, not re-quantised. Every instruction set computes
//! the same integers and the same f32 epilogue, so every path gives the same bits.

use crate::generic::i16xi8::{BLOCK, Operands, Output};
use crate::isa::{Isa, IsaClass};
use crate::pool::for_each_index;

pub use crate::generic::i16xi8::{Int16Weights, int8_grid};

impl Int16Weights {
    /// `y = x · W (+ bias) (+ residual)` for `m` rows of `x` (`m × k`), into `y` (`m × n`).
    /// Column blocks are spread over the current pool.
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
        assert_eq!(x.len(), m * self.k);
        assert_eq!(y.len(), m * self.n);
        assert!(bias.is_none_or(|b| b.len() == self.n));
        assert!(residual.is_none_or(|r| r.len() == m * self.n));
        if m == 0 {
            return;
        }
        let (a, token_scales) = self.quantise(isa, x, m);
        let out = Output {
            y: y.as_mut_ptr(),
            n: self.n,
        };
        let operands = Operands {
            weights: self,
            a: &a,
            token_scales: &token_scales,
            bias,
            residual,
            m,
        };
        let block = |b: usize| {
            // SAFETY: an `Isa` comes only from detection; block `b` writes only its own
            // columns of y.
            unsafe { operands.block(isa, b, out) }
        };
        for_each_index(self.n.div_ceil(BLOCK), block);
    }

    /// Rows of `x` as i16 at `qmax` (`m × k_even`), and each row's scale.
    fn quantise(&self, isa: Isa, x: &[f32], m: usize) -> (Vec<i16>, Vec<f32>) {
        let k = self.k;
        quantise_rows(isa, x, (m, k, self.k_even), self.qmax, 0, |x, inv, q| {
            quantise_row(isa, x, inv, &mut q[..k])
        })
    }
}

/// Rows of `x` (`m × k`) rounded into rows of `stride` values of `T`, each at `range / max|row|`
/// by `round(x, inv, row)`: the rows (padded with `fill`) and each row's scale. A row with a
/// non-finite value gets a NaN scale, so its outputs are NaN as in f32; an all-zero row stays
/// `fill`.
pub(crate) fn quantise_rows<T: Copy>(
    isa: Isa,
    x: &[f32],
    (m, k, stride): (usize, usize, usize),
    range: f32,
    fill: T,
    round: impl Fn(&[f32], f32, &mut [T]),
) -> (Vec<T>, Vec<f32>) {
    let mut a = vec![fill; m * stride];
    let mut scales = vec![0f32; m];
    for (row, (q, scale)) in a
        .chunks_exact_mut(stride)
        .zip(scales.iter_mut())
        .enumerate()
    {
        let x = &x[row * k..(row + 1) * k];
        let amax = abs_max(isa, x);
        if !amax.is_finite() {
            *scale = f32::NAN;
            continue;
        }
        if amax == 0.0 {
            continue;
        }
        *scale = amax / range;
        round(x, range / amax, q);
    }
    (a, scales)
}

/// The largest |x|: NaN if any is NaN, infinite if any is.
pub(crate) fn abs_max(isa: Isa, x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa.class(), IsaClass::Avx512Vnni | IsaClass::Avx512) {
        // SAFETY: both classes have AVX-512F, and an `Isa` comes only from detection.
        return unsafe { crate::x86_64::i16xi8::abs_max_avx512(x) };
    }
    #[cfg(target_arch = "x86_64")]
    if isa.class() == IsaClass::Avx2 {
        // SAFETY: the class has AVX2, and an `Isa` comes only from detection.
        return unsafe { crate::x86_64::i16xi8::abs_max_avx2(x) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if isa.class() == IsaClass::Simd128 {
        return crate::wasm32::i16xi8::abs_max_simd128(x);
    }
    let _ = isa;
    if x.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// `q = round_ties_even(x · inv)`, in range by construction.
fn quantise_row(isa: Isa, x: &[f32], inv: f32, q: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa.class(), IsaClass::Avx512Vnni | IsaClass::Avx512) {
        // SAFETY: both classes have AVX-512F and BW, and an `Isa` comes only from detection.
        return unsafe { crate::x86_64::i16xi8::quantise_row_avx512(x, inv, q) };
    }
    #[cfg(target_arch = "x86_64")]
    if isa.class() == IsaClass::Avx2 {
        // SAFETY: the class has AVX2, and an `Isa` comes only from detection.
        return unsafe { crate::x86_64::i16xi8::quantise_row_avx2(x, inv, q) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if isa.class() == IsaClass::Simd128 {
        return crate::wasm32::i16xi8::quantise_row_simd128(x, inv, q);
    }
    let _ = isa;
    for (q, x) in q.iter_mut().zip(x) {
        *q = (x * inv).round_ties_even() as i16;
    }
}

impl Operands<'_> {
    /// Columns `[b·BLOCK, (b+1)·BLOCK)` of every row.
    ///
    /// # Safety
    /// `isa` is available, and no other task writes these columns of `out`.
    unsafe fn block(&self, isa: Isa, b: usize, out: Output) {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::x86_64::i16xi8 as x86;
            match isa.class() {
                // SAFETY: as the caller promises.
                IsaClass::Avx512Vnni => return unsafe { x86::block_avx512vnni(self, b, out) },
                IsaClass::Avx512 => return unsafe { x86::block_avx512bw(self, b, out) },
                IsaClass::Avx2 => return unsafe { x86::block_avx2(self, b, out) },
                _ => {}
            }
        }
        #[cfg(target_arch = "aarch64")]
        if matches!(
            isa.class(),
            IsaClass::NeonI8mm | IsaClass::NeonDotprod | IsaClass::Neon
        ) {
            // SAFETY: as the caller promises; every AArch64 class has NEON.
            return unsafe { crate::aarch64::i16xi8::block_neon(self, b, out) };
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if isa.class() == IsaClass::Simd128 {
            // SAFETY: as the caller promises.
            return unsafe { crate::wasm32::i16xi8::block_simd128(self, b, out) };
        }
        let _ = isa;
        // SAFETY: as the caller promises.
        unsafe { self.block_portable(b, out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generic::i16xi8::Panels;

    #[test]
    fn rounding_without_libm_is_f32_round() {
        use crate::generic::i16xi8::round_half_away;
        // Every quarter step (halves, and values either side of them) up to past 2^12, the
        // floats nearest to ±0.5 and ±1.5, the extremes, and NaN.
        let mut xs: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 0.25).collect();
        for base in [0.5f32, 1.5, 1023.5, 8_388_607.5] {
            for x in [base, base.next_down(), base.next_up()] {
                xs.extend([x, -x]);
            }
        }
        xs.extend([
            (1 << 23) as f32,
            -((1 << 23) as f32),
            1e-30,
            -1e-30,
            0.0,
            -0.0,
        ]);
        for x in xs {
            assert_eq!(round_half_away(x), x.round() as i32, "{x:e}");
        }
        assert_eq!(round_half_away(f32::NAN), f32::NAN.round() as i32);
    }

    /// The weights `w` as [`int8_grid`] finds them; `None` for other (f32) weights.
    fn from_int8_grid(w: &[f32], k: usize, n: usize) -> Option<Int16Weights> {
        let (scales, q) = int8_grid(w, k, n)?;
        Some(Int16Weights::from_int8(&q, k, n, scales, Isa::portable()))
    }

    /// Int8-grid weights packed both ways, int8 and i16 panels: every class runs either.
    fn both_panels(w: &[f32], k: usize, n: usize) -> [Int16Weights; 2] {
        let (scales, q) = int8_grid(w, k, n).unwrap();
        [true, false].map(|int8| Int16Weights::pack(&q, k, n, scales.clone(), 127, int8))
    }

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Int8-grid weights: integer values times a scale per column.
    fn grid(k: usize, n: usize) -> Vec<f32> {
        let scales: Vec<f32> = (0..n).map(|c| 0.01 + c as f32 * 1e-4).collect();
        let mut w: Vec<f32> = values(k * n, 7)
            .iter()
            .enumerate()
            .map(|(i, v)| (v * 127.0).round() * scales[i % n])
            .collect();
        // Every column reaches ±127, as a symmetric quantiser leaves it.
        for (c, s) in scales.iter().enumerate() {
            w[c] = 127.0 * s;
        }
        w
    }

    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut y = vec![0f64; m * n];
        for r in 0..m {
            for c in 0..n {
                y[r * n + c] = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[i * n + c] as f64)
                    .sum();
            }
        }
        y
    }

    #[test]
    fn f32_weights_are_not_taken_for_a_grid() {
        let w = values(64 * 8, 3);
        assert!(from_int8_grid(&w, 64, 8).is_none());
        assert!(from_int8_grid(&grid(64, 8), 64, 8).is_some());
    }

    /// f32 weights rounded per column: each within half a step of its value, and the product
    /// within the rounding of weights and activations of f64 math.
    #[test]
    fn f32_weights_round_to_half_a_step() {
        let (k, n) = (1536, 50);
        let w: Vec<f32> = values(k * n, 21).iter().map(|v| v * 0.05).collect();
        let weights = Int16Weights::from_f32(&w, k, n, 1023).unwrap();
        // At 1023, sums of 1536 products need activations of at most 2^31 / (1023 · 1536).
        assert_eq!(weights.qmax, (i32::MAX as usize / (1023 * 1536)) as f32);
        let x = values(3 * k, 9);
        let mut y = vec![0f32; 3 * n];
        weights.run(Isa::portable(), &x, 3, None, None, &mut y);
        let want = reference(&x, &w, 3, k, n);
        for (r, (g, w_)) in y.iter().zip(&want).enumerate() {
            let col = r % n;
            // Worst case: every weight off by half a step, every activation by half of its.
            let bound: f64 = (0..k)
                .map(|i| {
                    let xv = x[(r / n) * k + i].abs() as f64;
                    let wv = w[i * n + col].abs() as f64;
                    xv * weights.scales[col] as f64 / 2.0 + wv / weights.qmax as f64 / 2.0
                })
                .sum();
            assert!(
                (*g as f64 - w_).abs() <= bound,
                "{r}: {g} vs {w_} (bound {bound})"
            );
        }
        assert!(Int16Weights::from_f32(&[f32::NAN; 4], 2, 2, 1023).is_none());
    }

    /// One scale for the whole tensor (onnxruntime's `quantize_dynamic`): most columns never
    /// reach ±127, so their own maximum is not their step.
    #[test]
    fn a_whole_tensor_grid_is_found_and_exact() {
        let (k, n) = (64, 8);
        let step = 0.0123f32;
        let mut w: Vec<f32> = values(k * n, 11)
            .iter()
            .map(|v| (v * 90.0).round() * step)
            .collect();
        w[3] = -127.0 * step;
        let weights = from_int8_grid(&w, k, n).unwrap();
        assert!(weights.scales.iter().all(|&s| s == weights.scales[0]));
        let x = values(k, 5);
        let mut y = vec![0f32; n];
        weights.run(Isa::portable(), &x, 1, None, None, &mut y);
        let want = reference(&x, &w, 1, k, n);
        for (g, w) in y.iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-3 * w.abs().max(1.0),
                "{g} vs {w}"
            );
        }
        // Off the grid by one part in 10^5 in one place: not a grid.
        w[10] *= 1.00001;
        assert!(from_int8_grid(&w, k, n).is_none());
    }

    #[test]
    fn every_isa_gives_the_same_bits_close_to_f64() {
        // Odd k, n not a multiple of the block or vector, row counts around the tile sizes.
        for &(m, k, n) in &[
            (1, 5, 3),
            (7, 384, 100),
            (9, 1536, 48),
            (13, 31, 50),
            (20, 384, 384),
        ] {
            let w = grid(k, n);
            let x = values(m * k, m as u64);
            let bias = values(n, 11);
            let residual = values(m * n, 13);
            let want = reference(&x, &w, m, k, n);
            let mut first: Option<Vec<f32>> = None;
            let panels = both_panels(&w, k, n);
            assert!(matches!(panels[0].packed, Panels::I8(_)));
            assert!(matches!(panels[1].packed, Panels::I16(_)));
            for (weights, isa) in panels
                .iter()
                .flat_map(|p| Isa::all_available().into_iter().map(move |isa| (p, isa)))
            {
                let int8 = matches!(weights.packed, Panels::I8(_));
                for threads in [1, 2] {
                    let mut y = vec![f32::NAN; m * n];
                    crate::pool::with_threads(threads, || {
                        weights.run(isa, &x, m, Some(&bias), Some(&residual), &mut y)
                    });
                    for (i, (&got, want)) in y.iter().zip(&want).enumerate() {
                        let (row, col) = (i / n, i % n);
                        let want = want + bias[col] as f64 + residual[i] as f64;
                        // Rounding x to the nearest step moves each term by at most half a
                        // step times |w|; then f32 rounding of the result.
                        let x_row = &x[row * k..(row + 1) * k];
                        let amax = x_row.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                        let half_step = amax / weights.qmax as f64 / 2.0;
                        let bound = half_step
                            * (0..k).map(|j| w[j * n + col].abs() as f64).sum::<f64>()
                            + 1e-5 * (1.0 + want.abs());
                        assert!(
                            (got as f64 - want).abs() <= bound,
                            "{isa:?}, int8 panels {int8}, ({m},{k},{n}) element {i}: {got} vs \
                             {want}, bound {bound}"
                        );
                    }
                    match &first {
                        None => first = Some(y),
                        Some(f) => assert!(
                            f.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{isa:?}, int8 panels {int8}, differs from the first path at \
                             ({m},{k},{n})"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn sums_at_the_largest_magnitudes_do_not_overflow() {
        // Every activation at the row's max, every weight at ±127 with the same sign.
        let (m, k, n) = (3, 1536, 16);
        let s = 0.5f32;
        let w = vec![127.0 * s; k * n];
        let x = vec![-1.0f32; m * k];
        for (weights, isa) in both_panels(&w, k, n)
            .iter()
            .flat_map(|p| Isa::all_available().into_iter().map(move |isa| (p, isa)))
        {
            let mut y = vec![0f32; m * n];
            weights.run(isa, &x, m, None, None, &mut y);
            let want = -(k as f32) * 127.0 * s;
            assert!(
                y.iter().all(|v| ((v - want) / want).abs() < 1e-6),
                "{isa:?}: {:?} vs {want}",
                &y[..4]
            );
        }
    }

    #[test]
    fn a_row_with_nan_gives_nan_and_zero_rows_give_the_bias() {
        let (m, k, n) = (3, 8, 4);
        let mut x = vec![0f32; m * k];
        x[k + 2] = f32::NAN;
        x[2 * k] = 1.0;
        let bias = [1.0, 2.0, 3.0, 4.0];
        for (weights, isa) in both_panels(&grid(k, n), k, n)
            .iter()
            .flat_map(|p| Isa::all_available().into_iter().map(move |isa| (p, isa)))
        {
            let mut y = vec![0f32; m * n];
            weights.run(isa, &x, m, Some(&bias), None, &mut y);
            assert_eq!(&y[..n], &bias, "{isa:?}");
            assert!(y[n..2 * n].iter().all(|v| v.is_nan()), "{isa:?}");
            assert!(y[2 * n..].iter().all(|v| v.is_finite()), "{isa:?}");
        }
    }
}
