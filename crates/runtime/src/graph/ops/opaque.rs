//! A binary op evaluated as is, never decluttered: index arithmetic on symbolic dims that
//! tract's declutter cannot fold ([`crate::graph::rules::symbolic`]).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

/// A binary op evaluated as is, never decluttered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opaque {
    pub(crate) inner: TypedBinOp,
}

impl Op for Opaque {
    fn name(&self) -> StaticName {
        format!("Opaque({})", self.inner.name()).into()
    }

    op_as_typed_op!();
}

impl EvalOp for Opaque {
    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.inner.eval(ctx, inputs)
    }

    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        self.inner.eval_out_of_plan(inputs)
    }
}

impl TypedOp for Opaque {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.inner.output_facts(inputs)
    }

    as_op!();
}
