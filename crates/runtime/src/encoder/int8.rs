//! Projections with 8-bit activations, for graphs that ask for them: onnxruntime's
//! `quantize_dynamic` output (`DynamicQuantizeLinear` + `MatMulInteger`), whose activations are
//! rounded to u8 per tensor at run time.
//!
//! Here they are rounded per token instead, symmetrically (`s = max|x| / 127`, stored as
//! `round(x / s) + 128`): measured about as accurate as the file's per-tensor asymmetric
//! rounding (see the conformance suite). `vpdpbusd` multiplies four u8
//! activations by four int8 weights per lane: twice the rate of [`super::int16`]. The sums are
//! exact: `Σ (xq - 128)·w = Σ xq·w - 128·Σ w`, with `Σ w` per feature computed at load. Only the
//! AVX-512 VNNI path is fast; a portable path gives the same bits for tests and other CPUs
//! (where the encoder uses the 16-bit kernels instead).

use super::int16::{Isa, Output, for_each_block, quantise_rows};

/// Output features per packed block: three 16-lane vectors.
const BLOCK: usize = 48;
/// Token rows per tile: 8 rows × 3 vectors = 24 accumulators.
const ROWS: usize = 8;
/// The activations' zero: `xq = round(x / s) + 128`, in 1..=255.
const ZERO: i32 = 128;

/// `W = q · s`: int8 values packed four rows at a time, a scale per output feature.
#[derive(Clone)]
pub(crate) struct Uint8Weights {
    k: usize,
    n: usize,
    /// `k` rounded up to a multiple of 4: the kernel takes the contracted axis in fours.
    k4: usize,
    /// Per block of [`BLOCK`] features, per four rows of k: each feature's four values.
    /// Zero-padded past `k` and `n`.
    packed: Vec<i8>,
    /// `Σ_k q[k][f]`, for the activations' zero point.
    col_sums: Vec<i32>,
    scales: Vec<f32>,
}

impl std::fmt::Debug for Uint8Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uint8Weights")
            .field("k", &self.k)
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

/// Whether this CPU has the fast path (AVX-512 VNNI).
pub(crate) fn fast_path_available() -> bool {
    Isa::Avx512Vnni.available()
}

impl Uint8Weights {
    /// Int8 values `q` (`k × n`, row-major) with a scale per column.
    pub(crate) fn new(q: &[i8], k: usize, n: usize, scales: Vec<f32>) -> Uint8Weights {
        assert_eq!(q.len(), k * n);
        assert_eq!(scales.len(), n);
        let k4 = k.div_ceil(4) * 4;
        let blocks = n.div_ceil(BLOCK);
        let mut packed = vec![0i8; blocks * (k4 / 4) * BLOCK * 4];
        for b in 0..blocks {
            for p in 0..k4 / 4 {
                let at = (b * (k4 / 4) + p) * BLOCK * 4;
                for f in 0..BLOCK.min(n - b * BLOCK) {
                    let col = b * BLOCK + f;
                    for j in 0..4 {
                        let row = 4 * p + j;
                        if row < k {
                            packed[at + 4 * f + j] = q[row * n + col];
                        }
                    }
                }
            }
        }
        let mut col_sums = vec![0i32; n];
        for row in q.chunks_exact(n) {
            for (s, &v) in col_sums.iter_mut().zip(row) {
                *s += v as i32;
            }
        }
        Uint8Weights {
            k,
            n,
            k4,
            packed,
            col_sums,
            scales,
        }
    }

    /// `y = x · W (+ bias) (+ residual)` for `m` rows of `x` (`m × k`), into `y` (`m × n`), on
    /// the VNNI kernel (`fast`, which must be available) or the portable one: the same bits.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        fast: bool,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        y: &mut [f32],
        pool: Option<&rayon::ThreadPool>,
    ) {
        assert!(
            !fast || fast_path_available(),
            "AVX-512 VNNI is not available"
        );
        assert_eq!(x.len(), m * self.k);
        assert_eq!(y.len(), m * self.n);
        assert!(bias.is_none_or(|b| b.len() == self.n));
        assert!(residual.is_none_or(|r| r.len() == m * self.n));
        if m == 0 {
            return;
        }
        let (a, token_scales) = self.quantise(fast, x, m);
        let op = Operands {
            w: self,
            a: &a,
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
                // SAFETY: VNNI checked above; block b writes only its own columns of y.
                return unsafe { x86::block_vnni(&op, b, out) };
            }
            // SAFETY: block b writes only its own columns of y.
            unsafe { op.block_portable(b, out) }
        };
        for_each_block(self.n.div_ceil(BLOCK), pool, block);
    }

    /// Rows of `x` as u8 (`m × k4`, zero-point 128, padded with it), and each row's scale.
    fn quantise(&self, fast: bool, x: &[f32], m: usize) -> (Vec<u8>, Vec<f32>) {
        let isa = if fast { Isa::Avx512Vnni } else { Isa::Portable };
        let shape = (m, self.k, self.k4);
        quantise_rows(isa, x, shape, 127.0, ZERO as u8, |x, inv, q| {
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: `fast` is only set where AVX-512 is available (checked in `run`).
                return unsafe { x86::quantise_row(x, inv, q) };
            }
            for (q, v) in q.iter_mut().zip(x) {
                *q = ((v * inv).round_ties_even() as i32 + ZERO) as u8;
            }
        })
    }
}

struct Operands<'a> {
    w: &'a Uint8Weights,
    a: &'a [u8],
    token_scales: &'a [f32],
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
    m: usize,
}

impl Operands<'_> {
    fn panel(&self, b: usize) -> &[i8] {
        let len = (self.w.k4 / 4) * BLOCK * 4;
        &self.w.packed[b * len..(b + 1) * len]
    }

    /// One output: the same f32 operations, in the same order, as the vector epilogue.
    #[inline(always)]
    fn value(&self, row: usize, col: usize, sum: i32) -> f32 {
        let corrected = sum - ZERO * self.w.col_sums[col];
        let mut v = corrected as f32 * (self.token_scales[row] * self.w.scales[col]);
        if let Some(bias) = self.bias {
            v += bias[col];
        }
        if let Some(r) = self.residual {
            v += r[row * self.w.n + col];
        }
        v
    }

    /// # Safety
    /// No other task writes block `b`'s columns of `out`.
    unsafe fn block_portable(&self, b: usize, out: Output) {
        let w = self.w;
        let panel = self.panel(b);
        let col0 = b * BLOCK;
        let width = BLOCK.min(w.n - col0);
        let mut sums = [0i32; BLOCK];
        for row in 0..self.m {
            let a = &self.a[row * w.k4..(row + 1) * w.k4];
            sums.fill(0);
            for (p, quad) in a.chunks_exact(4).enumerate() {
                let bp = &panel[p * BLOCK * 4..(p + 1) * BLOCK * 4];
                for (f, s) in sums.iter_mut().enumerate() {
                    let d: i32 = (0..4).map(|j| quad[j] as i32 * bp[4 * f + j] as i32).sum();
                    *s = s.wrapping_add(d);
                }
            }
            for (f, &sum) in sums[..width].iter().enumerate() {
                let col = col0 + f;
                let v = self.value(row, col, sum);
                // SAFETY: row < m, col < n, and this task's column.
                unsafe { *out.y.add(row * out.n + col) = v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::int16::lanes_below;
    use super::{BLOCK, Operands, Output, ROWS, ZERO};
    use std::arch::x86_64::*;

    /// `q = round_ties_even(x · inv) + 128` for the first `x.len()` values of `q`.
    ///
    /// # Safety
    /// AVX-512F and BW are available.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantise_row(x: &[f32], inv: f32, q: &mut [u8]) {
        let k = x.len().min(q.len());
        let vinv = _mm512_set1_ps(inv);
        let zero = _mm512_set1_epi32(ZERO);
        let mut i = 0;
        while i < k {
            let mask: __mmask16 = lanes_below(i, k);
            // SAFETY: the mask keeps loads and stores within the first k elements.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
                // Round to nearest even (the default rounding mode), as `round_ties_even`;
                // in -127..=127 by construction, so 1..=255 after the zero point.
                let n = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, vinv)), zero);
                _mm512_mask_cvtusepi32_storeu_epi8(q.as_mut_ptr().add(i) as *mut i8, mask, n);
            }
            i += 16;
        }
    }

    /// `R` rows from `row0` against block `b`'s panel.
    #[inline(always)]
    unsafe fn tile<const R: usize>(
        op: &Operands,
        panel: &[i8],
        row0: usize,
        col0: usize,
        out: Output,
    ) {
        let w = op.w;
        // SAFETY: the callers run with AVX-512F.
        let mut acc = [[unsafe { _mm512_setzero_si512() }; 3]; R];
        let a = op.a.as_ptr();
        let bp = panel.as_ptr();
        for p in 0..w.k4 / 4 {
            // SAFETY: p < k4 / 4, rows < m: within the panel and the quantised rows.
            unsafe {
                let b = bp.add(p * BLOCK * 4);
                let b0 = _mm512_loadu_si512(b as *const _);
                let b1 = _mm512_loadu_si512(b.add(64) as *const _);
                let b2 = _mm512_loadu_si512(b.add(128) as *const _);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let quad = (a.add((row0 + r) * w.k4 + 4 * p) as *const i32).read_unaligned();
                    let x = _mm512_set1_epi32(quad);
                    acc[0] = _mm512_dpbusd_epi32(acc[0], x, b0);
                    acc[1] = _mm512_dpbusd_epi32(acc[1], x, b1);
                    acc[2] = _mm512_dpbusd_epi32(acc[2], x, b2);
                }
            }
        }
        for (r, sums) in acc.into_iter().enumerate() {
            let row = row0 + r;
            // SAFETY: the callers run with AVX-512F.
            let ts = unsafe { _mm512_set1_ps(op.token_scales[row]) };
            for (c, sum) in sums.into_iter().enumerate() {
                let col = col0 + 16 * c;
                if col >= w.n {
                    break;
                }
                let mask: __mmask16 = lanes_below(col, w.n);
                // SAFETY: masked to columns below n of row < m; this task's columns. The same
                // operations in the same order as `Operands::value`.
                unsafe {
                    let zero = _mm512_mullo_epi32(
                        _mm512_set1_epi32(ZERO),
                        _mm512_maskz_loadu_epi32(mask, w.col_sums.as_ptr().add(col)),
                    );
                    let corrected = _mm512_sub_epi32(sum, zero);
                    let scale =
                        _mm512_mul_ps(ts, _mm512_maskz_loadu_ps(mask, w.scales.as_ptr().add(col)));
                    let mut v = _mm512_mul_ps(_mm512_cvtepi32_ps(corrected), scale);
                    if let Some(bias) = op.bias {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(col)));
                    }
                    if let Some(res) = op.residual {
                        let at = res.as_ptr().add(row * w.n + col);
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, at));
                    }
                    _mm512_mask_storeu_ps(out.y.add(row * out.n + col), mask, v);
                }
            }
        }
    }

    /// # Safety
    /// AVX-512 VNNI is available, and no other task writes block `b`'s columns of `out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn block_vnni(op: &Operands, b: usize, out: Output) {
        let panel = op.panel(b);
        let col0 = b * BLOCK;
        let mut row = 0;
        // SAFETY (all tiles): rows stay below m; block b's columns are this task's.
        unsafe {
            while row + ROWS <= op.m {
                tile::<ROWS>(op, panel, row, col0, out);
                row += ROWS;
            }
            match op.m - row {
                0 => {}
                1 => tile::<1>(op, panel, row, col0, out),
                2 => tile::<2>(op, panel, row, col0, out),
                3 => tile::<3>(op, panel, row, col0, out),
                4 => tile::<4>(op, panel, row, col0, out),
                5 => tile::<5>(op, panel, row, col0, out),
                6 => tile::<6>(op, panel, row, col0, out),
                _ => tile::<7>(op, panel, row, col0, out),
            }
        }
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
            let weights = Uint8Weights::new(&q, k, n, scales.clone());
            let mut x = values(m * k, 5);
            x[(m - 1) * k] = f32::NAN;
            let bias = values(n, 7);
            let residual = values(m * n, 11);
            let mut portable = vec![0f32; m * n];
            weights.run(
                false,
                &x,
                m,
                Some(&bias),
                Some(&residual),
                &mut portable,
                None,
            );
            if fast_path_available() {
                let mut fast = vec![0f32; m * n];
                weights.run(true, &x, m, Some(&bias), Some(&residual), &mut fast, None);
                let same = portable
                    .iter()
                    .zip(&fast)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{m}×{k}×{n}");
            }
            for r in 0..m {
                let row = &x[r * k..(r + 1) * k];
                let amax = row.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
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
