//! Each kernel's types, packing and arithmetic, written once, as tract-linalg's `generic`:
//! the portable path runs these bodies as they are, and every ISA copy (`crate::x86_64`, later
//! `aarch64` and `wasm32`) compiles them with its own target features or reads their packed
//! layouts from intrinsics. The kernel modules above pick a copy by [`Isa`](crate::Isa); this
//! module and the ISA copies import neither them nor each other's callers, so the layers run
//! one way: `generic` ← per-ISA copies ← kernel modules.

pub(crate) mod attention;
pub(crate) mod gelu;
pub(crate) mod head;
pub(crate) mod i16xi8;
pub(crate) mod layer_norm;
pub(crate) mod low_rank;
pub(crate) mod u8xi8;
