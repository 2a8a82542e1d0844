//! Replaces tract's Softmax over the last axis by [`LastAxisSoftmax`].

use super::pattern::replace_each;
use crate::graph::ops::softmax::LastAxisSoftmax;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

/// Replaces every f32 Softmax over the last axis by [`LastAxisSoftmax`].
pub(crate) fn replace_softmax(model: &mut TypedModel) -> TractResult<usize> {
    replace_each(model, |model, node| {
        let Some(op) = node.op_as::<Softmax>() else {
            return Ok(None);
        };
        let fact = model.outlet_fact(node.inputs[0])?;
        Ok((op.kind == SoftmaxKind::Softmax
            && op.quant_output_dt.is_none()
            && fact.datum_type == f32::datum_type()
            && fact.rank() > 0
            && op.axes[..] == [fact.rank() - 1])
        .then_some(LastAxisSoftmax))
    })
}
