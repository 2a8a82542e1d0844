//! Graph-matching helpers shared by the rewrites, on tract's typed graphs and on ONNX protos.

use std::collections::HashMap;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
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

/// Which nodes of an ONNX graph read each value, by node index. A graph output counts as a
/// reader of its own ([`ProtoReaders::GRAPH_OUTPUT`]), so a value the graph returns never has a
/// sole node reader.
pub(crate) struct ProtoReaders<'g>(HashMap<&'g str, Vec<usize>>);

impl<'g> ProtoReaders<'g> {
    /// Stands for the graph's outputs among a value's readers.
    pub(crate) const GRAPH_OUTPUT: usize = usize::MAX;

    pub(crate) fn of(graph: &'g pb::GraphProto) -> Self {
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for input in &node.input {
                readers.entry(input.as_str()).or_default().push(i);
            }
        }
        for output in &graph.output {
            readers
                .entry(output.name.as_str())
                .or_default()
                .push(Self::GRAPH_OUTPUT);
        }
        ProtoReaders(readers)
    }

    /// Every reader of `value`, once per input that reads it.
    pub(crate) fn all(&self, value: &str) -> &[usize] {
        self.0.get(value).map_or(&[], Vec::as_slice)
    }

    /// The one node that reads `value`, if exactly one node does and the graph does not
    /// return it.
    pub(crate) fn sole(&self, value: &str) -> Option<usize> {
        match self.all(value) {
            &[r] if r != Self::GRAPH_OUTPUT => Some(r),
            _ => None,
        }
    }
}
