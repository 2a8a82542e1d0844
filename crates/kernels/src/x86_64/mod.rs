//! The x86-64 copies of the kernels: AVX-512 and AVX2, compiled with `#[target_feature]` and
//! called only with an [`Isa`](crate::Isa) that has them.
//!
//! Kernels whose arithmetic LLVM vectorises well (layer norm, attention, GELU's scaling, the
//! low-rank term) are one generic body in their own module, compiled here once per ISA
//! ([`f32`]). The rest are written in intrinsics: the fused head, and the integer projections.

pub(crate) mod f32;
pub(crate) mod head;
pub(crate) mod i16xi8;
pub(crate) mod u8xi8;
