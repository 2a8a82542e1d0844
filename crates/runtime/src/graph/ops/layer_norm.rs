//! ONNX `LayerNormalization` over the last axis as one op.
//!
//! tract expands each layer norm into eleven generic ops (two reduces, then subtract, square,
//! add, rsqrt and three broadcast multiplies and adds), each a pass over the `[batch, seq,
//! hidden]` states with a scalar loop in tract-core: about 3% of MiniLM's time on go_emotions
//! texts, and 15% once tract-core is size-optimised for the binary. [`FusedLayerNorm`] does a
//! row in two passes with the widest vector instructions the CPU has.
//!
//! The ONNX-file pass [`crate::graph::passes::layer_norm`] renames the graph's
//! `LayerNormalization` nodes to [`LAYER_NORM`], and turns the chain that exports before opset
//! 17 write instead into one such node. Its parser ([`parse_layer_norm`]) builds tract's own expansion as well and keeps it for what the fused op does
//! not cover: another axis, the optional mean and inverse-deviation outputs, another datum
//! type, or a scale or bias that is not a constant.

//! ONNX `LayerNormalization` over the last axis as one op.
//!
//! tract expands each layer norm into eleven generic ops (two reduces, then subtract, square,
//! add, rsqrt and three broadcast multiplies and adds), each a pass over the `[batch, seq,
//! hidden]` states with a scalar loop in tract-core: about 3% of MiniLM's time on go_emotions
//! texts, and 15% once tract-core is size-optimised for the binary. [`FusedLayerNorm`] does a
//! row in two passes with the widest vector instructions the CPU has.
//!
//! [`layer_norms`] renames the graph's `LayerNormalization` nodes to [`LAYER_NORM`], and turns
//! the chain that exports before opset 17 write instead into one such node. Its parser
//! ([`layer_norm`]) builds tract's own expansion as well and keeps it for what the fused op does
//! not cover: another axis, the optional mean and inverse-deviation outputs, another datum
//! type, or a scale or bias that is not a constant.

use super::{eval_in_place, keep_last_axis_last};
use emotions_kernels::Isa;
use emotions_kernels::layer_norm::normalise_rows;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The op type of the renamed layer norms, registered in the encoder's parser only.
pub(crate) const LAYER_NORM: &str = "EmotionsLayerNorm";

/// The op builder registered for [`LAYER_NORM`]: tract's `LayerNormalization`, wired as
/// [`FusedLayerNorm`] where that covers the node.
pub(crate) fn parse_layer_norm(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let tract_builder = ctx
        .framework
        .op_register
        .0
        .get("LayerNormalization")
        .context("tract registers no LayerNormalization")?;
    let (tract_op, extra) = tract_builder(ctx, node)?;
    let axis: i64 = node.get_attr_opt("axis")?.unwrap_or(-1);
    let stash: DatumType = node.get_attr_opt("stash_type")?.unwrap_or(DatumType::F32);
    let epsilon: f32 = node.get_attr_opt("epsilon")?.unwrap_or(1e-5);
    let only_y = node.output.iter().skip(1).all(String::is_empty);
    let Some(expansion) = tract_op.as_op().downcast_ref::<Box<dyn Expansion>>() else {
        return Ok((tract_op, extra));
    };
    if axis != -1 || stash != DatumType::F32 || !only_y {
        return Ok((tract_op, extra));
    }
    let fused = LastAxisLayerNorm {
        epsilon,
        tract: expansion.clone(),
    };
    Ok((expand(fused), extra))
}

/// tract's expansion of one `LayerNormalization` over the last axis, wired as
/// [`FusedLayerNorm`] when the input is f32 and the scale and bias are constants of the last
/// axis' length.
#[derive(Debug, Clone)]
struct LastAxisLayerNorm {
    epsilon: f32,
    tract: Box<dyn Expansion>,
}

impl Expansion for LastAxisLayerNorm {
    fn name(&self) -> StaticName {
        "LastAxisLayerNorm".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.tract.rules(s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        match self.fused(model, inputs)? {
            Some(op) => model.wire_node(prefix, op, &inputs[..1]),
            None => self.tract.wire(prefix, model, inputs),
        }
    }
}

impl LastAxisLayerNorm {
    fn fused(
        &self,
        model: &TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<Option<FusedLayerNorm>> {
        let x = model.outlet_fact(inputs[0])?;
        let Some(hidden) = x.shape.last().and_then(|d| d.to_usize().ok()) else {
            return Ok(None);
        };
        if x.datum_type != f32::datum_type() || hidden == 0 {
            return Ok(None);
        }
        let konst = |ix: usize| -> TractResult<Option<Arc<Tensor>>> {
            let Some(&outlet) = inputs.get(ix) else {
                return Ok(None);
            };
            let fact = model.outlet_fact(outlet)?;
            Ok(fact
                .konst
                .clone()
                .filter(|t| t.datum_type() == f32::datum_type() && t.len() == hidden))
        };
        let Some(scale) = konst(1)? else {
            return Ok(None);
        };
        let bias = match inputs.len() {
            2 => Arc::new(Tensor::zero::<f32>(&[hidden])?),
            _ => match konst(2)? {
                Some(bias) => bias,
                None => return Ok(None),
            },
        };
        Ok(Some(FusedLayerNorm {
            epsilon: self.epsilon,
            scale,
            bias,
            // Checked when the load began; the parser cannot take it as an argument.
            isa: Isa::selected()?,
        }))
    }
}

/// `(x - mean) / sqrt(var + epsilon) * scale + bias` over the last axis of an f32 tensor, both
/// moments in f32 from two passes over the row.
#[derive(Debug, Clone)]
pub(crate) struct FusedLayerNorm {
    epsilon: f32,
    scale: Arc<Tensor>,
    bias: Arc<Tensor>,
    isa: Isa,
}

impl PartialEq for FusedLayerNorm {
    fn eq(&self, other: &Self) -> bool {
        self.epsilon.to_bits() == other.epsilon.to_bits()
            && self.scale == other.scale
            && self.bias == other.bias
    }
}

impl Eq for FusedLayerNorm {}

impl Op for FusedLayerNorm {
    fn name(&self) -> StaticName {
        "FusedLayerNorm".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FusedLayerNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let scale = self.scale.try_as_plain_ram()?;
        let bias = self.bias.try_as_plain_ram()?;
        let (scale, bias) = (scale.as_slice::<f32>()?, bias.as_slice::<f32>()?);
        eval_in_place(inputs, |xs| {
            normalise_rows(self.isa, xs, scale, bias, self.epsilon);
            Ok(())
        })
    }
}

impl TypedOp for FusedLayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        ensure!(
            x.datum_type == f32::datum_type() && x.shape.last() == Some(&self.scale.len().to_dim()),
            "FusedLayerNorm over {} values, input {x:?}",
            self.scale.len()
        );
        Ok(tvec!(f32::fact(x.shape.clone())))
    }

    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        AxesMapping::natural(inputs, outputs)
    }

    fn change_axes(
        &self,
        model: &TypedModel,
        node: &TypedNode,
        _io: InOut,
        change: &AxisOp,
    ) -> TractResult<Option<AxisChangeConsequence>> {
        // Any change that keeps the normalised axis last is fine.
        keep_last_axis_last(model, node, change)
    }

    as_op!();
}
