//! The integer projections' weights, packing and portable arithmetic, shared by every ISA copy.

use crate::isa::{Isa, IsaClass};

/// Output features per packed block: three 16-lane vectors.
pub(crate) const BLOCK: usize = 48;
/// Token rows per AVX-512 tile: 8 rows × 3 vectors = 24 accumulators of the 32 registers.
// The x86-64 tiles' shape; the AArch64 ones pick their own.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const ROWS: usize = 8;

/// `W = q · s`: int8 values widened to i16 and packed for the kernels, with one scale per
/// output feature.
#[derive(Clone)]
pub struct Int16Weights {
    pub(crate) k: usize,
    pub(crate) n: usize,
    /// `k` rounded up to even: the kernels take the contracted axis in pairs.
    pub(crate) k_even: usize,
    /// Per block of [`BLOCK`] features, per pair of k: the block's features, each as its two
    /// values `(q[2p][f], q[2p+1][f])`. Zero-padded past `k` and `n`.
    pub(crate) packed: Panels,
    pub(crate) scales: Vec<f32>,
    /// The largest activation magnitude after scaling, so that sums fit in i32.
    pub(crate) qmax: f32,
}

/// The packed values, as int8 or i16.
///
/// Int8 weights are held as int8 for the classes whose kernels widen them in registers
/// ([`reads_int8_panels`]), which then stream half the bytes. On AVX2 (Zen 3) the 36
/// projections of MiniLM's six layers ran at 62 G multiply-adds/s for one 16-token text
/// against 46-50 with i16 panels (21 MB of them, past L2 on every call), and at 69 against 59-62
/// for 96 tokens. Other weights (f32 rounded to more than ±127) are i16.
#[derive(Clone)]
pub(crate) enum Panels {
    I8(Vec<i8>),
    I16(Vec<i16>),
}

/// One block's panel, as stored.
#[derive(Clone, Copy)]
pub(crate) enum Panel<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
}

/// Whether `isa`'s kernel reads int8 panels in place (AVX2: `vpmovsxbw`; the portable loop).
/// The AVX-512, NEON and SIMD128 kernels read i16: weights packed as int8 for another class
/// are widened for them block by block ([`Operands::panel16`]), correct but slower.
// The AVX-512 tiles could widen in registers as the AVX2 ones do; that waits for a machine with
// AVX-512 to measure it on. SIMD128 widening in registers (`i16x8.load8x8_s`) was measured in
// Node 20 on Zen 3 and lost: 300 texts in batches of 32 equal, one text 21.7 ms against 19.2.
pub(crate) fn reads_int8_panels(isa: Isa) -> bool {
    matches!(isa.class(), IsaClass::Avx2 | IsaClass::Portable)
}

impl std::fmt::Debug for Int16Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Int16Weights")
            .field("k", &self.k)
            .field("n", &self.n)
            .field("qmax", &self.qmax)
            .finish_non_exhaustive()
    }
}

/// The int8 values of row-major `w` (`n` columns) on the grid of `scales` (one per column), or
/// `None` where a value is off it.
///
/// Written to vectorise (it runs on every projection at load): a row's checks are combined
/// without branching, and rounding adds and subtracts 1.5 · 2²³, which rounds to nearest
/// (ties to even) for the magnitudes a grid value can have (≤ 127.5, checked first).
fn grid(w: &[f32], n: usize, scales: &[f32]) -> Option<Vec<i8>> {
    const ROUND: f32 = 12_582_912.0;
    let inverse: Vec<f32> = scales
        .iter()
        .map(|&s| if s == 0.0 { 0.0 } else { 1.0 / s })
        .collect();
    let mut q = vec![0i8; w.len()];
    for (q, row) in q.chunks_exact_mut(n).zip(w.chunks_exact(n)) {
        let mut on_grid = true;
        for (((q, &v), &s), &i) in q.iter_mut().zip(row).zip(scales).zip(&inverse) {
            let x = v * i;
            let r = (x + ROUND) - ROUND;
            // The fold computed `v = q · s` in f32: allow that rounding, and s's own. A zero
            // scale (an all-zero column) takes only zeros.
            let ok = x.abs() <= 127.5 && (r * s - v).abs() <= v.abs() * 4e-7;
            on_grid &= ok;
            *q = r as i8;
        }
        if !on_grid {
            return None;
        }
    }
    Some(q)
}

/// The weights `w` (`k × n`, row-major) as int8 values and a scale per column, when they are
/// that: a scale per output feature (int8 exports), else one for the whole tensor
/// (onnxruntime's `quantize_dynamic`, where some columns never reach ±127).
pub fn int8_grid(w: &[f32], k: usize, n: usize) -> Option<(Vec<f32>, Vec<i8>)> {
    if k == 0 || n == 0 || w.len() != k * n {
        return None;
    }
    // Row by row: the weights are row-major.
    let mut amax = vec![0f32; n];
    for row in w.chunks_exact(n) {
        for (m, v) in amax.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    if amax.iter().any(|m| !m.is_finite()) || w.iter().any(|v| v.is_nan()) {
        return None;
    }
    let per_column: Vec<f32> = amax.iter().map(|m| m / 127.0).collect();
    let whole = amax.iter().copied().fold(0f32, f32::max) / 127.0;
    [per_column, vec![whole; n]]
        .into_iter()
        .find_map(|scales| grid(w, n, &scales).map(|q| (scales, q)))
}

impl Int16Weights {
    /// Int8 values `q` (`k × n`, row-major) with a scale per column, as [`int8_grid`] finds
    /// them, packed for `isa`'s kernel (every class runs them, with the same bits).
    pub fn from_int8(q: &[i8], k: usize, n: usize, scales: Vec<f32>, isa: Isa) -> Int16Weights {
        Self::pack(q, k, n, scales, 127, reads_int8_panels(isa))
    }

    /// f32 weights `w` (`k × n`, row-major) rounded to integers of at most `wmax` in magnitude,
    /// with a scale per column (`s = max|w| / wmax`): a model change of at most `s / 2` per
    /// weight, which the runtime's `Precision::Int16` states. `None` for
    /// non-finite weights.
    pub fn from_f32(w: &[f32], k: usize, n: usize, wmax: i16) -> Option<Int16Weights> {
        if k == 0 || n == 0 || w.len() != k * n || wmax <= 0 || w.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut amax = vec![0f32; n];
        for row in w.chunks_exact(n) {
            for (m, v) in amax.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
        let scales: Vec<f32> = amax.iter().map(|m| m / wmax as f32).collect();
        let inverse: Vec<f32> = scales
            .iter()
            .map(|&s| if s > 0.0 { 1.0 / s } else { 0.0 })
            .collect();
        // Written in place, rounded without libm: a flattened iterator collected into a Vec
        // and `roundf` calls were a quarter of a 133 MB f32 model's load.
        let mut q = vec![0i16; k * n];
        let bound = wmax as f32;
        for (q, row) in q.chunks_exact_mut(n).zip(w.chunks_exact(n)) {
            for ((q, v), i) in q.iter_mut().zip(row).zip(&inverse) {
                *q = round_half_away((v * i).clamp(-bound, bound)) as i16;
            }
        }
        Some(Self::pack(&q, k, n, scales, wmax, false))
    }

    /// Packs integer weights `q` (`k × n`, row-major, `|q| <= wmax`) as [`pack_pairs`] does,
    /// as int8 when `int8` asks (and `wmax` allows), and picks the activations' range so that
    /// no i32 sum can overflow.
    pub(crate) fn pack(
        q: &[impl Into<i16> + Copy],
        k: usize,
        n: usize,
        scales: Vec<f32>,
        wmax: i16,
        int8: bool,
    ) -> Int16Weights {
        let k_even = k.div_ceil(2) * 2;
        // i32 sums of k products, each at most qmax · wmax.
        let qmax = ((i32::MAX as usize) / (wmax as usize * k_even)).min(i16::MAX as usize) as f32;
        let packed = pack_pairs(q, k, n);
        let packed = if int8 && wmax <= i8::MAX as i16 {
            Panels::I8(packed.into_iter().map(|v| v as i8).collect())
        } else {
            Panels::I16(packed)
        };
        Int16Weights {
            k,
            n,
            k_even,
            packed,
            scales,
            qmax,
        }
    }

    /// Input features (rows of `W`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output features (columns of `W`).
    pub fn n(&self) -> usize {
        self.n
    }
}

/// Integer weights `q` (`k × n`, row-major) in blocks of [`BLOCK`] columns: per pair of rows,
/// each column's two values side by side, zero past `k` and `n`.
pub(crate) fn pack_pairs(q: &[impl Into<i16> + Copy], k: usize, n: usize) -> Vec<i16> {
    pack_row_groups::<i16, 2>(q, k, n)
}

/// Integer weights `q` (`k × n`, row-major) in blocks of [`BLOCK`] columns: per group of `G`
/// rows, each column's `G` values side by side (what one multiply-add instruction takes), zero
/// past `k` and `n`.
pub(crate) fn pack_row_groups<T: Copy + Default, const G: usize>(
    q: &[impl Into<T> + Copy],
    k: usize,
    n: usize,
) -> Vec<T> {
    let groups = k.div_ceil(G);
    let blocks = n.div_ceil(BLOCK);
    let mut packed = vec![T::default(); blocks * groups * BLOCK * G];
    for b in 0..blocks {
        for p in 0..groups {
            let at = (b * groups + p) * BLOCK * G;
            for f in 0..BLOCK.min(n - b * BLOCK) {
                let col = b * BLOCK + f;
                for j in 0..G {
                    let row = G * p + j;
                    if row < k {
                        packed[at + G * f + j] = q[row * n + col].into();
                    }
                }
            }
        }
    }
    packed
}

/// The mask of the 16 lanes from `i` that lie below `len`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn lanes_below(i: usize, len: usize) -> u16 {
    if len - i >= 16 {
        0xffff
    } else {
        (1u16 << (len - i)) - 1
    }
}

/// Where block tasks write; each writes disjoint columns.
#[derive(Clone, Copy)]
pub(crate) struct Output {
    pub(crate) y: *mut f32,
    pub(crate) n: usize,
}
// SAFETY: tasks write disjoint columns of one live `y`, borrowed for the whole `run`.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

#[derive(Clone, Copy)]
pub(crate) struct Operands<'a> {
    pub(crate) weights: &'a Int16Weights,
    pub(crate) a: &'a [i16],
    pub(crate) token_scales: &'a [f32],
    pub(crate) bias: Option<&'a [f32]>,
    pub(crate) residual: Option<&'a [f32]>,
    pub(crate) m: usize,
}

impl Operands<'_> {
    pub(crate) fn panel(&self, b: usize) -> Panel<'_> {
        let len = (self.weights.k_even / 2) * BLOCK * 2;
        match &self.weights.packed {
            Panels::I8(p) => Panel::I8(&p[b * len..(b + 1) * len]),
            Panels::I16(p) => Panel::I16(&p[b * len..(b + 1) * len]),
        }
    }

    /// Block `b`'s panel as i16, for the kernels that read only i16: the stored one, or its
    /// int8 values widened into `scratch`.
    pub(crate) fn panel16<'s>(&'s self, b: usize, scratch: &'s mut Vec<i16>) -> &'s [i16] {
        match self.panel(b) {
            Panel::I16(p) => p,
            Panel::I8(p) => {
                scratch.clear();
                scratch.extend(p.iter().map(|&v| v as i16));
                scratch
            }
        }
    }

    /// Stores one row's sums for features `col0 + f`, f < `width`: the same f32 operations,
    /// in the same order, as every vector epilogue.
    ///
    /// # Safety
    /// Row `row`, columns `col0..col0 + width` of `out` are this task's.
    pub(crate) unsafe fn store_portable(&self, row: usize, col0: usize, sums: &[i32], out: Output) {
        let w = self.weights;
        let ts = self.token_scales[row];
        for (f, &sum) in sums.iter().enumerate() {
            let col = col0 + f;
            let mut v = sum as f32 * (ts * w.scales[col]);
            if let Some(bias) = self.bias {
                v += bias[col];
            }
            if let Some(r) = self.residual {
                v += r[row * w.n + col];
            }
            // SAFETY: in bounds (row < m, col < n), and this task's column.
            unsafe { *out.y.add(row * out.n + col) = v };
        }
    }

    /// # Safety
    /// As for [`Operands::block`].
    pub(crate) unsafe fn block_portable(&self, b: usize, out: Output) {
        // SAFETY (both): as the caller promises.
        match self.panel(b) {
            Panel::I8(panel) => unsafe { self.block_portable_in(panel, b, out) },
            Panel::I16(panel) => unsafe { self.block_portable_in(panel, b, out) },
        }
    }

    /// # Safety
    /// As for [`Operands::block`].
    unsafe fn block_portable_in<T: Copy + Into<i32>>(&self, panel: &[T], b: usize, out: Output) {
        let w = self.weights;
        let col0 = b * BLOCK;
        let width = BLOCK.min(w.n - col0);
        let mut sums = [0i32; BLOCK];
        for row in 0..self.m {
            let a = &self.a[row * w.k_even..(row + 1) * w.k_even];
            sums.fill(0);
            for (p, pair) in a.chunks_exact(2).enumerate() {
                let bp = &panel[p * BLOCK * 2..(p + 1) * BLOCK * 2];
                for (f, s) in sums.iter_mut().enumerate() {
                    let d =
                        pair[0] as i32 * bp[2 * f].into() + pair[1] as i32 * bp[2 * f + 1].into();
                    *s = s.wrapping_add(d);
                }
            }
            // SAFETY: as the caller promises.
            unsafe { self.store_portable(row, col0, &sums[..width], out) };
        }
    }
}

/// `x.round()` (halves away from zero) as an integer, for `|x| <= 2^23` or NaN (0), without a
/// libm call: the fraction `x - trunc(x)` of such an `x` is exact.
#[inline]
pub(crate) fn round_half_away(x: f32) -> i32 {
    let t = x as i32;
    let fraction = x - t as f32;
    t + (fraction >= 0.5) as i32 - (fraction <= -0.5) as i32
}
