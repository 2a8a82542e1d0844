//! Exact GELU, `x * 0.5 * (1 + erf(x / √2))`, computed as tract's `GeluExact` computes it, to
//! the bit: tract-linalg's `erf` kernel, with the scaling loops here, vectorised for the CPU
//! and spread over the pool.

use crate::KernelError;
use crate::generic::gelu::gelu_body;
use crate::isa::{F32Lanes, Isa};
#[cfg(target_arch = "x86_64")]
use crate::x86_64::f32 as x86;
use tract_linalg::element_wise::ElementWise;

/// Values per call of the `erf` kernel, as tract's `GeluExact` takes them.
pub const CHUNK: usize = 1024;

/// GELU of `xs` in place, on the instructions `isa` (a test may force any the CPU runs), in
/// blocks spread over the pool when it has one and there are enough of them.
pub fn gelu_in_place(isa: Isa, xs: &mut [f32]) -> Result<(), KernelError> {
    let erf = tract_linalg::routines::Func::Erf
        .ew_f32()
        .map_err(KernelError::linalg)?;
    crate::pool::for_each_block(xs, CHUNK * 16, |_, block| {
        let mut scratch = [0f32; CHUNK];
        for chunk in block.chunks_mut(CHUNK) {
            gelu_chunk(isa, chunk, &mut scratch[..chunk.len()], &*erf)?;
        }
        Ok(())
    })
}

/// One chunk, as tract's `GeluExact` computes it: `e = erf(x * (1/√2))`, then
/// `x = (x * 0.5) * (e + 1)`, with `scratch` (as long as `xs`) holding `e`.
fn gelu_chunk(
    isa: Isa,
    xs: &mut [f32],
    scratch: &mut [f32],
    erf: &dyn ElementWise<f32>,
) -> Result<(), KernelError> {
    match isa.f32_lanes() {
        // SAFETY: an `Isa` comes only from detection, so this CPU runs its instructions.
        #[cfg(target_arch = "x86_64")]
        F32Lanes::Avx512 => unsafe { x86::gelu_avx512(xs, scratch, erf) },
        #[cfg(target_arch = "x86_64")]
        F32Lanes::Avx2 => unsafe { x86::gelu_avx2(xs, scratch, erf) },
        #[cfg(target_arch = "aarch64")]
        F32Lanes::Neon => unsafe { crate::aarch64::f32::gelu_neon(xs, scratch, erf) },
        _ => gelu_body(xs, scratch, erf),
    }
}
