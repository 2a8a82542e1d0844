//! Exact GELU in one pass, on this crate's op.
//!
//! tract recognises `(0.5 * x) * (1 + erf(x * (1/√2)))`, but torch exports MiniLM's as
//! `x * ((1 + erf(x / √2)) * 0.5)`, which it leaves as five passes over the `[batch, seq,
//! 1536]` activations (about 6% of MiniLM's time on go_emotions texts). [`fuse_gelu`] turns
//! that into tract's `GeluExact`, and [`replace_gelu_exact`] every f32 `GeluExact` into
//! [`FusedGelu`]: the same arithmetic on tract-linalg's `erf` kernel, with the scaling loops
//! in `emotions_kernels::gelu`, vectorised for the CPU and spread over the pool (tract-core's are scalar loops
//! once it is size-optimised for the binary).

use super::pattern::{bin_with_const, replace_each, sole_successor};
use crate::graph::ops::gelu::FusedGelu;
use emotions_kernels::Isa;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math::{Add, Div, Erf, Mul};
use tract_onnx::tract_core::ops::nn::gelu_exact::{GeluExact, gelu_exact};

/// Replaces every f32 `GeluExact` by [`FusedGelu`]; returns how many.
pub(crate) fn replace_gelu_exact(model: &mut TypedModel, isa: Isa) -> TractResult<usize> {
    replace_each(model, |model, node| {
        let is_gelu = node
            .op_as::<ElementWiseOp>()
            .is_some_and(|op| op.0.is::<GeluExact>() && op.1.is_none());
        Ok(
            (is_gelu && model.outlet_fact(node.inputs[0])?.datum_type == f32::datum_type())
                .then_some(FusedGelu { isa }),
        )
    })
}

/// Replaces every matched chain; returns how many.
pub(crate) fn fuse_gelu(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    loop {
        let Some(patch) = model
            .eval_order()?
            .into_iter()
            .find_map(|id| match_chain(model, id).transpose())
            .transpose()?
        else {
            return Ok(fused);
        };
        patch.apply(model)?;
        fused += 1;
    }
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-6 * b.abs()
}

/// Whether `node` is `Mul` of `a` and `b`, in either order.
fn is_mul_of(node: &TypedNode, a: OutletId, b: OutletId) -> bool {
    node.op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.is::<Mul>())
        && (node.inputs[..] == [a, b] || node.inputs[..] == [b, a])
}

fn match_chain(model: &TypedModel, erf_id: usize) -> TractResult<Option<TypedModelPatch>> {
    let erf = model.node(erf_id);
    if !erf
        .op_as::<ElementWiseOp>()
        .is_some_and(|op| op.0.is::<Erf>())
    {
        return Ok(None);
    }
    if model.outlet_fact(erf.inputs[0])?.datum_type != f32::datum_type() {
        return Ok(None);
    }
    // x / √2, or x * (1/√2).
    let scale = model.node(erf.inputs[0].node);
    let x = match (
        bin_with_const::<Div>(model, scale),
        bin_with_const::<Mul>(model, scale),
    ) {
        (Some((x, c)), _) if close(c, std::f32::consts::SQRT_2) => x,
        (_, Some((x, c))) if close(c, std::f32::consts::FRAC_1_SQRT_2) => x,
        _ => return Ok(None),
    };
    // 1 + erf(...)
    let Some(add_one) = sole_successor(model, erf) else {
        return Ok(None);
    };
    if !bin_with_const::<Add>(model, add_one).is_some_and(|(_, c)| c == 1.0) {
        return Ok(None);
    }
    let Some(next) = sole_successor(model, add_one) else {
        return Ok(None);
    };
    let one_plus = add_one.id.into();
    let last = if bin_with_const::<Mul>(model, next).is_some_and(|(_, c)| c == 0.5) {
        // x * ((1 + erf) * 0.5)
        let Some(out) = sole_successor(model, next) else {
            return Ok(None);
        };
        if !is_mul_of(out, x, next.id.into()) {
            return Ok(None);
        }
        out
    } else if is_mul_of(next, x, one_plus) {
        // (x * (1 + erf)) * 0.5
        let Some(out) = sole_successor(model, next) else {
            return Ok(None);
        };
        if !bin_with_const::<Mul>(model, out).is_some_and(|(_, c)| c == 0.5) {
            return Ok(None);
        }
        out
    } else {
        return Ok(None);
    };
    let mut patch = TypedModelPatch::default();
    let tap = patch.tap_model(model, x)?;
    let gelu = patch.wire_node(format!("{}.gelu_exact", erf.name), gelu_exact(), &[tap])?;
    patch.shunt_outside(model, last.id.into(), gelu[0])?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use emotions_kernels::gelu::gelu_in_place;
    use tract_onnx::tract_core::ops::math::{add, div, erf, mul};

    /// `x * ((1 + erf(x / √2)) * 0.5)`, as torch exports it.
    fn torch_chain() -> TractResult<TypedModel> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([9]))?;
        let k = |m: &mut TypedModel, name: &str, v: f32| m.add_const(name, tensor1(&[v]));
        let sqrt2 = k(&mut m, "sqrt2", std::f32::consts::SQRT_2)?;
        let scaled = m.wire_node("scale", div(), &[x, sqrt2])?[0];
        let e = m.wire_node("erf", erf(), &[scaled])?[0];
        let one = k(&mut m, "one", 1.0)?;
        let ope = m.wire_node("add_one", add(), &[e, one])?[0];
        let half = k(&mut m, "half", 0.5)?;
        let h = m.wire_node("times_half", mul(), &[ope, half])?[0];
        let out = m.wire_node("out", mul(), &[x, h])?;
        m.select_output_outlets(&out)?;
        Ok(m)
    }

    #[test]
    fn torch_gelu_becomes_one_op_with_the_same_values() -> TractResult<()> {
        let model = torch_chain()?;
        let xs = tensor1(&[-4.0f32, -1.5, -0.5, -0.01, 0.0, 0.3, 1.0, 2.5, 6.0]);
        let want = model
            .clone()
            .into_runnable()?
            .run(tvec![xs.clone().into_tvalue()])?;
        let mut fused = model;
        assert_eq!(fuse_gelu(&mut fused)?, 1);
        let fused = fused.into_decluttered()?;
        let names: Vec<_> = fused.nodes.iter().map(|n| n.op.name()).collect();
        assert!(!names.iter().any(|n| n == "Erf"), "{names:?}");
        let got = fused.into_runnable()?.run(tvec![xs.into_tvalue()])?;
        let (got, want) = (
            got[0].to_plain_array_view::<f32>()?,
            want[0].to_plain_array_view::<f32>()?,
        );
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() <= 2e-7 * w.abs().max(1.0), "{g} vs {w}");
        }
        Ok(())
    }

    /// Bit for bit what tract's `GeluExact` gives, on every ISA, alone and over a pool, on
    /// more values than one block so that blocks and a short last chunk are covered.
    #[test]
    fn fused_gelu_is_tracts_gelu_exact_to_the_bit() -> TractResult<()> {
        let n = emotions_kernels::gelu::CHUNK * 40 + 77;
        let xs: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1009) as f32 - 504.0) * 0.013)
            .collect();
        let want = {
            let mut m = TypedModel::default();
            let x = m.add_source("x", f32::fact([n]))?;
            let y = m.wire_node("gelu", gelu_exact(), &[x])?;
            m.select_output_outlets(&y)?;
            m.into_runnable()?.run(tvec![tensor1(&xs).into_tvalue()])?
        };
        let want = want[0].to_plain_array_view::<f32>()?;
        for isa in Isa::all_available() {
            for threads in [1, 2] {
                let mut got = xs.clone();
                emotions_kernels::pool::with_threads(threads, || gelu_in_place(isa, &mut got))?;
                let differ = got
                    .iter()
                    .zip(want.iter())
                    .position(|(g, w)| g.to_bits() != w.to_bits());
                assert_eq!(differ, None, "{isa}");
            }
        }
        Ok(())
    }

    #[test]
    fn a_different_constant_is_left_alone() -> TractResult<()> {
        let mut m = torch_chain()?;
        let id = m.node_id_by_name("times_half")?;
        let half = m.node(id).inputs[1];
        m.node_mut(half.node).op = Box::new(tract_onnx::tract_core::ops::konst::Const::new(
            tensor1(&[0.4f32]).into_arc_tensor(),
        )?);
        m.refresh_output_facts()?;
        assert_eq!(fuse_gelu(&mut m)?, 0);
        Ok(())
    }
}
