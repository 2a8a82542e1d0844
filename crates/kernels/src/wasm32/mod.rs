//! The WebAssembly copies of the kernels, for [`IsaClass::Simd128`](crate::IsaClass::Simd128):
//! the integer projections on `i32x4_dot_i16x8`, and their activations' rounding ([`i16xi8`]). The f32 kernels are the generic
//! bodies, which a `+simd128` build compiles to 128-bit lanes already.

pub(crate) mod i16xi8;
