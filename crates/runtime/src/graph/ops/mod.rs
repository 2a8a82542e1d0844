//! This crate's tract ops: each checks its inputs' shapes and calls a kernel of
//! `emotions-kernels`. Rules (`super::rules`) and the parser (`super::parsers`) put them in
//! the graph; ops import neither.

pub(crate) mod attention;
pub(crate) mod flatten;
pub(crate) mod gelu;
pub(crate) mod layer_norm;
pub(crate) mod linear;
pub(crate) mod opaque;
pub(crate) mod projection;
pub(crate) mod softmax;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// `change_axes` for a one-input op over its last axis: any change that keeps that axis last
/// is fine.
pub(crate) fn keep_last_axis_last(
    model: &TypedModel,
    node: &TypedNode,
    change: &AxisOp,
) -> TractResult<Option<AxisChangeConsequence>> {
    let rank = model.outlet_fact(node.inputs[0])?.rank();
    let mut shape: TVec<usize> = (0..rank).map(|_| 2).collect();
    change.change_shape_array(&mut shape, false)?;
    if change.transform_axis(rank - 1) == Some(shape.len() - 1) {
        Ok(Some(AxisChangeConsequence::new(model, node, None, change)))
    } else {
        Ok(None)
    }
}

/// `eval` for a one-input f32 op that rewrites its input in place: `f` gets the values of the
/// sole input, which tract hands over owned when no other op reads it (copied otherwise).
pub(crate) fn eval_in_place(
    inputs: TVec<TValue>,
    f: impl FnOnce(&mut [f32]) -> TractResult<()>,
) -> TractResult<TVec<TValue>> {
    let mut tensor = args_1!(inputs).into_tensor();
    f(tensor.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?)?;
    Ok(tvec!(tensor.into_tvalue()))
}
