//! Classifier heads: `[N, D]` sentence embeddings to one positive probability per label.
//!
//! [`builder`] loads and checks a head, [`signature`] reads its inputs and label outputs,
//! [`fusion`] proves a head linear-logistic and runs it on the fused kernel
//! (`emotions_kernels::head`), and [`export`] writes heads in the model card's format.

mod builder;
pub mod export;
mod fusion;
pub(crate) mod signature;

pub use builder::HeadBuilder;

use crate::error::{ErrorKind, RuntimeError, catching, tract_err};
use emotions_kernels::head::HeadKernel;
use emotions_labels::NUM_LABELS;
use signature::{Columns, DEFAULT_DIM};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;

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

/// A loaded, validated, optimised head. Cheap to share: `Send + Sync`.
pub struct Head {
    pub(super) engine: Engine,
    pub(super) threads: usize,
    /// The weights of a head proved linear-logistic (the fused ones).
    pub(super) linear: Option<crate::export::Dense>,
    pub(super) info: HeadInfo,
}

/// What computes the scores.
pub(super) enum Engine {
    /// A tract plan; `columns` says where the scores are in its outputs.
    Tract {
        runnable: Arc<TypedRunnableModel>,
        columns: Columns,
    },
    /// A fused head's optimised plan.
    Linear(HeadKernel),
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head").field("info", &self.info).finish()
    }
}

impl Head {
    /// Starts loading a head from an ONNX file.
    pub fn builder_from_path(path: impl AsRef<Path>) -> HeadBuilder {
        Self::builder(builder::Source::Path(path.as_ref().to_path_buf()))
    }

    /// Starts loading a head from ONNX bytes; `name` stands for the origin in errors.
    pub fn builder_from_bytes(bytes: impl Into<Vec<u8>>, name: impl Into<String>) -> HeadBuilder {
        Self::builder(builder::Source::Bytes {
            bytes: bytes.into(),
            name: name.into(),
        })
    }

    fn builder(source: builder::Source) -> HeadBuilder {
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

    /// For a head proved linear-logistic (`scores = sigmoid(x · W + b)`, which every fused head
    /// is): `W` `[D, 28]` and `b`, label order. `None` for other heads.
    pub fn linear_layer(&self) -> Option<&crate::export::Dense> {
        self.linear.as_ref()
    }

    /// The embedding width the head takes.
    pub fn input_dim(&self) -> usize {
        self.info.input_dim
    }

    /// Runs probe rows (zeros, and rows of ±1/√D in a fixed pattern) and refuses a head whose
    /// scores are not probabilities: raw margins and NaN scores are not scores.
    pub(super) fn check_probabilities(&self) -> Result<(), RuntimeError> {
        let dim = self.info.input_dim;
        let rows = 5;
        let scale = 1.0 / (dim.max(1) as f32).sqrt();
        let probe: Vec<f32> = (0..rows * dim)
            .map(|i| {
                let (row, col) = (i / dim.max(1), i % dim.max(1));
                match row {
                    0 => 0.0,
                    _ if (col * 7 + row * 13) % (row + 1) == 0 => -scale * row as f32,
                    _ => scale * row as f32,
                }
            })
            .collect();
        let scores = self.predict(&probe, rows)?;
        match scores
            .iter()
            .position(|p| !(p.is_finite() && (0.0..=1.0).contains(p)))
        {
            None => Ok(()),
            Some(i) => Err(RuntimeError::new(
                &self.info.origin,
                ErrorKind::NotProbabilities {
                    row: i / NUM_LABELS,
                    label: emotions_labels::LABELS[i % NUM_LABELS],
                    found: scores[i],
                },
            )),
        }
    }

    /// Positive scores for `rows` embeddings (row-major, `rows * input_dim()` values), as
    /// `rows * 28` values in label order.
    pub fn predict(&self, embeddings: &[f32], rows: usize) -> Result<Vec<f32>, RuntimeError> {
        catching(&self.info.origin, "run", || {
            self.predict_unguarded(embeddings, rows)
        })
    }

    fn predict_unguarded(&self, embeddings: &[f32], rows: usize) -> Result<Vec<f32>, RuntimeError> {
        let dim = self.info.input_dim;
        if rows.checked_mul(dim) != Some(embeddings.len()) {
            return Err(RuntimeError::bare(ErrorKind::InputLength {
                rows,
                dim,
                expected: rows.saturating_mul(dim),
                found: embeddings.len(),
            }));
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
        // Parts of whole rows over the kernels' pool; an error names the first bad row, as
        // one pass over the rows would.
        let per = rows.div_ceil(threads);
        let failures = std::sync::Mutex::new(std::collections::BTreeMap::new());
        let Ok(()) = emotions_kernels::pool::for_each_block::<std::convert::Infallible>(
            &mut scores,
            per * NUM_LABELS,
            |part, out| {
                let x = &embeddings[part * per * dim..][..out.len() / NUM_LABELS * dim];
                if let Err(e) = self.run_rows(x, out, part * per) {
                    failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(part, e);
                }
                Ok(())
            },
        );
        let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
        match failures.into_values().next() {
            Some(e) => Err(e),
            None => Ok(scores),
        }
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
            Err(RuntimeError::bare(ErrorKind::NonFinite {
                row: first_row + i / dim.max(1),
                column: i % dim.max(1),
                found: x[i],
            }))
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
    use tract_onnx::pb;

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
        assert!(matches!(err.kind, ErrorKind::Decode { .. }), "{err}");
        let err = Head::builder_from_path("/nonexistent/head.onnx")
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/head.onnx: cannot read model file"),
            "{err}"
        );
    }

    /// A valid 384-wide head as a proto, to be broken by the tests below.
    fn head_proto(weight: f32) -> pb::ModelProto {
        use prost::Message;
        let labels: Vec<String> = emotions_labels::LABELS
            .iter()
            .map(|l| l.to_string())
            .collect();
        let graph = export::HeadGraph {
            hidden: None,
            output: export::Dense {
                inputs: 384,
                outputs: NUM_LABELS,
                weights: vec![weight; 384 * NUM_LABELS],
                bias: vec![0.0; NUM_LABELS],
            },
            labels,
            metadata: Default::default(),
        };
        pb::ModelProto::decode(&graph.to_onnx_bytes().unwrap()[..]).unwrap()
    }

    fn build(proto: &pb::ModelProto, expected: Option<usize>) -> Result<Head, RuntimeError> {
        use prost::Message;
        Head::builder_from_bytes(proto.encode_to_vec(), "h.onnx")
            .expected_dim(expected)
            .build()
    }

    #[test]
    fn hostile_heads_are_refused_with_the_reason() {
        assert!(build(&head_proto(0.01), Some(384)).is_ok());
        // NaN weights.
        let mut p = head_proto(0.01);
        let w = &mut p.graph.as_mut().unwrap().initializer[0];
        w.float_data[5] = f32::NAN;
        let err = build(&p, Some(384)).unwrap_err();
        assert!(
            matches!(&err.kind, ErrorKind::NonFiniteWeights { tensor, .. } if tensor.contains("output.weight")),
            "{err}"
        );
        // No sigmoid: raw margins, not probabilities.
        let mut p = head_proto(1.0);
        for n in &mut p.graph.as_mut().unwrap().node {
            if n.op_type == "Sigmoid" {
                n.op_type = "Identity".into();
            }
        }
        let err = build(&p, Some(384)).unwrap_err();
        assert!(
            matches!(err.kind, ErrorKind::NotProbabilities { .. }),
            "{err}"
        );
        // A chain of 10,000 Identity nodes in front of the head.
        let mut p = head_proto(0.01);
        let g = p.graph.as_mut().unwrap();
        let mut chain: Vec<pb::NodeProto> = (0..10_000)
            .map(|i| pb::NodeProto {
                op_type: "Identity".into(),
                name: format!("id{i}"),
                input: vec![if i == 0 {
                    "logits".into()
                } else {
                    format!("id{}", i - 1)
                }],
                output: vec![format!("id{i}")],
                ..Default::default()
            })
            .collect();
        for n in &mut g.node {
            for input in &mut n.input {
                if input == "logits" {
                    *input = "id9999".into();
                }
            }
        }
        chain.append(&mut g.node);
        g.node = chain;
        let started = std::time::Instant::now();
        let err = build(&p, Some(384)).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::Limit { .. }), "{err}");
        assert!(
            err.to_string().contains("more than the limit of 4096"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // An input declared a billion wide, loaded without an expected width.
        let mut p = head_proto(0.01);
        let input = &mut p.graph.as_mut().unwrap().input[0];
        let pb::type_proto::Value::TensorType(t) =
            input.r#type.as_mut().unwrap().value.as_mut().unwrap();
        t.shape.as_mut().unwrap().dim[1].value = Some(
            pb::tensor_shape_proto::dimension::Value::DimValue(1_000_000_000),
        );
        let err = build(&p, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("1000000000 wide, more than the limit"),
            "{err}"
        );
    }

    #[test]
    fn a_linear_classifier_with_the_wrong_coefficient_count_is_refused() {
        use prost::Message;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../conformance/fixtures/heads/linear_classifier_shuffled.onnx"
        );
        let mut p = pb::ModelProto::decode(&std::fs::read(path).unwrap()[..]).unwrap();
        assert!(build(&p, Some(384)).is_ok());
        let node = p
            .graph
            .as_mut()
            .unwrap()
            .node
            .iter_mut()
            .find(|n| n.op_type == "LinearClassifier")
            .unwrap();
        let coefficients = node
            .attribute
            .iter_mut()
            .find(|a| a.name == "coefficients")
            .unwrap();
        coefficients.floats.pop();
        let err = build(&p, Some(384)).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::Coefficients { .. }), "{err}");
    }

    #[test]
    fn a_linear_classifier_behind_a_slice_is_checked_against_the_sliced_width() {
        use prost::Message;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../conformance/fixtures/heads/linear_classifier_shuffled.onnx"
        );
        let base = pb::ModelProto::decode(&std::fs::read(path).unwrap()[..]).unwrap();
        // logits[:, start:end] in front of the classifier, whose 384-wide coefficients stay.
        let sliced = |start: i64, end: i64| {
            let mut p = base.clone();
            let g = p.graph.as_mut().unwrap();
            let int = |name: &str, v: i64| pb::TensorProto {
                name: name.into(),
                dims: vec![1],
                data_type: pb::tensor_proto::DataType::Int64 as i32,
                int64_data: vec![v],
                ..Default::default()
            };
            g.initializer
                .extend([int("s0", start), int("e0", end), int("ax", 1)]);
            for n in &mut g.node {
                if n.op_type == "LinearClassifier" {
                    n.input[0] = "sliced".into();
                }
            }
            g.node.insert(
                0,
                pb::NodeProto {
                    op_type: "Slice".into(),
                    name: "cut".into(),
                    input: vec!["logits".into(), "s0".into(), "e0".into(), "ax".into()],
                    output: vec!["sliced".into()],
                    ..Default::default()
                },
            );
            build(&p, Some(384))
        };
        assert!(sliced(0, 384).is_ok());
        let err = sliced(0, 0).unwrap_err();
        assert!(
            err.to_string().contains("reads a zero-width input"),
            "{err}"
        );
        let err = sliced(0, 100).unwrap_err();
        assert!(
            matches!(err.kind, ErrorKind::Coefficients { width: 100, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_huge_constant_shape_is_refused_before_anything_is_allocated() {
        let mut p = head_proto(0.01);
        let g = p.graph.as_mut().unwrap();
        g.initializer.push(pb::TensorProto {
            name: "huge_shape".into(),
            dims: vec![2],
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            int64_data: vec![1_000_000, 1_000_000],
            ..Default::default()
        });
        g.node.push(pb::NodeProto {
            op_type: "Expand".into(),
            name: "blow_up".into(),
            input: vec!["output.bias".into(), "huge_shape".into()],
            output: vec!["unused".into()],
            ..Default::default()
        });
        let err = build(&p, Some(384)).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::Limit { .. }), "{err}");
        assert!(err.to_string().contains("'blow_up' (Expand)"), "{err}");
    }

    #[test]
    fn a_zero_column_slice_before_a_linear_classifier_is_an_error_not_a_panic() {
        use prost::Message;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../conformance/fixtures/heads/linear_classifier_shuffled.onnx"
        );
        let mut p = pb::ModelProto::decode(&std::fs::read(path).unwrap()[..]).unwrap();
        let g = p.graph.as_mut().unwrap();
        let input = g.input[0].name.clone();
        for (name, v) in [("zero_start", 0i64), ("zero_end", 0), ("zero_axis", 1)] {
            g.initializer.push(pb::TensorProto {
                name: name.into(),
                dims: vec![1],
                data_type: pb::tensor_proto::DataType::Int64 as i32,
                int64_data: vec![v],
                ..Default::default()
            });
        }
        for n in &mut g.node {
            for i in &mut n.input {
                if *i == input {
                    *i = "no_columns".into();
                }
            }
        }
        g.node.insert(
            0,
            pb::NodeProto {
                op_type: "Slice".into(),
                name: "no_columns".into(),
                input: vec![
                    input,
                    "zero_start".into(),
                    "zero_end".into(),
                    "zero_axis".into(),
                ],
                output: vec!["no_columns".into()],
                ..Default::default()
            },
        );
        // Fusion used to divide by the zero width here; now the graph is refused cleanly.
        let result = std::panic::catch_unwind(|| build(&p, Some(384)));
        let err = result.expect("no panic escapes").unwrap_err();
        assert!(err.to_string().starts_with("h.onnx: "), "{err}");
    }
}
