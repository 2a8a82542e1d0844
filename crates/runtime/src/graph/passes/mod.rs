//! Rewrites of the decoded ONNX file, before tract parses it. They mark what the ops should do
//! with op types and attributes ([`super::ops::projection`],
//! [`super::ops::layer_norm`]), never with node names. [`super::pipeline`] runs them in order.

pub(crate) mod adapter;
pub(crate) mod dynamic_quant;
pub(crate) mod fold;
pub(crate) mod int8_matmul;
pub(crate) mod integer_weights;
pub(crate) mod layer_norm;
