//! Every ONNX graph `emotions` runs, loaded, validated, optimised and run with tract on the CPU.
//! No other crate of the workspace touches tract, and no tract type is in this crate's API.
//!
//! - [`Head`]: a go_emotions classifier head, `[N, D]` sentence embeddings to one positive
//!   probability per label (fused linear heads run on a dedicated AVX-512/AVX2 kernel);
//! - [`EncoderGraph`]: a BERT-family encoder graph, token ids to token states, with the
//!   load-time rewrites that make it fast;
//! - [`export`]: writes heads as ONNX in the model card's format.
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

use emotions_labels::NUM_LABELS;
use signature::{Columns, DEFAULT_DIM, Signature};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;

mod encoder;
mod exp;
pub mod export;
mod fusion;
mod head_kernel;
mod signature;

pub use encoder::{
    EncoderGraph, GraphRewrites, PlanShapes, TokenRow, set_threads, single_threaded,
};

/// What tract reported, with its chain of causes.
pub type TractError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong loading, running or writing a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{origin}: cannot read model file")]
    Io {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not a valid ONNX model (truncated or not ONNX?)")]
    Decode {
        origin: String,
        #[source]
        source: TractError,
    },
    #[error("{origin}: node '{node}' uses op '{op}' (domain '{domain}'), which is not supported")]
    UnknownOp {
        origin: String,
        node: String,
        op: String,
        domain: String,
    },
    #[error("{origin}: expected exactly one input, found {found}: {names:?}")]
    InputCount {
        origin: String,
        found: usize,
        names: Vec<String>,
    },
    #[error("{origin}: input '{name}' must be float32, found {found}")]
    InputType {
        origin: String,
        name: String,
        found: String,
    },
    #[error("{origin}: input '{name}' must have rank 2 [N, D], found rank {found}")]
    InputRank {
        origin: String,
        name: String,
        found: usize,
    },
    #[error("{origin}: input '{name}' must be {expected} wide, found {found}")]
    InputWidth {
        origin: String,
        name: String,
        expected: usize,
        found: String,
    },
    #[error(
        "{origin}: missing label output(s) {missing:?}; expected one [N, 2] output per go_emotions label, or one [N, K] output with a 'labels' metadata entry (outputs found: {outputs:?})"
    )]
    MissingLabels {
        origin: String,
        missing: Vec<&'static str>,
        outputs: Vec<String>,
    },
    #[error("{origin}: metadata 'labels' is not a JSON array or comma-separated list: {found}")]
    BadLabelsMetadata { origin: String, found: String },
    #[error("{origin}: output '{name}' must be {expected}, found {found}")]
    OutputShape {
        origin: String,
        name: String,
        expected: String,
        found: String,
    },
    #[error("{origin}: the ONNX graph is not a BERT-style encoder: {message}")]
    EncoderSignature { origin: String, message: String },
    #[error("{origin}: tract could not {stage} the model")]
    Tract {
        origin: String,
        stage: &'static str,
        #[source]
        source: TractError,
    },
    #[error("expected {expected} values for {rows} rows of {dim}, found {found}")]
    InputLength {
        rows: usize,
        dim: usize,
        expected: usize,
        found: usize,
    },
    #[error("row {row}, column {column}: expected a finite number, found {found}")]
    NonFinite {
        row: usize,
        column: usize,
        found: f32,
    },
    #[error("cannot export the head: {0}")]
    Export(String),
}

/// A tract failure at `stage`, keeping tract's own error as the source.
pub(crate) fn tract_err(
    origin: &str,
    stage: &'static str,
    e: impl Into<TractError>,
) -> RuntimeError {
    RuntimeError::Tract {
        origin: origin.to_string(),
        stage,
        source: e.into(),
    }
}

/// Which tract plan runs the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Plan {
    /// Decluttered: the model's own ops, simplified, unoptimised kernels.
    Decluttered,
    /// Fully optimised for this CPU (the default). A fused head runs on a dedicated
    /// register-blocked kernel rather than through tract.
    #[default]
    Optimized,
}

/// How the head's label outputs are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadLayout {
    /// One `[N, 2]` output per label, named by the label (the model card's format).
    PerLabelOutputs,
    /// One `[N, K]` output, columns named by the `labels` metadata entry.
    SingleOutput,
}

/// What was loaded, for display and compatibility checks.
#[derive(Debug, Clone)]
pub struct HeadInfo {
    /// Where the model came from: a path, or a name given for bytes.
    pub origin: String,
    pub input_name: String,
    pub input_dim: usize,
    pub layout: HeadLayout,
    /// Whether the graph was rewritten into one `[D, K]` matmul + bias + sigmoid.
    pub fused: bool,
    pub plan: Plan,
    /// ONNX `metadata_props`.
    pub metadata: BTreeMap<String, String>,
}

impl HeadInfo {
    /// The encoder the head was trained on, from metadata key `encoder`, when recorded.
    pub fn encoder(&self) -> Option<&str> {
        self.metadata.get("encoder").map(String::as_str)
    }
}

/// Where a head is loaded from.
enum Source {
    Path(std::path::PathBuf),
    Bytes { bytes: Vec<u8>, name: String },
}

/// Configures and loads a [`Head`]; everything is validated in [`HeadBuilder::build`].
pub struct HeadBuilder {
    source: Source,
    plan: Plan,
    fuse: bool,
    expected_dim: Option<usize>,
    threads: usize,
}

impl HeadBuilder {
    /// Which plan to run (default: optimised).
    pub fn plan(mut self, plan: Plan) -> Self {
        self.plan = plan;
        self
    }

    /// Rewrite linear-logistic heads into one matmul + bias + sigmoid (default: on). Graphs
    /// that do not match run as they are.
    pub fn fuse(mut self, fuse: bool) -> Self {
        self.fuse = fuse;
        self
    }

    /// Require this input width (default: 384, the card's; `None` accepts the model's width).
    pub fn expected_dim(mut self, dim: Option<usize>) -> Self {
        self.expected_dim = dim;
        self
    }

    /// Threads a large batch is split across (default: the number of cores). Rows never
    /// interact, so the scores do not depend on it.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Loads, validates and optimises the head.
    pub fn build(self) -> Result<Head, RuntimeError> {
        let (bytes, origin) = match self.source {
            Source::Path(path) => {
                let origin = path.display().to_string();
                let bytes = std::fs::read(&path).map_err(|source| RuntimeError::Io {
                    origin: origin.clone(),
                    source,
                })?;
                (bytes, origin)
            }
            Source::Bytes { bytes, name } => (bytes, name),
        };
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| RuntimeError::Decode {
                origin: origin.clone(),
                source: e.into(),
            })?;
        let signature = Signature::validate(&proto, &origin, self.expected_dim)?;
        let fused = if self.fuse {
            fusion::extract_linear_logistic(&proto, &signature)
        } else {
            None
        };
        let plan = self.plan;
        let origin_ref = &origin;
        let optimise = |model: TypedModel| -> Result<Arc<TypedRunnableModel>, RuntimeError> {
            let model = match plan {
                Plan::Decluttered => model
                    .into_decluttered()
                    .map_err(|e| tract_err(origin_ref, "declutter", e))?,
                Plan::Optimized => model
                    .into_optimized()
                    .map_err(|e| tract_err(origin_ref, "optimise", e))?,
            };
            model
                .into_runnable()
                .map_err(|e| tract_err(origin_ref, "plan", e))
        };
        let is_fused = fused.is_some();
        let engine = match (fused, plan) {
            (Some(linear), Plan::Optimized) => Engine::Linear(linear.kernel()),
            (Some(linear), Plan::Decluttered) => Engine::Tract {
                runnable: optimise(
                    linear
                        .typed_model()
                        .map_err(|e| tract_err(&origin, "build", e))?,
                )?,
                columns: Columns::Fused,
            },
            (None, _) => Engine::Tract {
                runnable: optimise(signature.typed_model(&proto, &origin)?)?,
                columns: signature.columns,
            },
        };
        Ok(Head {
            threads: self.threads,
            info: HeadInfo {
                origin,
                input_name: signature.input_name,
                input_dim: signature.input_dim,
                layout: signature.layout,
                fused: is_fused,
                plan: self.plan,
                metadata: signature.metadata,
            },
            engine,
        })
    }
}

/// A loaded, validated, optimised head. Cheap to share: `Send + Sync`.
pub struct Head {
    engine: Engine,
    threads: usize,
    info: HeadInfo,
}

/// What computes the scores.
enum Engine {
    /// A tract plan; `columns` says where the scores are in its outputs.
    Tract {
        runnable: Arc<TypedRunnableModel>,
        columns: Columns,
    },
    /// A fused head's optimised plan.
    Linear(head_kernel::LinearKernel),
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head").field("info", &self.info).finish()
    }
}

impl Head {
    /// Starts loading a head from an ONNX file.
    pub fn builder_from_path(path: impl AsRef<Path>) -> HeadBuilder {
        Self::builder(Source::Path(path.as_ref().to_path_buf()))
    }

    /// Starts loading a head from ONNX bytes; `name` stands for the origin in errors.
    pub fn builder_from_bytes(bytes: impl Into<Vec<u8>>, name: impl Into<String>) -> HeadBuilder {
        Self::builder(Source::Bytes {
            bytes: bytes.into(),
            name: name.into(),
        })
    }

    fn builder(source: Source) -> HeadBuilder {
        HeadBuilder {
            source,
            plan: Plan::default(),
            fuse: true,
            expected_dim: Some(DEFAULT_DIM),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub fn info(&self) -> &HeadInfo {
        &self.info
    }

    /// The embedding width the head takes.
    pub fn input_dim(&self) -> usize {
        self.info.input_dim
    }

    /// Positive scores for `rows` embeddings (row-major, `rows * input_dim()` values), as
    /// `rows * 28` values in label order.
    pub fn predict(&self, embeddings: &[f32], rows: usize) -> Result<Vec<f32>, RuntimeError> {
        let dim = self.info.input_dim;
        if rows.checked_mul(dim) != Some(embeddings.len()) {
            return Err(RuntimeError::InputLength {
                rows,
                dim,
                expected: rows.saturating_mul(dim),
                found: embeddings.len(),
            });
        }
        if rows == 0 {
            return Ok(Vec::new());
        }
        let mut scores = vec![0f32; rows * NUM_LABELS];
        // Below this many rows a thread costs more than it saves.
        const ROWS_PER_THREAD: usize = 256;
        let threads = self.threads.min(rows / ROWS_PER_THREAD).max(1);
        if threads == 1 || dim == 0 {
            self.run_rows(embeddings, &mut scores, 0)?;
            return Ok(scores);
        }
        let per = rows.div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = embeddings
                .chunks(per * dim)
                .zip(scores.chunks_mut(per * NUM_LABELS))
                .enumerate()
                .map(|(i, (x, out))| s.spawn(move || self.run_rows(x, out, i * per)))
                .collect();
            // In chunk order, so an error names the first bad row.
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("head worker panicked"))
        })?;
        Ok(scores)
    }

    /// Checks and scores consecutive rows; `first_row` is their index in the caller's input.
    fn run_rows(&self, x: &[f32], out: &mut [f32], first_row: usize) -> Result<(), RuntimeError> {
        let dim = self.info.input_dim;
        let check = |x: &[f32], first_row: usize| {
            // A reduction without early exit vectorises; search only when something is off.
            if x.iter().fold(true, |ok, v| ok & v.is_finite()) {
                return Ok(());
            }
            let i = x.iter().position(|v| !v.is_finite()).unwrap_or(0);
            Err(RuntimeError::NonFinite {
                row: first_row + i / dim.max(1),
                column: i % dim.max(1),
                found: x[i],
            })
        };
        match &self.engine {
            Engine::Linear(kernel) if dim == 0 => {
                kernel.run(x, out);
                Ok(())
            }
            Engine::Linear(kernel) => {
                // Check each block just before scoring it, while it is in cache.
                const BLOCK: usize = 64;
                for (b, (xb, ob)) in x
                    .chunks(BLOCK * dim.max(1))
                    .zip(out.chunks_mut(BLOCK * NUM_LABELS))
                    .enumerate()
                {
                    check(xb, first_row + b * BLOCK)?;
                    kernel.run(xb, ob);
                }
                Ok(())
            }
            Engine::Tract { runnable, columns } => {
                check(x, first_row)?;
                self.run_tract(runnable, columns, x, out)
            }
        }
    }

    /// Runs a tract plan on checked rows.
    fn run_tract(
        &self,
        runnable: &Arc<TypedRunnableModel>,
        columns: &Columns,
        embeddings: &[f32],
        scores: &mut [f32],
    ) -> Result<(), RuntimeError> {
        let dim = self.info.input_dim;
        let rows = scores.len() / NUM_LABELS;
        let input = Tensor::from_shape(&[rows, dim], embeddings)
            .map_err(|e| tract_err(&self.info.origin, "build an input for", e))?;
        let outputs = runnable
            .run(tvec![input.into_tvalue()])
            .map_err(|e| tract_err(&self.info.origin, "run", e))?;
        let view = |ix: usize| {
            outputs[ix]
                .to_plain_array_view::<f32>()
                .map_err(|e| tract_err(&self.info.origin, "read the output of", e))
        };
        match columns {
            Columns::PerLabel => {
                for label in 0..NUM_LABELS {
                    let out = view(label)?;
                    for row in 0..rows {
                        scores[row * NUM_LABELS + label] = out[[row, 1]];
                    }
                }
            }
            Columns::Single { column_of, .. } => {
                let out = view(0)?;
                for row in 0..rows {
                    for (label, &col) in column_of.iter().enumerate() {
                        scores[row * NUM_LABELS + label] = out[[row, col]];
                    }
                }
            }
            Columns::Fused => {
                let out = view(0)?;
                let flat = out.as_slice().ok_or_else(|| {
                    tract_err(
                        &self.info.origin,
                        "read the output of",
                        "non-contiguous output",
                    )
                })?;
                scores.copy_from_slice(flat);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Head>();
    }

    #[test]
    fn garbage_and_missing_files_are_errors() {
        let err = Head::builder_from_bytes(b"not a model".to_vec(), "junk")
            .build()
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Decode { .. }), "{err}");
        let err = Head::builder_from_path("/nonexistent/head.onnx")
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/head.onnx: cannot read model file"),
            "{err}"
        );
    }
}
