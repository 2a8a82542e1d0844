//! Fuses each self-attention block into one op.
//!
//! Exported BERT graphs compute attention as a dozen ops over `[batch, heads, seq, seq]`
//! tensors: reshapes and transposes of K, two batched matmuls with their packing, the mask
//! `Add`, the softmax and an `IsNaN`/`Where` guard. On go_emotions texts (about 20 tokens)
//! those ops did about 1% of MiniLM's arithmetic but took 18% of its time, because every one of
//! them is a pass over memory sized for tiny matrices. [`FusedAttention`] does the whole block
//! per (text, head) in a few kilobytes of scratch.
//!
//! Matching is exact or nothing: every reshape and transpose between the Q/K/V projections and
//! the matmuls is replayed on a symbolic layout (which axis holds batch, position, head or
//! depth), and the fusion happens only when the two matmuls contract depth and key position as
//! attention does. Anything else is left as tract has it.

use super::pattern::{bin_with_const, const_input, sole_successor};
use crate::graph::ops::attention::FusedAttention;
use crate::graph::ops::softmax::LastAxisSoftmax;
use emotions_kernels::Isa;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::logic::Iff;
use tract_onnx::tract_core::ops::math::{Add, IsNan, Mul};

/// What one axis of a tensor derived from a `[batch, seq, heads * depth]` projection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    Batch,
    /// The query position (rows of the score matrix).
    Query,
    /// The key position (columns of the score matrix).
    Key,
    Head,
    Depth,
}

/// A tensor's axes, each a row-major group of atoms with their sizes; a unit axis is empty.
#[derive(Debug, Clone, PartialEq)]
struct Layout(Vec<Vec<(Atom, TDim)>>);

impl Layout {
    /// A projection `[batch, seq, heads * depth]`, its positions being `position`.
    fn projection(fact: &TypedFact, heads: usize, position: Atom) -> Option<Layout> {
        let [batch, seq, width] = &fact.shape.to_tvec()[..] else {
            return None;
        };
        let width = width.as_i64()? as usize;
        if heads == 0 || !width.is_multiple_of(heads) {
            return None;
        }
        Some(Layout(vec![
            vec![(Atom::Batch, batch.clone())],
            vec![(position, seq.clone())],
            vec![
                (Atom::Head, heads.to_dim()),
                (Atom::Depth, (width / heads).to_dim()),
            ],
        ]))
    }

    fn atoms(&self, axis: usize) -> Vec<Atom> {
        self.0[axis].iter().map(|a| a.0).collect()
    }

    /// The layout after `op`, or `None` when `op` would split an atom.
    fn apply(&self, op: &AxisOp) -> Option<Layout> {
        let mut axes = self.0.clone();
        match op {
            AxisOp::Add(at) if *at <= axes.len() => axes.insert(*at, vec![]),
            AxisOp::Rm(at) if axes.get(*at)?.is_empty() => {
                axes.remove(*at);
            }
            AxisOp::Move(from, to) if *from < axes.len() && *to < axes.len() => {
                let axis = axes.remove(*from);
                axes.insert(*to, axis);
            }
            AxisOp::Reshape(at, from, to) if at + from.len() <= axes.len() => {
                let size = |group: &[(Atom, TDim)]| {
                    group
                        .iter()
                        .fold(TDim::Val(1), |p, a| p * a.1.clone())
                        .simplify()
                };
                let merged: Vec<_> = axes.drain(*at..at + from.len()).collect();
                if merged
                    .iter()
                    .zip(from)
                    .any(|(g, f)| size(g) != f.clone().simplify())
                {
                    return None;
                }
                let mut atoms = merged.into_iter().flatten();
                let mut groups = vec![];
                for dim in to {
                    let dim = dim.clone().simplify();
                    let mut group = vec![];
                    while size(&group) != dim {
                        group.push(atoms.next()?);
                    }
                    groups.push(group);
                }
                if atoms.next().is_some() {
                    return None;
                }
                axes.splice(*at..*at, groups);
            }
            _ => return None,
        }
        Some(Layout(axes))
    }
}

/// Walks up from `outlet` through axis changes and scalar multiplications to the projection
/// it comes from: `(projection, its layout at outlet, product of the scalars)`.
fn trace_projection(
    model: &TypedModel,
    mut outlet: OutletId,
    heads: usize,
    position: Atom,
) -> Option<(OutletId, Layout, f32)> {
    let mut ops = vec![];
    let mut scale = 1f32;
    loop {
        let node = model.node(outlet.node);
        if let Some(op) = node.op_as::<AxisOp>() {
            ops.push(op.clone());
            outlet = node.inputs[0];
        } else if let Some((x, c)) = bin_with_const::<Mul>(model, node) {
            // Only a true scalar: a broadcast vector would scale depths differently.
            if model.outlet_fact(x).ok()?.rank() < model.outlet_fact(outlet).ok()?.rank() {
                return None;
            }
            scale *= c;
            outlet = x;
        } else {
            break;
        }
    }
    let mut layout = Layout::projection(model.outlet_fact(outlet).ok()?, heads, position)?;
    for op in ops.iter().rev() {
        layout = layout.apply(op)?;
    }
    Some((outlet, layout, scale))
}

/// The layout of a two-input EinSum's output and the atoms it sums over, or `None` when an
/// axis pairs different atoms (which attention never does).
fn einsum_layout(op: &EinSum, a: &Layout, b: &Layout) -> Option<(Layout, Vec<Atom>)> {
    let out_rank = op.axes.rank(InOut::Out(0));
    let mut out = vec![None; out_rank];
    let mut summed = vec![];
    for axis in op.axes.iter_all_axes() {
        let pos = |slot: &TVec<usize>| -> Option<Option<usize>> {
            match slot[..] {
                [] => Some(None),
                [p] => Some(Some(p)),
                _ => None,
            }
        };
        let (pa, pb, po) = (
            pos(&axis.inputs[0])?,
            pos(&axis.inputs[1])?,
            pos(&axis.outputs[0])?,
        );
        let ga = pa.map(|p| a.0[p].clone());
        let gb = pb.map(|p| b.0[p].clone());
        let group = match (ga, gb) {
            (Some(x), Some(y)) if x == y => x,
            (Some(x), None) | (None, Some(x)) => {
                // Present in one input only: summing over it is not attention unless unit.
                if po.is_none() && !x.is_empty() {
                    return None;
                }
                x
            }
            (None, None) => vec![],
            _ => return None,
        };
        match po {
            Some(p) => out[p] = Some(group),
            None => summed.extend(group.iter().map(|a| a.0)),
        }
    }
    Some((Layout(out.into_iter().collect::<Option<Vec<_>>>()?), summed))
}

/// `node` as the q·k product, or that product times a scalar of the same shape: the product's
/// node and the scale. A scale on the product (`scores / √d`, as transformers 4.x and optimum
/// export it) is a scale on q: (c·q)·k = c·(q·k) up to rounding.
fn scaled_product<'m>(model: &'m TypedModel, node: &'m TypedNode) -> Option<(&'m TypedNode, f32)> {
    if node.op_is::<EinSum>() {
        return Some((node, 1.0));
    }
    let (x, c) = bin_with_const::<Mul>(model, node)?;
    let product = model.node(x.node);
    let same_shape = model.outlet_fact(x).ok()?.shape == node.outputs[0].fact.shape;
    (product.op_is::<EinSum>() && same_shape).then_some((product, c))
}

/// Replaces every matched attention block; returns how many.
pub(crate) fn fuse_attention(model: &mut TypedModel, isa: Isa) -> TractResult<usize> {
    let mut patches = vec![];
    for node in &model.nodes {
        if node.op_is::<LastAxisSoftmax>()
            && let Some(patch) = match_block(model, node, isa)?
        {
            patches.push(patch);
        }
    }
    let fused = patches.len();
    for patch in patches {
        patch.apply(model)?;
    }
    Ok(fused)
}

fn match_block(
    model: &TypedModel,
    softmax: &TypedNode,
    isa: Isa,
) -> TractResult<Option<TypedModelPatch>> {
    let scores_fact = model.outlet_fact(softmax.inputs[0])?;
    if scores_fact.rank() != 4 || scores_fact.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let Some(heads) = scores_fact.shape[1].as_i64().map(|h| h as usize) else {
        return Ok(None);
    };
    // Scores: q·kᵀ, plus a bias or not.
    let mut scores = model.node(softmax.inputs[0].node);
    let mut bias = None;
    if scores
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.is::<Add>())
    {
        let (l, r) = (scores.inputs[0], scores.inputs[1]);
        // The product, maybe scaled, is one side; the bias the other.
        let is_product = |o: OutletId| scaled_product(model, model.node(o.node)).is_some();
        let (qk, b) = if is_product(l) { (l, r) } else { (r, l) };
        let b_fact = model.outlet_fact(b)?;
        if b_fact.datum_type != f32::datum_type()
            || b_fact.rank() != 4
            || model.outlet_fact(qk)?.shape != scores_fact.shape
            || (0..4).any(|i| !b_fact.shape[i].is_one() && b_fact.shape[i] != scores_fact.shape[i])
        {
            return Ok(None);
        }
        bias = Some(b);
        scores = model.node(qk.node);
    }
    let Some((scores, scores_scale)) = scaled_product(model, scores) else {
        return Ok(None);
    };
    let Some(qk_op) = scores.op_as::<EinSum>() else {
        return Ok(None);
    };
    if qk_op.q_params.is_some() || scores.inputs.len() != 2 {
        return Ok(None);
    }
    // Which input gives the query positions is the EinSum's business: try both.
    let mut qk = None;
    for (qi, ki) in [(0, 1), (1, 0)] {
        let (Some(q), Some(k)) = (
            trace_projection(model, scores.inputs[qi], heads, Atom::Query),
            trace_projection(model, scores.inputs[ki], heads, Atom::Key),
        ) else {
            continue;
        };
        let (a, b) = if qi == 0 { (&q.1, &k.1) } else { (&k.1, &q.1) };
        if let Some((layout, summed)) = einsum_layout(qk_op, a, b)
            && summed == [Atom::Depth]
            && (0..4).map(|i| layout.atoms(i)).collect::<Vec<_>>()
                == [
                    vec![Atom::Batch],
                    vec![Atom::Head],
                    vec![Atom::Query],
                    vec![Atom::Key],
                ]
        {
            qk = Some((q, k, layout));
        }
    }
    let Some(((q, _, q_scale), (k, _, k_scale), probs_layout)) = qk else {
        return Ok(None);
    };
    // Probabilities, maybe through `Where(IsNaN(p), 0, p)`, into the value product.
    let [out] = &softmax.outputs[..] else {
        return Ok(None);
    };
    let users: Vec<&TypedNode> = out.successors.iter().map(|s| model.node(s.node)).collect();
    let (pv, probs, nan_to_zero) = match users[..] {
        [pv] => (pv, OutletId::from(softmax.id), false),
        [a, b] => {
            let (isnan, iff) = if a.op_is::<Iff>() { (b, a) } else { (a, b) };
            if !isnan
                .op_as::<ElementWiseOp>()
                .is_some_and(|op| op.0.is::<IsNan>())
                || !iff.op_is::<Iff>()
                || iff.inputs[..] != [isnan.id.into(), iff.inputs[1], softmax.id.into()]
                || const_input(model, iff, 1) != Some(0.0)
                || sole_successor(model, isnan).map(|n| n.id) != Some(iff.id)
            {
                return Ok(None);
            }
            let Some(pv) = sole_successor(model, iff) else {
                return Ok(None);
            };
            (pv, OutletId::from(iff.id), true)
        }
        _ => return Ok(None),
    };
    if !pv.op_is::<EinSum>() || pv.inputs.len() != 2 {
        return Ok(None);
    }
    let pv_op = pv.op_as::<EinSum>().unwrap();
    if pv_op.q_params.is_some() {
        return Ok(None);
    }
    let (p_ix, v_ix) = if pv.inputs[0] == probs {
        (0, 1)
    } else {
        (1, 0)
    };
    if pv.inputs[p_ix] != probs {
        return Ok(None);
    }
    let Some((v, v_layout, v_scale)) = trace_projection(model, pv.inputs[v_ix], heads, Atom::Key)
    else {
        return Ok(None);
    };
    let (a, b) = if p_ix == 0 {
        (&probs_layout, &v_layout)
    } else {
        (&v_layout, &probs_layout)
    };
    let Some((out_layout, summed)) = einsum_layout(pv_op, a, b) else {
        return Ok(None);
    };
    let want = [Atom::Batch, Atom::Query, Atom::Head, Atom::Depth];
    if v_scale != 1.0
        || summed != [Atom::Key]
        || out_layout.0.len() != 4
        || (0..4).any(|i| out_layout.atoms(i) != [want[i]])
    {
        return Ok(None);
    }
    // Q, K and V must agree on the shapes the op reads them with.
    let (qf, kf, vf) = (
        model.outlet_fact(q)?,
        model.outlet_fact(k)?,
        model.outlet_fact(v)?,
    );
    if qf.shape != kf.shape || kf.shape != vf.shape {
        return Ok(None);
    }
    let op = FusedAttention {
        heads,
        q_scale_bits: (q_scale * scores_scale).to_bits(),
        k_scale_bits: k_scale.to_bits(),
        has_bias: bias.is_some(),
        nan_to_zero,
        isa,
    };
    let mut patch = TypedModelPatch::default();
    let mut inputs = vec![
        patch.tap_model(model, q)?,
        patch.tap_model(model, k)?,
        patch.tap_model(model, v)?,
    ];
    if let Some(b) = bias {
        inputs.push(patch.tap_model(model, b)?);
    }
    let fused_fact = op.output_facts(&[qf])?.remove(0);
    if fused_fact.shape != model.outlet_fact(pv.id.into())?.shape {
        return Ok(None);
    }
    let fused = patch.wire_node(format!("{}.fused_attention", pv.name), op, &inputs)?;
    patch.shunt_outside(model, pv.id.into(), fused[0])?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(groups: &[&[Atom]]) -> Vec<Vec<Atom>> {
        groups.iter().map(|g| g.to_vec()).collect()
    }

    #[test]
    fn layouts_follow_the_key_transposes_of_a_torch_export() {
        let scope = SymbolScope::default();
        let (b, s) = (scope.sym("batch"), scope.sym("sequence"));
        let fact = f32::fact([b.to_dim(), s.to_dim(), 384.to_dim()]);
        let start = Layout::projection(&fact, 12, Atom::Key).unwrap();
        let dims = |v: &[TDim]| v.iter().cloned().collect::<TVec<_>>();
        let bd = b.to_dim();
        // view → transpose(1, 2) → merge batch and heads → transpose → split again.
        let ops = [
            AxisOp::Reshape(2, dims(&[384.into()]), dims(&[12.into(), 32.into()])),
            AxisOp::Move(2, 1),
            AxisOp::Reshape(0, dims(&[bd.clone(), 12.into()]), dims(&[bd.clone() * 12])),
            AxisOp::Move(2, 1),
            AxisOp::Reshape(0, dims(&[bd.clone() * 12]), dims(&[bd.clone(), 12.into()])),
        ];
        let end = ops.iter().fold(start, |l, op| l.apply(op).unwrap());
        let atoms: Vec<Vec<Atom>> = (0..end.0.len()).map(|i| end.atoms(i)).collect();
        use Atom::*;
        assert_eq!(atoms, layout(&[&[Batch], &[Head], &[Depth], &[Key]]));
        // Splitting 384 as 32 × 12 would mix heads and depths: no layout.
        let start = Layout::projection(&fact, 12, Atom::Key).unwrap();
        let wrong = AxisOp::Reshape(2, dims(&[384.into()]), dims(&[32.into(), 12.into()]));
        assert!(start.apply(&wrong).is_none());
    }
}
