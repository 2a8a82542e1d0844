//! Finds each matmul by constant weights, with the bias and residual adds that follow it, and
//! replaces them by one [`PackedLinear`]; joins the adds to projections packed at parse.

use crate::graph::ops::linear::{Kernel, PackedLinear, Weights};
use crate::graph::options::Precision;
use crate::graph::rules::pattern::sole_successor;
use emotions_kernels::Isa;
use emotions_kernels::f32_rows::F32Weights;
use emotions_kernels::low_rank::LowRank;
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math::Add;

/// Replaces every f32 matmul by constant weights (and its bias add, if any); returns how many,
/// how many of those run on the 16-bit and on the 8-bit integer kernels, and how many add a
/// low-rank term.
pub(crate) fn pack_linears(
    model: &mut TypedModel,
    precision: Precision,
    isa: Isa,
) -> TractResult<(usize, usize, usize, usize)> {
    let mut patches = vec![];
    let (mut int16, mut uint8, mut sides) = (0, 0, 0);
    for node in &model.nodes {
        if let Some((patch, kernel, side)) = match_linear(model, node, precision, isa)? {
            int16 += (kernel == Kernel::Int16) as usize;
            uint8 += (kernel == Kernel::Uint8) as usize;
            sides += side as usize;
            patches.push(patch);
        }
    }
    let packed = patches.len();
    for patch in patches {
        patch.apply(model)?;
    }
    Ok((packed, int16, uint8, sides))
}

/// How many leading axes of the weights `op` contracts with the trailing axes of `x`, when
/// it is `y[..., n] = Σ x[..., k1, k2] · w[k1, k2, n]` with every axis in that order.
fn contracted_axes(op: &EinSum, x_rank: usize, w_rank: usize) -> Option<usize> {
    if w_rank < 2 || op.axes.rank(InOut::Out(0)) + w_rank - 2 != x_rank {
        return None;
    }
    let c = w_rank - 1;
    let lead = x_rank.checked_sub(c)?;
    for axis in op.axes.iter_all_axes() {
        let (xs, ws, outs) = (&axis.inputs[0], &axis.inputs[1], &axis.outputs[0]);
        let ok = match (&xs[..], &ws[..], &outs[..]) {
            // Batch-like axis of x, kept in place.
            (&[p], [], &[o]) => p < lead && o == p,
            // Contracted: the i-th trailing axis of x with the i-th leading axis of w.
            (&[p], &[q], []) => p >= lead && q < c && p - lead == q,
            // The output features.
            ([], &[q], &[o]) => q == c && o == lead,
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    Some(c)
}

/// The `Add` that is the only consumer of `node`, and the other operand it adds.
fn added_to<'m>(model: &'m TypedModel, node: &TypedNode) -> Option<(&'m TypedNode, OutletId)> {
    let add = sole_successor(model, node)?;
    if !add.op_as::<TypedBinOp>().is_some_and(|op| op.0.is::<Add>()) || add.inputs.len() != 2 {
        return None;
    }
    let other = add.inputs[if add.inputs[0] == node.id.into() {
        1
    } else {
        0
    }];
    Some((add, other))
}

fn match_linear(
    model: &TypedModel,
    node: &TypedNode,
    precision: Precision,
    isa: Isa,
) -> TractResult<Option<(TypedModelPatch, Kernel, bool)>> {
    // Packed already, at parse (see `crate::graph::ops::projection`): its adds join it here.
    if let Some(op) = node.op_as::<PackedLinear>() {
        if op.bias.is_some() || op.residual {
            return Ok(None);
        }
        let x_fact = model.outlet_fact(node.inputs[0])?;
        return absorb_adds(
            model,
            node,
            x_fact,
            op.weights.clone(),
            op.contracted,
            (op.k, op.n),
            op.low_rank.clone(),
            op.isa,
        )
        .map(Some);
    }
    let Some(op) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if op.q_params.is_some() || node.inputs.len() != 2 {
        return Ok(None);
    }
    let (x_fact, w_fact) = (
        model.outlet_fact(node.inputs[0])?,
        model.outlet_fact(node.inputs[1])?,
    );
    let Some(w) = w_fact.konst.clone() else {
        return Ok(None);
    };
    if x_fact.datum_type != f32::datum_type()
        || w.datum_type() != f32::datum_type()
        || x_fact.konst.is_some()
        || x_fact.exotic_fact().is_some()
    {
        return Ok(None);
    }
    let Some(contracted) = contracted_axes(op, x_fact.rank(), w.rank()) else {
        return Ok(None);
    };
    let n = *w.shape().last().unwrap();
    let k = w.len() / n.max(1);
    if k == 0 || n == 0 {
        return Ok(None);
    }
    let matrix = w.clone().into_tensor().into_shape(&[k, n])?;
    let integer = match precision {
        Precision::Int16 | Precision::Int8 => {
            let w = matrix.try_as_plain_ram()?;
            Weights::integer(w.as_slice::<f32>()?, k, n, false, isa)
        }
        Precision::F32 => None,
    };
    let weights = match integer {
        Some(weights) => weights,
        None => match F32Weights::pack(&matrix)? {
            Some(w) => Weights::F32(Arc::new(w)),
            None => return Ok(None),
        },
    };
    absorb_adds(model, node, x_fact, weights, contracted, (k, n), None, isa).map(Some)
}

/// The patch replacing `node` (a projection of `x_fact`, by `weights`) and the `+ bias` and
/// `+ residual` that follow it, if any, by one [`PackedLinear`]; with which kernel it runs and
/// whether it adds a low-rank term.
#[allow(clippy::too_many_arguments)]
fn absorb_adds(
    model: &TypedModel,
    node: &TypedNode,
    x_fact: &TypedFact,
    weights: Weights,
    contracted: usize,
    (k, n): (usize, usize),
    side: Option<Arc<LowRank>>,
    isa: Isa,
) -> TractResult<(TypedModelPatch, Kernel, bool)> {
    let kernel = weights.kernel();

    // A following `+ bias` over the features joins the op.
    let mut last = node;
    let mut bias = None;
    if let Some((add, other)) = added_to(model, node) {
        let fact = model.outlet_fact(other)?;
        let out_rank = x_fact.rank() - contracted + 1;
        if let Some(b) = &fact.konst
            && b.datum_type() == f32::datum_type()
            && b.len() == n
            && b.rank() <= out_rank
            && b.shape().last() == Some(&n)
        {
            bias = Some(Arc::new(b.clone().into_tensor().into_shape(&[n])?));
            last = add;
        }
    }
    // Then `+ residual`, of the output's own shape.
    let mut residual = None;
    if let Some((add, other)) = added_to(model, last) {
        let (fact, out) = (
            model.outlet_fact(other)?,
            model.outlet_fact(last.id.into())?,
        );
        if fact.datum_type == f32::datum_type() && fact.konst.is_none() && fact.shape == out.shape {
            residual = Some(other);
            last = add;
        }
    }
    let linear = PackedLinear {
        name: node.name.clone(),
        weights,
        bias,
        residual: residual.is_some(),
        low_rank: side.clone(),
        contracted,
        k,
        n,
        isa,
    };
    let mut patch = TypedModelPatch::default();
    let mut inputs = vec![patch.tap_model(model, node.inputs[0])?];
    if let Some(r) = residual {
        inputs.push(patch.tap_model(model, r)?);
    }
    let y = patch.wire_node(format!("{}.packed", node.name), linear, &inputs)?;
    patch.shunt_outside(model, last.id.into(), y[0])?;
    Ok((patch, kernel, side.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::math::add;

    /// `x[2, 5, 2, 4] · w[2, 4, 6] + bias + residual`, as a decluttered export has it.
    fn projection() -> TractResult<TypedModel> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([2, 5, 2, 4]))?;
        let r = m.add_source("r", f32::fact([2, 5, 6]))?;
        let w: Vec<f32> = (0..48)
            .map(|i| ((i * 37) % 19) as f32 / 9.0 - 1.0)
            .collect();
        let w = m.add_const("w", tensor1(&w).into_shape(&[2, 4, 6])?)?;
        let y = m.wire_node(
            "mm",
            EinSum::new("abcd,cdn->abn".parse()?, f32::datum_type()),
            &[x, w],
        )?[0];
        let bias: Vec<f32> = (0..6).map(|i| i as f32 * 0.25 - 0.5).collect();
        let bias = m.add_const("bias", tensor1(&bias).into_shape(&[1, 1, 6])?)?;
        let y = m.wire_node("biased", add(), &[y, bias])?[0];
        let y = m.wire_node("residual", add(), &[r, y])?;
        m.select_output_outlets(&y)?;
        Ok(m)
    }

    #[test]
    fn packed_projection_matches_the_graph() -> TractResult<()> {
        let model = projection()?;
        let x: Vec<f32> = (0..80)
            .map(|i| ((i * 53) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let r: Vec<f32> = (0..60)
            .map(|i| ((i * 29) % 13) as f32 / 6.0 - 1.0)
            .collect();
        let inputs = || -> TractResult<TVec<TValue>> {
            Ok(tvec![
                tensor1(&x).into_shape(&[2, 5, 2, 4])?.into_tvalue(),
                tensor1(&r).into_shape(&[2, 5, 6])?.into_tvalue(),
            ])
        };
        let want = model.clone().into_runnable()?.run(inputs()?)?;
        let mut packed = model;
        assert_eq!(
            pack_linears(&mut packed, Precision::F32, Isa::widest())?,
            (1, 0, 0, 0)
        );
        let names: Vec<_> = packed
            .clone()
            .into_decluttered()?
            .nodes
            .iter()
            .map(|n| n.op.name())
            .collect();
        assert!(
            !names.iter().any(|n| n == "EinSum" || n == "Add"),
            "{names:?}"
        );
        let got = packed.into_optimized()?.into_runnable()?.run(inputs()?)?;
        let (got, want) = (
            got[0].to_plain_array_view::<f32>()?,
            want[0].to_plain_array_view::<f32>()?,
        );
        assert_eq!(got.shape(), want.shape());
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
        Ok(())
    }

    /// The f32 kernel split over a pool gives the single-threaded result to the bit, and both
    /// the graph's within rounding.
    #[test]
    fn f32_rows_over_a_pool_are_the_rows_alone() -> TractResult<()> {
        let (m, k, n) = (150, 96, 160);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([m, k]))?;
        let r = model.add_source("r", f32::fact([m, n]))?;
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 37) % 19) as f32 / 9.0 - 1.0)
            .collect();
        let w = model.add_const("w", tensor1(&w).into_shape(&[k, n])?)?;
        let y = model.wire_node(
            "mm",
            EinSum::new("mk,kn->mn".parse()?, f32::datum_type()),
            &[x, w],
        )?[0];
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 0.5).collect();
        let bias = model.add_const("bias", tensor1(&bias).into_shape(&[1, n])?)?;
        let y = model.wire_node("biased", add(), &[y, bias])?[0];
        let y = model.wire_node("residual", add(), &[r, y])?;
        model.select_output_outlets(&y)?;
        let inputs = || -> TractResult<TVec<TValue>> {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 53) % 23) as f32 / 11.0 - 1.0)
                .collect();
            let r: Vec<f32> = (0..m * n)
                .map(|i| ((i * 29) % 13) as f32 / 6.0 - 1.0)
                .collect();
            Ok(tvec![
                tensor1(&x).into_shape(&[m, k])?.into_tvalue(),
                tensor1(&r).into_shape(&[m, n])?.into_tvalue(),
            ])
        };
        let want = model.clone().into_runnable()?.run(inputs()?)?;
        let mut packed = model;
        assert_eq!(
            pack_linears(&mut packed, Precision::F32, Isa::widest())?.0,
            1
        );
        let plan = packed.into_optimized()?.into_runnable()?;
        let alone = emotions_kernels::pool::single_threaded(|| plan.run(inputs()?))?;
        let pooled = emotions_kernels::pool::with_threads(2, || plan.run(inputs()?))?;
        let (alone, pooled, want) = (
            alone[0].to_plain_array_view::<f32>()?,
            pooled[0].to_plain_array_view::<f32>()?,
            want[0].to_plain_array_view::<f32>()?,
        );
        assert_eq!(alone.shape(), [m, n]);
        let differ = alone
            .iter()
            .zip(pooled.iter())
            .position(|(a, p)| a.to_bits() != p.to_bits());
        assert_eq!(differ, None);
        for (g, w) in alone.iter().zip(want.iter()) {
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
        }
        Ok(())
    }
}
