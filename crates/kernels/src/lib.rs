//! Every SIMD loop of `emotions`, and nothing of tract's graph.
//!
//! The runtime's ops (`emotions-runtime`) check shapes and call these kernels on plain slices.
//! Each kernel's arithmetic is written once, portably, in its module here; the per-ISA
//! modules beside it ([`x86_64`](crate#per-isa-modules), `aarch64`, and later `wasm32`)
//! hold the `#[target_feature]` copies and explicit intrinsics. Which copy runs is an
//! [`Isa`], detected once; tests force every one the CPU has.
//!
//! - [`isa`]: the one ISA type, and `EMOTIONS_ISA`.
//! - [`pool`]: the thread pool and the one parallel-for over it; [`memory`]: allocator settings
//!   for long runs; [`catch_panic`]: the one place a panic becomes an error, for every crate.
//! - f32 kernels: [`exp`], [`softmax`], [`gelu`], [`layer_norm`], [`attention`], [`head`] (the
//!   fused head's `sigmoid(x · W + b)`), [`low_rank`] (an adapter's `x · Aᵀ · Bᵀ`), and
//!   [`f32_rows`] (tract-linalg's f32 matmul on packed weights).
//! - Quantised matmuls, named activation × weight: [`i16xi8`] (the default integer
//!   projections) and [`u8xi8`] (8-bit activations on VNNI).
//!
//! # Per-ISA modules
//! `src/x86_64/` holds the AVX-512 and AVX2 copies, `src/aarch64/` the NEON, dotprod and i8mm
//! ones. No file outside this crate uses `std::arch` or `#[target_feature]`: a new ISA is a
//! new folder here (`src/wasm32/`), a new [`IsaClass`], and a match arm in each kernel's
//! dispatch.

// On targets with no SIMD copies of their own (wasm32: the generic bodies serve SIMD128) the
// dispatch's ISA names go unused.
#![cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_imports, unused_variables)
)]

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod attention;
mod error;
pub mod exp;
pub mod f32_rows;
pub mod gelu;
mod generic;
mod guard;
pub mod head;
pub mod i16xi8;
pub mod isa;
pub mod layer_norm;
pub mod low_rank;
pub mod memory;
pub mod pool;
pub mod softmax;
pub mod u8xi8;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm32;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use error::{KernelError, KernelErrorKind};
pub use guard::{catch_panic, panic_message, quiet_caught_panics, show_caught_panics};
pub use isa::{ISA_VARIABLE, Isa, IsaClass};
pub use memory::{HugePageAlloc, grow_heap_in_huge_pages, limit_heap_arenas, release_free_memory};
pub use pool::{KernelThreads, on_pool, set_threads, single_threaded};

/// `a * b + c`, fused where the caller's target features have FMA (the f32 kernels'
/// `FMA = true` copies are compiled with them). A function, not a closure: a closure is
/// compiled without the caller's target features, and `mul_add` there is a call to a software
/// fma, far slower.
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}
