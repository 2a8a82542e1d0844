//! The 8-bit-activation projections' weights, packing and portable arithmetic, shared by every
//! ISA copy.

use crate::generic::i16xi8::{Output, pack_pairs, pack_row_groups};

/// Output features per packed block: three 16-lane vectors, as the 16-bit kernels' (whose
/// packing the outlier rows take).
pub(crate) const BLOCK: usize = crate::generic::i16xi8::BLOCK;
/// Token rows per tile: 8 rows × 3 vectors = 24 accumulators.
// The x86-64 tiles' shape; the AArch64 ones pick their own.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const ROWS: usize = 8;
/// The activations' fill where no row was rounded (a zero step): any value gives the same sums,
/// which the zero step multiplies by 0.
pub(crate) const FILL: u8 = 128;

/// The largest outlier activation, as i16: outlier channels are rounded at the token's own
/// step (the other channels' `(max - min) / 255`), and a token whose outliers exceed this many
/// steps takes a coarser step instead.
pub(crate) const OUTLIER_MAX: f32 = 32767.0;

/// `W = q · s`: int8 values packed four rows at a time, a scale per output feature.
///
/// Optionally with outlier channels: rows of `q` whose activations are large on every token
/// (a calibration finds them: a layer norm's output has a few). Their activations are rounded
/// to i16 instead of u8, at the same step as the others, so one i32 sum holds both: the
/// 8-bit step is set by the other channels alone.
#[derive(Clone)]
pub struct Uint8Weights {
    pub(crate) k: usize,
    pub(crate) n: usize,
    /// `k` rounded up to a multiple of 4: the kernel takes the contracted axis in fours.
    pub(crate) k4: usize,
    /// Per block of [`BLOCK`] features, per four rows of k: each feature's four values.
    /// Zero-padded past `k` and `n`.
    pub(crate) packed: Vec<i8>,
    /// `Σ_k q[k][f]`, for the activations' zero point.
    pub(crate) col_sums: Vec<i32>,
    pub(crate) scales: Vec<f32>,
    /// The outlier channels (rows of `q`), ascending; their rows in `packed` are kept, and
    /// their u8 activations are the token's zero point, which contributes nothing.
    pub(crate) outliers: Vec<usize>,
    /// `outliers.len()` rounded up to even: the i16 part takes channels in pairs.
    pub(crate) o_even: usize,
    /// Per block, per pair of outliers: the block's features, each as its two values.
    pub(crate) packed16: Vec<i16>,
}

impl std::fmt::Debug for Uint8Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uint8Weights")
            .field("k", &self.k)
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

impl Uint8Weights {
    /// Int8 values `q` (`k × n`, row-major) with a scale per column.
    pub fn new(q: &[i8], k: usize, n: usize, scales: Vec<f32>) -> Uint8Weights {
        assert_eq!(q.len(), k * n);
        assert_eq!(scales.len(), n);
        let k4 = k.div_ceil(4) * 4;
        // Quads of rows: what `vpdpbusd` multiplies and adds.
        let packed = pack_row_groups::<i8, 4>(q, k, n);
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
            outliers: Vec::new(),
            o_even: 0,
            packed16: Vec::new(),
        }
    }

    /// As [`Uint8Weights::new`], with the rows `outliers` (distinct, each below `k`) taken as
    /// outlier channels.
    pub fn with_outliers(
        q: &[i8],
        k: usize,
        n: usize,
        scales: Vec<f32>,
        outliers: &[usize],
    ) -> Uint8Weights {
        let mut w = Uint8Weights::new(q, k, n, scales);
        let mut rows = outliers.to_vec();
        rows.sort_unstable();
        rows.dedup();
        assert_eq!(rows.len(), outliers.len(), "outlier channels repeat");
        assert!(rows.iter().all(|&r| r < k), "an outlier channel past k");
        if rows.is_empty() {
            return w;
        }
        // The outlier rows alone, packed as the 16-bit kernels pack a matrix: pairs of rows
        // interleaved per block of BLOCK features (the same BLOCK), zero past the last row.
        let sub: Vec<i8> = rows
            .iter()
            .flat_map(|&r| &q[r * n..(r + 1) * n])
            .copied()
            .collect();
        w.o_even = rows.len().div_ceil(2) * 2;
        w.packed16 = pack_pairs(&sub, rows.len(), n);
        w.outliers = rows;
        w
    }
}

pub(crate) struct Operands<'a> {
    pub(crate) w: &'a Uint8Weights,
    pub(crate) a: &'a [u8],
    /// The outlier channels' activations, `m × o_even`, at each token's scale.
    pub(crate) a16: &'a [i16],
    pub(crate) token_scales: &'a [f32],
    /// Each token's zero point: `x ≈ scale · (xq - zero)`.
    pub(crate) zeros: &'a [i32],
    pub(crate) bias: Option<&'a [f32]>,
    pub(crate) residual: Option<&'a [f32]>,
    pub(crate) m: usize,
}

impl Operands<'_> {
    pub(crate) fn panel(&self, b: usize) -> &[i8] {
        let len = (self.w.k4 / 4) * BLOCK * 4;
        &self.w.packed[b * len..(b + 1) * len]
    }

    /// Block `b`'s outlier rows, as i16 pairs.
    pub(crate) fn panel16(&self, b: usize) -> &[i16] {
        let len = (self.w.o_even / 2) * BLOCK * 2;
        &self.w.packed16[b * len..(b + 1) * len]
    }

    /// One output from its sum `Σ xq·w`: the same f32 operations, in the same order, as the
    /// vector epilogue.
    #[inline(always)]
    pub(crate) fn value(&self, row: usize, col: usize, sum: i32) -> f32 {
        self.value_corrected(row, col, sum - self.zeros[row] * self.w.col_sums[col])
    }

    /// One output from `Σ (xq - 128)·w`, which kernels on signed bytes compute (`xq ^ 0x80`).
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn value_signed(&self, row: usize, col: usize, sum: i32) -> f32 {
        let zero = self.zeros[row] - 128;
        self.value_corrected(row, col, sum - zero * self.w.col_sums[col])
    }

    /// One output from its corrected sum `Σ (xq - zero)·w`.
    #[inline(always)]
    fn value_corrected(&self, row: usize, col: usize, corrected: i32) -> f32 {
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
    pub(crate) unsafe fn block_portable(&self, b: usize, out: Output) {
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
            let a16 = &self.a16[row * w.o_even..(row + 1) * w.o_even];
            let bp16 = self.panel16(b);
            for (p, pair) in a16.chunks_exact(2).enumerate() {
                let bp = &bp16[p * BLOCK * 2..(p + 1) * BLOCK * 2];
                for (f, s) in sums.iter_mut().enumerate() {
                    let d =
                        pair[0] as i32 * bp[2 * f] as i32 + pair[1] as i32 * bp[2 * f + 1] as i32;
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
