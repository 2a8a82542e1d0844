//! Every ONNX graph `emotions` runs, loaded, validated, optimised and run with tract on the CPU.
//! No other crate of the workspace touches tract, and no tract type is in this crate's API.
//!
//! - [`Head`]: a go_emotions classifier head, `[N, D]` sentence embeddings to one positive
//!   probability per label (fused linear heads run on a dedicated AVX-512/AVX2 kernel);
//! - [`EncoderGraph`]: a BERT-family encoder graph, token ids to token states, with the
//!   load-time rewrites that make it fast;
//! - [`export`]: writes heads as ONNX in the model card's format.
//!
//! Layout (ARCHITECTURE.md): [`error`]; `onnx/` (limits, proto helpers); `head/`; `graph/`
//! (the encoder graph: `options`, `pipeline` (the one ordered list of passes), `parsers`,
//! `passes` on the ONNX file, `rules` on tract's graph, `ops`). The SIMD loops are
//! `emotions-kernels`'.
//!
//! Heads come in three layouts, in any op set tract-onnx knows (`ai.onnx.ml`
//! LinearClassifier, MatMul/Gemm + Add + Sigmoid + Concat, ...):
//!
//! - **per-label outputs** (the model card's format): one `[N, 2]` = `[P(neg), P(pos)]` output
//!   per label, named by the label, in any order; other outputs (such as an int64 `label`) are
//!   ignored;
//! - **one `[N, K]` output** whose column names come from the model metadata key `labels`
//!   (a JSON array of names, or names separated by commas).
//!
//! The chain is load → validate → optimise once → run many times, on any batch size.
//! [`Head`] is `Send + Sync`; share it between threads behind an `Arc` or a reference.
//!
//! ```no_run
//! use emotions_runtime::Head;
//! let head = Head::builder_from_path("models/head.onnx").build()?;
//! let rows = vec![0.0f32; 2 * head.input_dim()];
//! let scores = head.predict(&rows, 2)?; // [2, 28] in label order
//! assert_eq!(scores.len(), 2 * emotions_labels::NUM_LABELS);
//! # Ok::<(), emotions_runtime::RuntimeError>(())
//! ```

pub mod error;
mod graph;
pub(crate) mod head;
mod onnx;
#[cfg(test)]
mod testing;

pub use emotions_adapter::{AdapterError, LoraAdapter, LowRankDelta};
pub use emotions_kernels::{
    HugePageAlloc, Isa, IsaClass, KernelThreads, catch_panic, grow_heap_in_huge_pages,
    limit_heap_arenas, on_pool, panic_message, quiet_caught_panics, release_free_memory,
    set_threads, show_caught_panics, single_threaded,
};
pub use error::{ErrorKind, RuntimeError, TractError};
pub use graph::weights::{NamedTensor, encoder_weights};
pub use graph::{
    EmbeddingTables, EncoderGraph, GraphRewrites, Int8Calibration, PlanShapes, Precision, TokenRow,
};
pub use head::{Head, HeadBuilder, HeadInfo, HeadLayout, Plan, export};
pub use onnx::file::GraphBytes;
pub use onnx::limits;
