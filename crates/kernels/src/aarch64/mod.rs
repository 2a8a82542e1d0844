//! The AArch64 copies of the kernels: NEON on every AArch64 CPU, with the 8-bit dot product
//! (`SDOT`, dotprod) and matrix multiply-accumulate (`USMMLA`, i8mm) where detected, called only
//! with an [`Isa`](crate::Isa) that has them.
//!
//! As on x86-64, the f32 kernels are the generic bodies compiled with NEON and fused
//! multiply-adds ([`f32`]); the integer projections are intrinsics ([`i16xi8`]: `SMLAL`) and,
//! for the dot-product instructions that Rust's stable intrinsics lack yet, one `asm!`
//! instruction each ([`u8xi8`]).

pub(crate) mod f32;
pub(crate) mod i16xi8;
pub(crate) mod u8xi8;
