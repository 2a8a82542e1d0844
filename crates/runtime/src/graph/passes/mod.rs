//! Rewrites of the decoded ONNX file, before tract parses it. They mark what the ops should do
//! with op types and attributes ([`super::ops::projection`],
//! [`super::ops::layer_norm`]), never with node names. [`super::pipeline`] runs them in order.

pub(crate) mod adapter;
pub(crate) mod dynamic_quant;
pub(crate) mod fold;
pub(crate) mod int8_matmul;
pub(crate) mod integer_weights;
pub(crate) mod layer_norm;

/// What the passes' tests check a rewritten file by.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::graph::options::Precision;
    use crate::graph::rules::linear::pack_linears;
    use emotions_kernels::Isa;
    use tract_onnx::pb;
    use tract_onnx::prelude::*;

    /// What [`packed_output`] found.
    pub(crate) struct Packed {
        /// The first output for the fixed `x`.
        pub(crate) y: Vec<f32>,
        /// Projections packed, and how many of them on the 16-bit integer kernels.
        pub(crate) linear: usize,
        pub(crate) int16: usize,
        /// `Add`s left in the graph.
        pub(crate) adds: usize,
    }

    /// Parsed with this crate's parsers, typed for an input `x` of `[2, 3, k]`, decluttered and
    /// packed in integer mode as the encoder does, then run on a fixed `x`.
    pub(crate) fn packed_output(proto: &pb::ModelProto, k: usize) -> TractResult<Packed> {
        let mut onnx = tract_onnx::onnx();
        crate::graph::parsers::register(&mut onnx);
        let mut model = onnx
            .model_for_proto_model(proto)?
            .with_input_fact(0, f32::fact([2, 3, k]).into())?
            .into_typed()?
            .into_decluttered()?;
        let (linear, int16, _, _) = pack_linears(&mut model, Precision::Int16, Isa::widest())?;
        let adds = model
            .nodes
            .iter()
            .filter(|n| n.op.name().contains("Add"))
            .count();
        let x: Vec<f32> = (0..2 * 3 * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let out = model
            .into_runnable()?
            .run(tvec![tensor1(&x).into_shape(&[2, 3, k])?.into_tvalue()])?;
        let y = out[0]
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect();
        Ok(Packed {
            y,
            linear,
            int16,
            adds,
        })
    }
}
