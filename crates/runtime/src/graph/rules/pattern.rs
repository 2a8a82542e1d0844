//! Graph-matching helpers shared by the rules, on tract's typed graphs.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_onnx::tract_core::ops::math::Div;

/// The scalar value of a node input that is a one-element f32 constant.
pub(crate) fn const_input(model: &TypedModel, node: &TypedNode, ix: usize) -> Option<f32> {
    let fact = model.outlet_fact(*node.inputs.get(ix)?).ok()?;
    let k = fact.konst.as_ref()?;
    if k.len() != 1 || k.datum_type() != f32::datum_type() {
        return None;
    }
    k.cast_to_scalar::<f32>().ok()
}

/// `(other input, constant)` when `node` is the binary op `B` with one scalar-constant input.
pub(crate) fn bin_with_const<B: BinMiniOp>(
    model: &TypedModel,
    node: &TypedNode,
) -> Option<(OutletId, f32)> {
    let op = node.op_as::<TypedBinOp>()?;
    if !op.0.is::<B>() || node.inputs.len() != 2 {
        return None;
    }
    match (const_input(model, node, 0), const_input(model, node, 1)) {
        (None, Some(c)) => Some((node.inputs[0], c)),
        // Only for commutative ops: `c / x` is not `x / c`.
        (Some(c), None) if !op.0.is::<Div>() => Some((node.inputs[1], c)),
        _ => None,
    }
}

/// The only consumer of `node`'s single output, if it has exactly one.
pub(crate) fn sole_successor<'m>(model: &'m TypedModel, node: &TypedNode) -> Option<&'m TypedNode> {
    match &node.outputs[..] {
        [out] if out.successors.len() == 1 => Some(model.node(out.successors[0].node)),
        _ => None,
    }
}

/// Replaces each node for which `replacement` gives an op by that op, on the same inputs.
/// Returns how many.
pub(crate) fn replace_each<O: TypedOp>(
    model: &mut TypedModel,
    replacement: impl Fn(&TypedModel, &TypedNode) -> TractResult<Option<O>>,
) -> TractResult<usize> {
    let mut patches = vec![];
    for node in &model.nodes {
        if let Some(op) = replacement(model, node)? {
            patches.push(TypedModelPatch::replace_single_op(
                model,
                node,
                &node.inputs,
                op,
            )?);
        }
    }
    let replaced = patches.len();
    for patch in patches {
        patch.apply(model)?;
    }
    Ok(replaced)
}
