//! The generic f32 bodies compiled for NEON with `FMA = true`: LLVM vectorises them to
//! 4-lane `FMLA`/`FMUL`, and fused multiply-adds give the same bits as the x86-64 FMA copies.
//!
//! # Safety
//! Every function here may only be called on a CPU with NEON: with an [`Isa`](crate::Isa) of
//! an AArch64 class, which only detection makes.

use crate::KernelError;
use crate::generic::attention::{Operands, Scales, Shape, attend_generic};
use crate::generic::gelu::gelu_body;
use crate::generic::head::{HeadKernel, run_rows};
use crate::generic::layer_norm::block_generic;
use crate::generic::low_rank::LowRank;
use tract_linalg::element_wise::ElementWise;

#[target_feature(enable = "neon")]
pub(crate) unsafe fn layer_norm_neon(rows: &mut [f32], scale: &[f32], bias: &[f32], eps: f32) {
    block_generic::<true>(rows, scale, bias, eps)
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn attend_neon(
    shape: &Shape,
    scales: Scales,
    ops: Operands,
    b: usize,
    out: &mut [f32],
) {
    attend_generic::<true>(shape, scales, ops, b, out)
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn low_rank_neon(side: &LowRank, x: &[f32], out: &mut [f32]) {
    side.rows_generic::<true>(x, out)
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn head_neon(kernel: &HeadKernel, x: &[f32], out: &mut [f32]) {
    run_rows::<true>(kernel, x, out)
}

// No multiply-adds to fuse, as on x86-64: every copy gives tract's `GeluExact` bits.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gelu_neon(
    xs: &mut [f32],
    scratch: &mut [f32],
    erf: &dyn ElementWise<f32>,
) -> Result<(), KernelError> {
    gelu_body(xs, scratch, erf)
}
