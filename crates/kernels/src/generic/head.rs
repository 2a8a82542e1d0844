//! The fused head's type, packing and portable arithmetic; the ISA copies' driver.

use crate::exp::exp;
use crate::isa::Isa;

/// The labels a head scores: go_emotions' 28.
pub const NUM_LABELS: usize = 28;

/// Output lanes per packed weight row: 28 labels padded to a multiple of 16.
pub(crate) const LANES: usize = 32;

/// `sigmoid(x · W + b)` for a `[D, 28]` `W`, packed once.
pub struct HeadKernel {
    pub(crate) dim: usize,
    /// `[D, LANES]`, row-major; lanes 28..32 are zero.
    pub(crate) packed: Vec<f32>,
    pub(crate) bias: [f32; LANES],
    pub(crate) isa: Isa,
}

impl HeadKernel {
    /// `weights` is `[dim, 28]` row-major, `bias` is `[28]`; the kernel runs on `isa`.
    ///
    /// # Panics
    /// When the lengths are not those.
    pub fn new(isa: Isa, dim: usize, weights: &[f32], bias: &[f32]) -> HeadKernel {
        assert_eq!(weights.len(), dim * NUM_LABELS);
        assert_eq!(bias.len(), NUM_LABELS);
        let mut packed = vec![0f32; dim * LANES];
        for (dst, src) in packed
            .chunks_exact_mut(LANES)
            .zip(weights.chunks_exact(NUM_LABELS))
        {
            dst[..NUM_LABELS].copy_from_slice(src);
        }
        let mut b = [0f32; LANES];
        b[..NUM_LABELS].copy_from_slice(bias);
        HeadKernel {
            dim,
            packed,
            bias: b,
            isa,
        }
    }
}

/// The SIMD paths' driver: `logits` fills the pre-sigmoid sums (bias included) of one block of
/// `ROWS` rows; rows left over after the last full block go row by row. `k.dim > 0`.
/// Only the x86-64 intrinsics copies use it; AArch64 compiles [`run_rows`] for NEON.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn by_blocks<const ROWS: usize>(
    k: &HeadKernel,
    x: &[f32],
    out: &mut [f32],
    mut logits: impl FnMut(&[f32], &mut [[f32; LANES]; ROWS]),
) {
    let mut z = [[0f32; LANES]; ROWS];
    let mut x_blocks = x.chunks_exact(ROWS * k.dim);
    let mut out_blocks = out.chunks_exact_mut(ROWS * NUM_LABELS);
    for (xb, ob) in (&mut x_blocks).zip(&mut out_blocks) {
        logits(xb, &mut z);
        for (zr, or) in z.iter().zip(ob.chunks_exact_mut(NUM_LABELS)) {
            sigmoid_row(zr, or);
        }
    }
    run_rows::<true>(k, x_blocks.remainder(), out_blocks.into_remainder());
}

/// Row by row, in plain Rust: the portable path, and the last rows of the SIMD paths.
#[inline(always)]
pub(crate) fn run_rows<const FMA: bool>(k: &HeadKernel, x: &[f32], out: &mut [f32]) {
    let dim = k.dim;
    for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(NUM_LABELS)) {
        let mut acc = k.bias;
        // Two-level sum: a short run of k into `part`, then into `acc`. One long running sum
        // drifts by up to ~1e-6 in probability on rows with large entries; onnxruntime does not.
        for (c, w_chunk) in k.packed.chunks(K_RUN * LANES).enumerate() {
            let mut part = [0f32; LANES];
            for (i, w) in w_chunk.chunks_exact(LANES).enumerate() {
                let xv = xr[c * K_RUN + i];
                for (p, wj) in part.iter_mut().zip(w) {
                    *p = if FMA {
                        xv.mul_add(*wj, *p)
                    } else {
                        xv * wj + *p
                    };
                }
            }
            for (a, p) in acc.iter_mut().zip(&part) {
                *a += p;
            }
        }
        sigmoid_row(&acc, or);
    }
}

/// Length of the inner run of the two-level sum.
pub(crate) const K_RUN: usize = 16;

#[inline(always)]
pub(crate) fn sigmoid_row(z: &[f32; LANES], out: &mut [f32]) {
    let mut e = [0f32; LANES];
    for (ej, &zj) in e.iter_mut().zip(z) {
        *ej = exp(-zj);
    }
    for (o, ej) in out.iter_mut().zip(&e) {
        *o = 1.0 / (1.0 + ej);
    }
}
