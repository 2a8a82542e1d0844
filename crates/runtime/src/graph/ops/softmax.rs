//! Softmax over the last axis, for attention scores, on the kernels' row softmax.
//!
//! tract 0.23's Softmax has no row kernel on x86, so each row goes through per-row reduce
//! helpers that copy it into an aligned scratch buffer. Attention rows are as short as the
//! text (about 20 scores), so that overhead made Softmax 11.6% of MiniLM's time on go_emotions
//! texts. This op does each row in place, with an `exp` the compiler can vectorise.

use super::{eval_in_place, keep_last_axis_last};
use emotions_kernels::softmax::softmax_rows;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct LastAxisSoftmax;

impl Op for LastAxisSoftmax {
    fn name(&self) -> StaticName {
        "LastAxisSoftmax".into()
    }

    op_as_typed_op!();
}

impl EvalOp for LastAxisSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let row = inputs[0].shape().last().copied().unwrap_or(1).max(1);
        eval_in_place(inputs, |xs| {
            softmax_rows(xs, row);
            Ok(())
        })
    }
}

impl TypedOp for LastAxisSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
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
        // Any change that keeps the softmax axis last is fine.
        keep_last_axis_last(model, node, change)
    }

    as_op!();
}
