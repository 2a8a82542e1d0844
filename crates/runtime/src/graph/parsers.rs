//! Every op builder the encoder's ONNX parser gets beyond tract's own, in one place.

use super::ops::{flatten, layer_norm, projection};

/// Registers this crate's builders: `Flatten` over symbolic dims, and the op types the
/// ONNX-file passes write ([`layer_norm::LAYER_NORM`], [`projection::INT8_MATMUL`],
/// [`projection::INTEGER_MATMUL`]).
pub(crate) fn register(onnx: &mut tract_onnx::Onnx) {
    let ops = &mut onnx.op_register;
    ops.insert("Flatten", flatten::flatten);
    ops.insert(layer_norm::LAYER_NORM, layer_norm::parse_layer_norm);
    ops.insert(projection::INT8_MATMUL, projection::parse_int8_matmul);
    ops.insert(projection::INTEGER_MATMUL, projection::parse_integer_matmul);
}
