//! An encoder file's weights, dequantised and named, for training on them
//! (`emotions-finetune`).

use super::passes::adapter::{dims, projections};
use super::passes::fold;
use crate::error::{ErrorKind, RuntimeError};
use crate::onnx::proto::floats;
use std::collections::HashMap;
use tract_onnx::pb;

/// One named f32 tensor of an encoder, as [`encoder_weights`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Every f32 weight of an encoder file, dequantised, for training on it: projections are named
/// `<stem>.weight` (`[in, out]`, as the graph multiplies), dequantised tables by their int8
/// tensor's name without its `_q`/`_quantized` suffix, other initializers by their own name.
pub fn encoder_weights(bytes: &[u8], origin: &str) -> Result<Vec<NamedTensor>, RuntimeError> {
    let mut proto = <pb::ModelProto as prost::Message>::decode(bytes)
        .map_err(|e| RuntimeError::new(origin, ErrorKind::Decode { source: e.into() }))?;
    crate::onnx::limits::check_model(&proto, origin, crate::onnx::limits::MAX_ENCODER_NODES)?;
    let aliases = proto
        .graph
        .as_ref()
        .map(fold::dequantised_names)
        .unwrap_or_default();
    fold::fold_proto_dequantisation(&mut proto);
    let graph = proto.graph.as_ref().ok_or_else(|| {
        RuntimeError::new(
            origin,
            ErrorKind::EncoderSignature {
                message: "the model has no graph".into(),
            },
        )
    })?;
    let projection_of: HashMap<usize, String> = projections(graph)
        .into_iter()
        .map(|(stem, ix)| (ix, format!("{stem}.weight")))
        .collect();
    let mut out = Vec::new();
    for (ix, t) in graph.initializer.iter().enumerate() {
        let (Some(data), Some(shape)) = (floats(t), dims(t)) else {
            continue;
        };
        let name = match (projection_of.get(&ix), aliases.get(&t.name)) {
            (Some(p), _) => p.clone(),
            (None, Some(q)) => q
                .strip_suffix("_quantized")
                .or_else(|| q.strip_suffix("_q"))
                .unwrap_or(q)
                .to_string(),
            (None, None) => t.name.clone(),
        };
        out.push(NamedTensor { name, shape, data });
    }
    Ok(out)
}
