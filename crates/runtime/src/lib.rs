//! Runs go_emotions classifier heads (ONNX) on the CPU with tract.
//!
//! A head maps `[N, D]` sentence embeddings to one positive probability per go_emotions label.
//! Three layouts are accepted, in any op set tract-onnx knows (`ai.onnx.ml` LinearClassifier,
//! MatMul/Gemm + Add + Sigmoid + Concat, ...):
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

use emotions_labels::{LABELS, NUM_LABELS, label_id};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::pb;
use tract_onnx::prelude::*;

mod fusion;
mod linear;

/// Everything that can go wrong loading or running a head.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{origin}: cannot read model file: {source}")]
    Io {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not a valid ONNX model (truncated or not ONNX?): {message}")]
    Decode { origin: String, message: String },
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
    #[error("{origin}: tract could not {stage} the model: {message}")]
    Tract {
        origin: String,
        stage: &'static str,
        message: String,
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
}

fn tract_err(origin: &str, stage: &'static str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Tract {
        origin: origin.to_string(),
        stage,
        message: format!("{e:#}"),
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
                message: format!("{e:#}"),
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

/// How to read the 28 label scores out of the plan's outputs.
#[derive(Debug, Clone)]
enum Columns {
    /// Output `k` is label `k`'s `[N, 2]`; the positive probability is column 1.
    PerLabel,
    /// One `[N, width]` output; label `k` is column `column_of[k]`.
    Single { width: usize, column_of: Vec<usize> },
    /// One `[N, 28]` output in label order.
    Fused,
}

/// What the ONNX graph declares, checked against what a head must be.
struct Signature {
    input_name: String,
    input_dim: usize,
    layout: HeadLayout,
    /// Output tensor names to keep, in order.
    outputs: Vec<String>,
    columns: Columns,
    metadata: BTreeMap<String, String>,
}

const DEFAULT_DIM: usize = 384;

impl Signature {
    fn validate(
        proto: &pb::ModelProto,
        origin: &str,
        expected_dim: Option<usize>,
    ) -> Result<Signature, RuntimeError> {
        let graph = proto.graph.as_ref().ok_or_else(|| RuntimeError::Decode {
            origin: origin.to_string(),
            message: "the model has no graph".into(),
        })?;
        let register = tract_onnx::onnx().op_register;
        if let Some(node) = graph
            .node
            .iter()
            .find(|n| !register.0.contains_key(&n.op_type))
        {
            return Err(RuntimeError::UnknownOp {
                origin: origin.to_string(),
                node: node.name.clone(),
                op: node.op_type.clone(),
                domain: node.domain.clone(),
            });
        }
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .collect();
        let [input] = inputs[..] else {
            return Err(RuntimeError::InputCount {
                origin: origin.to_string(),
                found: inputs.len(),
                names: inputs.iter().map(|i| i.name.clone()).collect(),
            });
        };
        let input_dim = check_input(input, origin, expected_dim)?;
        let metadata: BTreeMap<String, String> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        let output_names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();

        let missing: Vec<&'static str> = LABELS
            .iter()
            .copied()
            .filter(|l| !output_names.iter().any(|o| o == l))
            .collect();
        if missing.is_empty() {
            for label in LABELS {
                let out = graph
                    .output
                    .iter()
                    .find(|o| o.name == label)
                    .expect("present");
                check_declared_output(out, origin, 2)?;
            }
            return Ok(Signature {
                input_name: input.name.clone(),
                input_dim,
                layout: HeadLayout::PerLabelOutputs,
                outputs: LABELS.iter().map(|l| l.to_string()).collect(),
                columns: Columns::PerLabel,
                metadata,
            });
        }
        let float_outputs: Vec<&pb::ValueInfoProto> = graph
            .output
            .iter()
            .filter(|o| declared_elem_type(o).is_none_or(|t| t == 1))
            .collect();
        if let (Some(names), [single]) = (metadata.get("labels"), &float_outputs[..]) {
            let names = parse_label_list(names).ok_or_else(|| RuntimeError::BadLabelsMetadata {
                origin: origin.to_string(),
                found: names.clone(),
            })?;
            let missing: Vec<&'static str> = LABELS
                .iter()
                .copied()
                .filter(|l| !names.iter().any(|n| n == l))
                .collect();
            if !missing.is_empty() {
                return Err(RuntimeError::MissingLabels {
                    origin: origin.to_string(),
                    missing,
                    outputs: output_names,
                });
            }
            check_declared_output(single, origin, names.len())?;
            let mut column_of = vec![0usize; NUM_LABELS];
            for (col, name) in names.iter().enumerate() {
                if let Some(id) = label_id(name) {
                    column_of[id] = col;
                }
            }
            return Ok(Signature {
                input_name: input.name.clone(),
                input_dim,
                layout: HeadLayout::SingleOutput,
                outputs: vec![single.name.clone()],
                columns: Columns::Single {
                    width: names.len(),
                    column_of,
                },
                metadata,
            });
        }
        Err(RuntimeError::MissingLabels {
            origin: origin.to_string(),
            missing,
            outputs: output_names,
        })
    }

    /// The general path: the model's own graph, restricted to the label outputs, typed for
    /// `[N, D]` with a symbolic batch.
    fn typed_model(
        &self,
        proto: &pb::ModelProto,
        origin: &str,
    ) -> Result<TypedModel, RuntimeError> {
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .map_err(|e| tract_err(origin, "parse", e))?;
        let batch = model.sym("N");
        model
            .set_input_fact(
                0,
                f32::fact(&[batch.to_dim(), self.input_dim.to_dim()]).into(),
            )
            .map_err(|e| tract_err(origin, "type the input of", e))?;
        model
            .select_outputs_by_name(&self.outputs)
            .map_err(|e| tract_err(origin, "select the outputs of", e))?;
        let typed = model
            .into_typed()
            .map_err(|e| tract_err(origin, "type", e))?;
        let expected_width = match self.columns {
            Columns::PerLabel => 2,
            Columns::Single { width, .. } => width,
            Columns::Fused => NUM_LABELS,
        };
        for (ix, name) in self.outputs.iter().enumerate() {
            let fact = typed
                .output_fact(ix)
                .map_err(|e| tract_err(origin, "type", e))?;
            let ok = fact.datum_type == f32::datum_type()
                && fact.rank() == 2
                && fact.shape[0] == batch.to_dim()
                && fact.shape[1] == expected_width.to_dim();
            if !ok {
                return Err(RuntimeError::OutputShape {
                    origin: origin.to_string(),
                    name: name.clone(),
                    expected: format!("f32 [N, {expected_width}]"),
                    found: format!("{fact:?}"),
                });
            }
        }
        Ok(typed)
    }
}

fn declared_elem_type(v: &pb::ValueInfoProto) -> Option<i32> {
    match v.r#type.as_ref()?.value.as_ref()? {
        pb::type_proto::Value::TensorType(t) => Some(t.elem_type).filter(|&t| t != 0),
    }
}

/// Declared dims: `Some(n)` for a fixed dim, `None` for a symbolic one. `None` overall when the
/// file declares no shape.
fn declared_dims(v: &pb::ValueInfoProto) -> Option<Vec<Option<i64>>> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) => Some(n),
                _ => None,
            })
            .collect(),
    )
}

fn elem_type_name(t: i32) -> String {
    pb::tensor_proto::DataType::try_from(t)
        .map(|d| format!("{d:?}").to_lowercase())
        .unwrap_or_else(|_| format!("type {t}"))
}

fn check_input(
    input: &pb::ValueInfoProto,
    origin: &str,
    expected_dim: Option<usize>,
) -> Result<usize, RuntimeError> {
    if let Some(t) = declared_elem_type(input).filter(|&t| t != 1) {
        return Err(RuntimeError::InputType {
            origin: origin.to_string(),
            name: input.name.clone(),
            found: elem_type_name(t),
        });
    }
    let dims = declared_dims(input);
    if let Some(dims) = &dims
        && dims.len() != 2
    {
        return Err(RuntimeError::InputRank {
            origin: origin.to_string(),
            name: input.name.clone(),
            found: dims.len(),
        });
    }
    let declared = dims.as_ref().and_then(|d| d[1]);
    let width_err = |found: String, expected: usize| RuntimeError::InputWidth {
        origin: origin.to_string(),
        name: input.name.clone(),
        expected,
        found,
    };
    match (declared, expected_dim) {
        (Some(d), Some(e)) if d != e as i64 => Err(width_err(d.to_string(), e)),
        (Some(d), _) if d > 0 => Ok(d as usize),
        (None, Some(e)) => Ok(e),
        (found, _) => Err(width_err(
            found.map_or("a symbolic width".into(), |d| d.to_string()),
            expected_dim.unwrap_or(DEFAULT_DIM),
        )),
    }
}

fn check_declared_output(
    out: &pb::ValueInfoProto,
    origin: &str,
    width: usize,
) -> Result<(), RuntimeError> {
    let elem_ok = declared_elem_type(out).is_none_or(|t| t == 1);
    let dims = declared_dims(out);
    let shape_ok = dims
        .as_ref()
        .is_none_or(|d| d.len() == 2 && d[1].is_none_or(|w| w == width as i64));
    if elem_ok && shape_ok {
        return Ok(());
    }
    Err(RuntimeError::OutputShape {
        origin: origin.to_string(),
        name: out.name.clone(),
        expected: format!("float [N, {width}]"),
        found: format!(
            "{} {}",
            declared_elem_type(out).map_or("float".into(), elem_type_name),
            dims.map_or("unknown shape".into(), |d| format!(
                "[{}]",
                d.iter()
                    .map(|x| x.map_or("?".into(), |n| n.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        ),
    })
}

fn parse_label_list(s: &str) -> Option<Vec<String>> {
    let s = s.trim();
    if s.starts_with('[') {
        return serde_json_array(s);
    }
    let names: Vec<String> = s.split(',').map(|n| n.trim().to_string()).collect();
    names.iter().all(|n| !n.is_empty()).then_some(names)
}

/// A JSON array of strings, parsed without pulling serde into this crate.
fn serde_json_array(s: &str) -> Option<Vec<String>> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .split(',')
        .map(|item| {
            let item = item.trim();
            let name = item.strip_prefix('"')?.strip_suffix('"')?;
            (!name.is_empty() && !name.contains(['"', '\\'])).then(|| name.to_string())
        })
        .collect()
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
    Linear(linear::LinearKernel),
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
    fn label_lists_parse_both_ways() {
        assert_eq!(parse_label_list(r#"["a", "b"]"#).unwrap(), ["a", "b"]);
        assert_eq!(parse_label_list("a, b").unwrap(), ["a", "b"]);
        assert!(parse_label_list(r#"["a", 3]"#).is_none());
        assert!(parse_label_list("a,,b").is_none());
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
