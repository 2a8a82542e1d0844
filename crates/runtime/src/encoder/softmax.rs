//! Softmax over the last axis, for attention scores.
//!
//! tract 0.23's Softmax has no row kernel on x86, so each row goes through per-row reduce
//! helpers that copy it into an aligned scratch buffer. Attention rows are as short as the
//! text (about 20 scores), so that overhead made Softmax 11.6% of MiniLM's time on go_emotions
//! texts. This op does each row in place, with an `exp` the compiler can vectorise.

use super::pattern::{eval_in_place, keep_last_axis_last, replace_each};
use crate::exp::exp;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

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
            xs.chunks_exact_mut(row).for_each(softmax_row);
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

/// In place: `r[i] = exp(r[i] - max) / sum`.
fn softmax_row(r: &mut [f32]) {
    let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() || r.iter().any(|x| x.is_nan()) {
        // What IEEE arithmetic gives a plain softmax here (e.g. a row masked with -inf);
        // exported graphs test for it with IsNaN.
        r.fill(f32::NAN);
        return;
    }
    for x in r.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / r.iter().sum::<f32>();
    r.iter_mut().for_each(|x| *x *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one_and_match_f64() {
        let mut row: Vec<f32> = (0..23)
            .map(|i| ((i * 7919) % 31) as f32 * 0.7 - 9.0)
            .collect();
        row[3] = -1e9; // a masked position
        let want: Vec<f64> = {
            let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
            let e: Vec<f64> = row.iter().map(|&x| (x as f64 - max).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|x| x / s).collect()
        };
        softmax_row(&mut row);
        for (g, w) in row.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-7, "{g} vs {w}");
        }
        let mut masked = vec![f32::NEG_INFINITY; 4];
        softmax_row(&mut masked);
        assert!(masked.iter().all(|x| x.is_nan()), "{masked:?}");
    }
}
