//! GELU's scaling around tract-linalg's `erf`, written once: every ISA copy compiles
//! [`gelu_body`] with its own target features.

use crate::KernelError;
use tract_linalg::element_wise::ElementWise;

/// The chunk's arithmetic, compiled once per ISA.
#[inline(always)]
pub(crate) fn gelu_body(
    xs: &mut [f32],
    scratch: &mut [f32],
    erf: &dyn ElementWise<f32>,
) -> Result<(), KernelError> {
    let c = std::f32::consts::SQRT_2.recip();
    scratch.iter_mut().zip(&*xs).for_each(|(s, x)| *s = *x * c);
    erf.run(scratch).map_err(KernelError::linalg)?;
    xs.iter_mut()
        .zip(&*scratch)
        .for_each(|(x, e)| *x = (*x * 0.5) * (*e + 1.0));
    Ok(())
}
