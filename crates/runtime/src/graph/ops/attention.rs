//! The fused attention op: checks shapes, then hands slices to the kernel
//! (`emotions_kernels::attention`). [`crate::graph::rules::attention`] finds the blocks.

use emotions_kernels::Isa;
use emotions_kernels::attention::{Scales, Shape, attend};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// `softmax(q·kᵀ + bias) · v` per head, for `q`, `k`, `v` of shape `[batch, seq, heads * depth]`
/// and an optional additive `bias` broadcastable to `[batch, heads, seq, seq]`. Output
/// `[batch, seq, heads, depth]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FusedAttention {
    pub(crate) heads: usize,
    /// `q` and `k` are multiplied by these before the product, as the graph did.
    pub(crate) q_scale_bits: u32,
    pub(crate) k_scale_bits: u32,
    pub(crate) has_bias: bool,
    /// The graph replaced NaN probabilities by 0 (`Where(IsNaN(p), 0, p)`).
    pub(crate) nan_to_zero: bool,
    pub(crate) isa: Isa,
}

impl Op for FusedAttention {
    fn name(&self) -> StaticName {
        "FusedAttention".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "heads: {}, scales: {} {}, bias: {}, NaN to 0: {}",
            self.heads,
            f32::from_bits(self.q_scale_bits),
            f32::from_bits(self.k_scale_bits),
            self.has_bias,
            self.nan_to_zero
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for FusedAttention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (q, k, v) = (&inputs[0], &inputs[1], &inputs[2]);
        let (&[batch, seq, width], &[kb, kseq, kw], &[vb, vseq, vw]) =
            (q.shape(), k.shape(), v.shape())
        else {
            bail!("FusedAttention: q, k and v must have rank 3");
        };
        ensure!(
            kb == batch && vb == batch && kw == width && vw == width && vseq == kseq,
            "FusedAttention: q {:?}, k {:?} and v {:?} disagree",
            q.shape(),
            k.shape(),
            v.shape()
        );
        ensure!(width % self.heads == 0);
        let bias = if self.has_bias {
            let b = &inputs[3];
            let want = [batch, self.heads, seq, kseq];
            ensure!(
                b.rank() == 4 && b.shape().iter().zip(want).all(|(&d, w)| d == 1 || d == w),
                "FusedAttention: bias {:?} does not broadcast to {want:?}",
                b.shape()
            );
            // Row-major strides, 0 along broadcast axes.
            let mut strides = [0usize; 4];
            let mut step = 1;
            for axis in (0..4).rev() {
                strides[axis] = if b.shape()[axis] == 1 { 0 } else { step };
                step *= b.shape()[axis];
            }
            Some((b.try_as_plain_ram()?.as_slice::<f32>()?, strides))
        } else {
            None
        };
        let shape = Shape {
            batch,
            seq,
            kseq,
            heads: self.heads,
            depth: width / self.heads,
        };
        let mut out = Tensor::zero::<f32>(&[batch, seq, self.heads, width / self.heads])?;
        {
            let mut plain = out.try_as_plain_ram_mut()?;
            attend(
                self.isa,
                &shape,
                Scales {
                    q: f32::from_bits(self.q_scale_bits),
                    k: f32::from_bits(self.k_scale_bits),
                    nan_to_zero: self.nan_to_zero,
                },
                q.try_as_plain_ram()?.as_slice::<f32>()?,
                k.try_as_plain_ram()?.as_slice::<f32>()?,
                v.try_as_plain_ram()?.as_slice::<f32>()?,
                bias,
                plain.as_slice_mut::<f32>()?,
            );
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for FusedAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let q = inputs[0];
        ensure!(q.datum_type == f32::datum_type() && q.rank() == 3);
        let depth = q.shape[2].clone() / self.heads as u64;
        Ok(tvec!(f32::fact([
            q.shape[0].clone(),
            q.shape[1].clone(),
            self.heads.to_dim(),
            depth
        ])))
    }

    as_op!();
}
