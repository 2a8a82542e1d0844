//! The generic f32 bodies, compiled once per ISA: `FMA = true` copies with AVX-512 or AVX2
//! enabled, so LLVM vectorises them at that width and fuses their multiply-adds.
//!
//! # Safety
//! Every function here may only be called on a CPU that has its target features: that is,
//! with an [`Isa`](crate::Isa) of the matching class, which only detection makes.

use crate::KernelError;
use crate::generic::attention::{Operands, Scales, Shape, attend_generic};
use crate::generic::gelu::gelu_body;
use crate::generic::layer_norm::block_generic;
use crate::generic::low_rank::LowRank;
use tract_linalg::element_wise::ElementWise;

#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn layer_norm_avx512(rows: &mut [f32], scale: &[f32], bias: &[f32], eps: f32) {
    block_generic::<true>(rows, scale, bias, eps)
}

#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn layer_norm_avx2(rows: &mut [f32], scale: &[f32], bias: &[f32], eps: f32) {
    block_generic::<true>(rows, scale, bias, eps)
}

#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn attend_avx512(
    shape: &Shape,
    scales: Scales,
    ops: Operands,
    b: usize,
    out: &mut [f32],
) {
    attend_generic::<true>(shape, scales, ops, b, out)
}

#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn attend_avx2(
    shape: &Shape,
    scales: Scales,
    ops: Operands,
    b: usize,
    out: &mut [f32],
) {
    attend_generic::<true>(shape, scales, ops, b, out)
}

#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn low_rank_avx512(side: &LowRank, x: &[f32], out: &mut [f32]) {
    side.rows_generic::<true>(x, out)
}

#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn low_rank_avx2(side: &LowRank, x: &[f32], out: &mut [f32]) {
    side.rows_generic::<true>(x, out)
}

// GELU's scaling has no multiply-adds to fuse: these copies only widen its vectors (and
// enable no FMA, so every copy gives tract's `GeluExact` bits).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn gelu_avx512(
    xs: &mut [f32],
    scratch: &mut [f32],
    erf: &dyn ElementWise<f32>,
) -> Result<(), KernelError> {
    gelu_body(xs, scratch, erf)
}

#[target_feature(enable = "avx2")]
pub(crate) unsafe fn gelu_avx2(
    xs: &mut [f32],
    scratch: &mut [f32],
    erf: &dyn ElementWise<f32>,
) -> Result<(), KernelError> {
    gelu_body(xs, scratch, erf)
}
