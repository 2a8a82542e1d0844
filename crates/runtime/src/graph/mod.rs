//! BERT-family encoder graphs: decode → the passes over the file → parse → type → the passes
//! over tract's graph → plan → run.
//!
//! The text side (tokenizer, batching, pooling) lives in the `emotions-encoder` crate; this
//! module owns the ONNX graph. [`pipeline`] is the one ordered list of passes: they fold
//! constant dequantisation, declutter, and rewrite the parts of the graph that tract runs
//! slowly on short texts into this crate's [`ops`], found by its [`rules`]. One symbolic plan
//! then serves every batch size and sequence length, unless [`PlanShapes::Buckets`] asks for
//! one per shape.
//!
//! Modules layer one way: `ops` (shape checks and a kernel call) ← `rules` (matchers on
//! tract's graph), `passes` (rewrites of the ONNX file) and `parsers` ← `pipeline` ← this
//! module.

use crate::error::{ErrorKind, RuntimeError, catching, tract_err};
use crate::onnx::file::GraphBytes;
use emotions_adapter::LoraAdapter;
use emotions_kernels::Isa;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;

pub(crate) mod calibration;
mod ops;
pub(crate) mod options;
mod parsers;
mod passes;
mod pipeline;
mod rules;
pub(crate) mod weights;

pub use calibration::Int8Calibration;
pub use options::{GraphRewrites, PlanShapes, Precision};

/// Sequence lengths plans are made for; a batch is padded up to the next one. Short texts
/// dominate go_emotions, so the small buckets are fine-grained.
const SEQUENCE_BUCKETS: [usize; 24] = [
    8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 80, 96, 128, 160, 192, 224, 256,
    384, 512,
];

/// One text of a batch: its token ids and token type ids, special tokens included.
#[derive(Debug, Clone, Copy)]
pub struct TokenRow<'a> {
    pub ids: &'a [u32],
    pub type_ids: &'a [u32],
}

/// A loaded encoder graph. `Send + Sync`; plans are cached per shape and shared.
pub struct EncoderGraph {
    origin: String,
    hidden: usize,
    inputs: InputLayout,
    /// Decluttered and rewritten, with symbolic batch and sequence.
    base: TypedModel,
    batch_sym: Symbol,
    seq_sym: Symbol,
    plan_shapes: PlanShapes,
    plans: Mutex<HashMap<(usize, usize), PlanSlot>>,
    rewrites: GraphRewrites,
    tables: EmbeddingTables,
    /// An adapter's every change is a low-rank term beside weights the plain graph packs the
    /// same way, so [`run_without_adapter`](Self::run_without_adapter) gives the plain
    /// encoder's states.
    separable_adapter: bool,
}

/// Rows of the token and position embedding tables, where the graph shows them as constants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddingTables {
    /// Token ids must be below this.
    pub vocabulary: Option<usize>,
    /// Sequences can be at most this long.
    pub positions: Option<usize>,
}

impl EmbeddingTables {
    /// The `Gather`s that read a constant table: by `input_ids` (the vocabulary), or from a
    /// table named for positions.
    fn find(proto: &tract_onnx::pb::ModelProto) -> Self {
        let Some(graph) = proto.graph.as_ref() else {
            return EmbeddingTables::default();
        };
        let rows = |name: &str| {
            graph
                .initializer
                .iter()
                .find(|t| t.name == name && t.dims.len() == 2)
                .and_then(|t| usize::try_from(t.dims[0]).ok())
        };
        let mut tables = EmbeddingTables::default();
        for node in graph.node.iter().filter(|n| n.op_type == "Gather") {
            let (Some(data), Some(indices)) = (node.input.first(), node.input.get(1)) else {
                continue;
            };
            if indices == "input_ids" && tables.vocabulary.is_none() {
                tables.vocabulary = rows(data);
            } else if data.contains("position_embeddings") && tables.positions.is_none() {
                tables.positions = rows(data);
            }
        }
        tables
    }
}

/// One shape's plan, optimised on first use. Each slot has its own lock so that optimising one
/// shape does not block runs at another.
type PlanSlot = Arc<Mutex<Option<Arc<TypedRunnableModel>>>>;

impl std::fmt::Debug for EncoderGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderGraph")
            .field("origin", &self.origin)
            .field("hidden", &self.hidden)
            .field("plan_shapes", &self.plan_shapes)
            .field("rewrites", &self.rewrites)
            .finish()
    }
}

/// A batch ready to run: its plan key, its padded sequence length and the input tensors.
type BatchInputs = ((usize, usize), usize, TVec<TValue>);

/// Which graph inputs exist, in graph order, and which output holds the token states.
#[derive(Debug, Clone)]
struct InputLayout {
    order: Vec<InputKind>,
    output_slot: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum InputKind {
    InputIds,
    AttentionMask,
    TokenTypeIds,
}

impl EncoderGraph {
    /// Parses an encoder's ONNX bytes, checks that its inputs and output are a BERT-style
    /// encoder's (`[batch, sequence, hidden]` token states), folds dequantisation and applies
    /// the rewrites. `origin` names the file in errors. Owned bytes (a `Vec<u8>`, or
    /// [`GraphBytes::from_file`]) are freed as soon as they are decoded, so peak memory is the
    /// decoded graph and tract's copy of it, not the file as well.
    pub fn load<'a>(
        bytes: impl Into<GraphBytes<'a>>,
        origin: &str,
        hidden: usize,
        plan_shapes: PlanShapes,
        precision: Precision,
    ) -> Result<Self, RuntimeError> {
        Self::load_adapted(bytes, origin, hidden, plan_shapes, precision, None, None)
    }

    /// [`EncoderGraph::load`] with a low-rank adapter merged into the projections' weights
    /// after dequantisation is folded and before anything else sees them, and in
    /// [`Precision::Int8`] an int8 calibration ([`Int8Calibration`]) for 8-bit activations.
    pub fn load_adapted<'a>(
        bytes: impl Into<GraphBytes<'a>>,
        origin: &str,
        hidden: usize,
        plan_shapes: PlanShapes,
        precision: Precision,
        adapter: Option<&LoraAdapter>,
        calibration: Option<&Int8Calibration>,
    ) -> Result<Self, RuntimeError> {
        let bytes = bytes.into();
        catching(origin, "load", || {
            Self::load_unguarded(
                bytes,
                origin,
                hidden,
                plan_shapes,
                precision,
                adapter,
                calibration,
            )
        })
    }

    fn load_unguarded(
        bytes: GraphBytes<'_>,
        origin: &str,
        hidden: usize,
        plan_shapes: PlanShapes,
        precision: Precision,
        adapter: Option<&LoraAdapter>,
        calibration: Option<&Int8Calibration>,
    ) -> Result<Self, RuntimeError> {
        let sig =
            |message: String| RuntimeError::new(origin, ErrorKind::EncoderSignature { message });
        // `EMOTIONS_ISA` is checked here, before anything is built for it.
        let isa = Isa::selected().map_err(|e| RuntimeError::from(e.at(origin)))?;
        let cx = pipeline::Context {
            origin,
            precision,
            adapter,
            calibration,
            isa,
        };
        let mut tally = pipeline::Tally::default();
        // prost copies each tensor's payload out of the buffer (tract's `raw_data` is a
        // `Vec<u8>`), so owned bytes are freed as soon as they are decoded. (tract's
        // `proto_model_for_read` would copy them first, a third copy of a 133 MB f32 model at the
        // peak.)
        let mut proto: tract_onnx::pb::ModelProto = bytes
            .decode()
            .map_err(|e| RuntimeError::new(origin, ErrorKind::Decode { source: e.into() }))?;
        crate::onnx::limits::check_model(&proto, origin, crate::onnx::limits::MAX_ENCODER_NODES)?;
        pipeline::run_file_passes(&mut proto, &cx, &mut tally)?;
        let tables = EmbeddingTables::find(&proto);
        let output_names: Vec<String> = proto
            .graph
            .as_ref()
            .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
            .unwrap_or_default();
        // `value_info` is a hint that exporters fill with their own names for the symbolic
        // dims (torch dynamo's `sequence_length`, onnxruntime's quantiser's copies of them),
        // which would clash with the `batch` and `sequence` set on the inputs below by position.
        let mut onnx = tract_onnx::onnx().with_ignore_value_info(true);
        parsers::register(&mut onnx);
        let model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| tract_err(origin, "parse", e))?;
        // tract holds its own copy of every tensor now.
        drop(proto);
        let names: Vec<String> = model
            .input_outlets()
            .map_err(|e| tract_err(origin, "parse", e))?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let order = names
            .iter()
            .map(|n| match n.as_str() {
                "input_ids" => Ok(InputKind::InputIds),
                "attention_mask" => Ok(InputKind::AttentionMask),
                "token_type_ids" => Ok(InputKind::TokenTypeIds),
                other => Err(sig(format!(
                    "unexpected input '{other}' (expected input_ids, attention_mask, token_type_ids)"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !order.contains(&InputKind::InputIds) || !order.contains(&InputKind::AttentionMask) {
            return Err(sig(format!(
                "inputs {names:?} lack input_ids or attention_mask"
            )));
        }
        let output_slot = output_names
            .iter()
            .position(|n| *n == "last_hidden_state" || *n == "token_embeddings")
            .unwrap_or(0);

        // Symbolic batch and sequence, whatever the file calls them.
        let mut model = model;
        let (batch, seq) = (model.sym("batch"), model.sym("sequence"));
        for ix in 0..order.len() {
            model
                .set_input_fact(ix, i64::fact(&[batch.to_dim(), seq.to_dim()]).into())
                .map_err(|e| tract_err(origin, "type the inputs of", e))?;
        }
        let mut typed = model
            .into_typed()
            .map_err(|e| tract_err(origin, "type", e))?;
        let out_fact = typed
            .output_fact(output_slot)
            .map_err(|e| tract_err(origin, "type", e))?;
        if out_fact.rank() != 3 || out_fact.shape[2] != hidden.to_dim() {
            return Err(sig(format!(
                "output {output_slot} is {out_fact:?}, expected [batch, sequence, {hidden}]"
            )));
        }
        pipeline::run_graph_passes(&mut typed, &cx, &mut tally)?;
        let rewrites = tally.rewrites;
        let separable_adapter = rewrites.low_rank > 0 && tally.low_rank_remarked == 0;
        // Drops what the rewrites replaced: the f32 weights that now live packed.
        let typed = typed
            .into_compact()
            .map_err(|e| tract_err(origin, "compact", e))?;
        Ok(EncoderGraph {
            origin: origin.to_string(),
            hidden,
            inputs: InputLayout { order, output_slot },
            base: typed,
            batch_sym: batch,
            seq_sym: seq,
            plan_shapes,
            plans: Mutex::new(HashMap::new()),
            rewrites,
            tables,
            separable_adapter,
        })
    }

    /// Whether the graph has an adapter that [`run_without_adapter`](Self::run_without_adapter)
    /// can leave out: one attached as low-rank terms (integer precisions; f32 merges it into the
    /// weights) to projections that were integer ones without it.
    pub fn adapter_is_separable(&self) -> bool {
        self.separable_adapter
    }

    /// Which parts of the graph the load-time rewrites matched.
    pub fn rewrites(&self) -> GraphRewrites {
        self.rewrites
    }

    /// The graph's file, as given at load.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The embedding tables' sizes, where the graph shows them.
    pub fn tables(&self) -> EmbeddingTables {
        self.tables
    }

    /// Width of the token states.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Shapes with an optimised plan cached so far; `(0, 0)` is the symbolic plan.
    pub fn cached_shapes(&self) -> Vec<(usize, usize)> {
        let mut shapes: Vec<_> = self
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        shapes.sort();
        shapes
    }

    /// Runs a batch and calls `per_text(row, states)` for each text in order, `states` being
    /// its real tokens' states (`ids.len() × hidden` values, padding excluded).
    pub fn run(
        &self,
        batch: &[TokenRow<'_>],
        per_text: impl FnMut(usize, &[f32]),
    ) -> Result<(), RuntimeError> {
        catching(&self.origin, "run", || self.run_unguarded(batch, per_text))
    }

    /// [`run`](Self::run) without the adapter's low-rank terms: the states of the graph loaded
    /// without the adapter, bit for bit, from this one graph. An error unless
    /// [`adapter_is_separable`](Self::adapter_is_separable).
    pub fn run_without_adapter(
        &self,
        batch: &[TokenRow<'_>],
        per_text: impl FnMut(usize, &[f32]),
    ) -> Result<(), RuntimeError> {
        if !self.separable_adapter {
            return Err(tract_err(
                &self.origin,
                "run",
                "the graph has no adapter to leave out (none, or merged into its weights)",
            ));
        }
        catching(&self.origin, "run", || {
            let _off = ops::linear::LowRankOff::new();
            self.run_unguarded(batch, per_text)
        })
    }

    fn run_unguarded(
        &self,
        batch: &[TokenRow<'_>],
        mut per_text: impl FnMut(usize, &[f32]),
    ) -> Result<(), RuntimeError> {
        let (key, seq, inputs) = self.batch_inputs(batch)?;
        let outputs = self
            .plan(key)?
            .run(inputs)
            .map_err(|e| tract_err(&self.origin, "run", e))?;
        let out = &outputs[self.inputs.output_slot];
        let want = [batch.len(), seq, self.hidden];
        if out.shape() != want {
            return Err(tract_err(
                &self.origin,
                "read the output of",
                format!("token states are {:?}, expected {want:?}", out.shape()),
            ));
        }
        let plain = out
            .try_as_plain_ram()
            .map_err(|e| tract_err(&self.origin, "read the output of", e))?;
        let states = plain
            .as_slice::<f32>()
            .map_err(|e| tract_err(&self.origin, "read the output of", e))?;
        for (row, t) in batch.iter().enumerate() {
            let start = row * seq * self.hidden;
            per_text(row, &states[start..start + t.ids.len() * self.hidden]);
        }
        Ok(())
    }

    /// Time spent per op type over `batches`, single-threaded, for performance work:
    /// `(op name, total, calls)`, largest first.
    pub fn op_profile(
        &self,
        batches: &[Vec<TokenRow<'_>>],
    ) -> Result<Vec<(String, std::time::Duration, usize)>, RuntimeError> {
        let mut totals: HashMap<String, (std::time::Duration, usize)> = HashMap::new();
        for batch in batches {
            let (key, _, inputs) = self.batch_inputs(batch)?;
            let plan = self.plan(key)?;
            let mut state = plan
                .spawn()
                .map_err(|e| tract_err(&self.origin, "run", e))?;
            state
                .run_plan_with_eval(inputs, |ctx, op_state, node, input| {
                    let start = std::time::Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, input);
                    // Layers aggregated: digits dropped from the node name.
                    let name: String = node.name.chars().filter(|c| !c.is_ascii_digit()).collect();
                    let e = totals
                        .entry(format!("{} {name}", node.op.name()))
                        .or_default();
                    e.0 += start.elapsed();
                    e.1 += 1;
                    out
                })
                .map_err(|e| tract_err(&self.origin, "run", e))?;
        }
        let mut rows: Vec<_> = totals.into_iter().map(|(k, (t, n))| (k, t, n)).collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        Ok(rows)
    }

    /// The shape a batch runs at: its size, and its longest text rounded up to a bucket. The
    /// plan key is `(0, 0)` for the symbolic plan.
    fn bucket(&self, batch: usize, longest: usize) -> ((usize, usize), (usize, usize)) {
        match self.plan_shapes {
            PlanShapes::Symbolic => ((batch, longest), (0, 0)),
            PlanShapes::Buckets => {
                let seq = SEQUENCE_BUCKETS
                    .iter()
                    .copied()
                    .find(|&b| b >= longest)
                    .unwrap_or(longest);
                ((batch, seq), (batch, seq))
            }
        }
    }

    fn plan(&self, shape: (usize, usize)) -> Result<Arc<TypedRunnableModel>, RuntimeError> {
        let slot = self
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(shape)
            .or_default()
            .clone();
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plan) = slot.as_ref() {
            return Ok(plan.clone());
        }
        let subs = if shape == (0, 0) {
            HashMap::new()
        } else {
            HashMap::from([
                (self.batch_sym.clone(), shape.0.to_dim()),
                (self.seq_sym.clone(), shape.1.to_dim()),
            ])
        };
        let origin = &self.origin;
        let plan = self
            .base
            .set_symbols(&subs)
            .map_err(|e| tract_err(origin, "specialise", e))?
            .into_optimized()
            .map_err(|e| tract_err(origin, "optimise", e))?
            .into_runnable()
            .map_err(|e| tract_err(origin, "plan", e))?;
        *slot = Some(plan.clone());
        Ok(plan)
    }

    /// The plan key, the padded sequence length and the input tensors for a batch.
    fn batch_inputs(&self, batch: &[TokenRow<'_>]) -> Result<BatchInputs, RuntimeError> {
        let longest = batch.iter().map(|t| t.ids.len()).max().unwrap_or(0).max(1);
        let ((b, s), key) = self.bucket(batch.len(), longest);
        let mut ids = vec![0i64; b * s];
        let mut mask = vec![0i64; b * s];
        let mut types = vec![0i64; b * s];
        for (row, t) in batch.iter().enumerate() {
            for (j, (&id, &ty)) in t.ids.iter().zip(t.type_ids).enumerate() {
                ids[row * s + j] = id as i64;
                mask[row * s + j] = 1;
                types[row * s + j] = ty as i64;
            }
        }
        let tensor = |v: &[i64]| Tensor::from_shape(&[b, s], v).map(|t| t.into_tvalue());
        let inputs = self
            .inputs
            .order
            .iter()
            .map(|k| match k {
                InputKind::InputIds => tensor(&ids),
                InputKind::AttentionMask => tensor(&mask),
                InputKind::TokenTypeIds => tensor(&types),
            })
            .collect::<TractResult<TVec<_>>>()
            .map_err(|e| tract_err(&self.origin, "build inputs for", e))?;
        Ok((key, s, inputs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_graph_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<EncoderGraph>();
    }

    #[test]
    fn garbage_is_a_decode_error_naming_the_file() {
        let err = EncoderGraph::load(
            &b"not onnx"[..],
            "enc/model.onnx",
            384,
            PlanShapes::Symbolic,
            Precision::default(),
        )
        .unwrap_err();
        assert!(matches!(err.kind, ErrorKind::Decode { .. }), "{err}");
        assert!(err.to_string().starts_with("enc/model.onnx: "), "{err}");
    }
}
