//! The encoder's load pipeline: every pass, in the one order they run, with why each comes
//! where it does. [`ONNX_FILE`] runs on the decoded file before tract parses it (the parser
//! registrations are [`super::parsers`]); [`TRACT_GRAPH`] runs on tract's typed graph. Passes
//! hand information on only through the graph itself: op types and attributes in the file,
//! ops and their fields in tract's graph, never node names.

use super::options::{GraphRewrites, Precision};
use super::{passes, rules};
use crate::error::{ErrorKind, RuntimeError};
use emotions_adapter::LoraAdapter;
use emotions_kernels::Isa;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// What every pass may read.
pub(crate) struct Context<'a> {
    pub(crate) origin: &'a str,
    pub(crate) precision: Precision,
    pub(crate) adapter: Option<&'a LoraAdapter>,
    /// The int8 calibration, parsed (`Precision::Int8` only).
    pub(crate) calibration: Option<&'a super::calibration::Int8Calibration>,
    pub(crate) isa: Isa,
}

/// What the passes counted.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) rewrites: GraphRewrites,
    /// Projections the adapter pass gave a low-rank term (integer mode).
    pub(crate) low_rank_attached: usize,
    /// Of those, how many were f32 projections it moved to the integer kernels: the plain
    /// graph would run those otherwise, so skipping the terms would not give its embeddings.
    pub(crate) low_rank_remarked: usize,
}

/// A pass over the ONNX file.
pub(crate) struct FilePass {
    pub(crate) run: fn(&mut pb::ModelProto, &Context, &mut Tally) -> Result<(), RuntimeError>,
}

/// A pass over tract's typed graph; `stage` names it in errors ("tract could not {stage} the
/// model").
pub(crate) struct GraphPass {
    pub(crate) name: &'static str,
    pub(crate) stage: &'static str,
    pub(crate) run: fn(&mut TypedModel, &Context, &mut Tally) -> TractResult<()>,
}

/// The passes over the ONNX file, in order.
pub(crate) const ONNX_FILE: [FilePass; 8] = [
    // First: it reads `DynamicQuantizeLinear` and `MatMulInteger` as the quantiser wrote them,
    // before the folds below rewrite the casts and products it matches. Integer mode marks the
    // result for 8-bit activations; the exact mode gets a plain f32 MatMul.
    FilePass {
        run: |proto, cx, _| {
            passes::dynamic_quant::float_dynamic_matmuls(proto, cx.precision);
            Ok(())
        },
    },
    // Before the folds: tables read by `Gather` stay int8, and only the rows a batch reads
    // are dequantised.
    FilePass {
        run: |proto, _, _| {
            passes::fold::gather_then_dequantise(proto);
            Ok(())
        },
    },
    // Integer mode, before the fold: int8 projections go to the kernels on the file's own int8
    // values. The exact mode folds them to f32 with the rest, as onnxruntime multiplies them.
    FilePass {
        run: |proto, cx, _| {
            if cx.precision.is_integer() {
                passes::int8_matmul::int8_matmuls(proto);
            }
            Ok(())
        },
    },
    // After the int8 marks, which it annotates: the calibrated projections' outlier channels,
    // for 8-bit activations (`Precision::Int8`).
    FilePass {
        run: |proto, cx, _| match (cx.precision, cx.calibration) {
            (Precision::Int8, Some(calibration)) => {
                passes::int8_matmul::mark_u8(proto, calibration)
            }
            _ => Ok(()),
        },
    },
    // Every dequantisation left becomes an f32 constant, so the adapter pass below sees f32
    // weights and tract's type inference never evaluates the big tables.
    FilePass {
        run: |proto, _, _| {
            passes::fold::fold_proto_dequantisation(proto);
            Ok(())
        },
    },
    // Any time before the parse: `LayerNormalization` and the opset-14 chain become one node
    // for the fused op's parser.
    FilePass {
        run: |proto, _, _| {
            passes::layer_norm::layer_norms(proto);
            Ok(())
        },
    },
    // Last: it finds projections by `Add(MatMul(x, W), bias)` with `W` f32 or int8, so after
    // the folds and the int8 marks. Exact mode merges the weights, as onnxruntime would run
    // them; integer mode keeps them (an int8 grid stays exact) and gives each projection the
    // factors of its low-rank term.
    FilePass {
        run: |proto, cx, tally| {
            let Some(adapter) = cx.adapter else {
                return Ok(());
            };
            match cx.precision {
                Precision::F32 => passes::adapter::merge(proto, adapter, cx.origin),
                Precision::Int16 | Precision::Int8 => {
                    (tally.low_rank_attached, tally.low_rank_remarked) =
                        passes::adapter::attach(proto, adapter, cx.origin)?;
                    Ok(())
                }
            }
        },
    },
    // Integer mode, after every pass that finds projections by their weights' initializer
    // (the adapter's above): each f32 projection takes its weights as an attribute, packed
    // at parse, so that tract never copies them. The exact mode packs tract's copy.
    FilePass {
        run: |proto, cx, _| {
            if cx.precision.is_integer() {
                passes::integer_weights::weights_as_attributes(proto);
            }
            Ok(())
        },
    },
];

/// The passes over tract's typed graph, in order.
pub(crate) const TRACT_GRAPH: [GraphPass; 8] = [
    // Before declutter: what only typing shows to be a product of constants.
    GraphPass {
        name: "fold constant dequantisation",
        stage: "fold the weights of",
        run: |model, _, _| rules::fold::fold_constant_dequantisation(model),
    },
    // Before declutter too: declutter fails on index arithmetic over symbolic dims.
    GraphPass {
        name: "shield symbolic arithmetic",
        stage: "type",
        run: |model, _, _| rules::symbolic::shield_symbolic_arithmetic(model).map(drop),
    },
    GraphPass {
        name: "declutter",
        stage: "declutter",
        run: |model, _, _| {
            *model = std::mem::take(model).into_decluttered()?;
            Ok(())
        },
    },
    // The rewrites below match decluttered graphs. The softmax first: attention is matched
    // around the replacement.
    GraphPass {
        name: "softmax",
        stage: "rewrite",
        run: |model, _, tally| {
            tally.rewrites.softmax = rules::softmax::replace_softmax(model)?;
            Ok(())
        },
    },
    // GELU chains; they do not interact with the others. torch's chain becomes tract's
    // `GeluExact` first, then every `GeluExact` the fused op.
    GraphPass {
        name: "GELU",
        stage: "rewrite",
        run: |model, cx, tally| {
            rules::gelu::fuse_gelu(model)?;
            tally.rewrites.gelu = rules::gelu::replace_gelu_exact(model, cx.isa)?;
            Ok(())
        },
    },
    // Attention before the projections: it traces Q, K and V back to the projections' bias
    // adds, which packing the projections would absorb.
    GraphPass {
        name: "attention",
        stage: "rewrite",
        run: |model, cx, tally| {
            tally.rewrites.attention = rules::attention::fuse_attention(model, cx.isa)?;
            Ok(())
        },
    },
    // Projections last, with their bias and residual adds.
    GraphPass {
        name: "projections",
        stage: "rewrite",
        run: |model, cx, tally| {
            let (linear, int16, uint8, low_rank) =
                rules::linear::pack_linears(model, cx.precision, cx.isa)?;
            let r = &mut tally.rewrites;
            (r.linear, r.int16, r.uint8, r.low_rank) = (linear, int16, uint8, low_rank);
            Ok(())
        },
    },
    // Counted, not rewritten: the parser wired the fused layer norms.
    GraphPass {
        name: "count layer norms",
        stage: "rewrite",
        run: |model, _, tally| {
            tally.rewrites.layer_norm = model
                .nodes
                .iter()
                .filter(|n| n.op_is::<super::ops::layer_norm::FusedLayerNorm>())
                .count();
            Ok(())
        },
    },
];

/// Runs [`ONNX_FILE`] in order.
pub(crate) fn run_file_passes(
    proto: &mut pb::ModelProto,
    cx: &Context,
    tally: &mut Tally,
) -> Result<(), RuntimeError> {
    ONNX_FILE
        .iter()
        .try_for_each(|pass| (pass.run)(proto, cx, tally))
}

/// Runs [`TRACT_GRAPH`] in order, then checks that the adapter's every term was packed.
pub(crate) fn run_graph_passes(
    model: &mut TypedModel,
    cx: &Context,
    tally: &mut Tally,
) -> Result<(), RuntimeError> {
    for pass in &TRACT_GRAPH {
        (pass.run)(model, cx, tally).map_err(|e| {
            let e = e.context(format!("in the pass '{}'", pass.name));
            crate::error::tract_err(cx.origin, pass.stage, e)
        })?;
    }
    if tally.rewrites.low_rank != tally.low_rank_attached {
        return Err(RuntimeError::new(
            cx.origin,
            ErrorKind::Adapter(emotions_adapter::AdapterErrorKind::Malformed(format!(
                "{} of the adapter's {} projections were packed with their low-rank term",
                tally.rewrites.low_rank, tally.low_rank_attached
            ))),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pass_has_its_own_name() {
        let mut names: Vec<&str> = TRACT_GRAPH.iter().map(|p| p.name).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "{names:?}");
    }
}
