//! Exact GELU in one pass: tract's `GeluExact` arithmetic on the kernels' GELU
//! (`emotions_kernels::gelu`), spread over the pool.

use super::eval_in_place;
use emotions_kernels::Isa;
use emotions_kernels::gelu::gelu_in_place;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// `x * 0.5 * (1 + erf(x / √2))` element by element on an f32 tensor, computed as tract's
/// `GeluExact` computes it, to the bit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FusedGelu {
    pub(crate) isa: Isa,
}

impl Op for FusedGelu {
    fn name(&self) -> StaticName {
        "FusedGelu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FusedGelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        eval_in_place(inputs, |xs| Ok(gelu_in_place(self.isa, xs)?))
    }
}

impl TypedOp for FusedGelu {
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
        // Element by element: any layout will do.
        Ok(Some(AxisChangeConsequence::new(model, node, None, change)))
    }

    as_op!();
}
