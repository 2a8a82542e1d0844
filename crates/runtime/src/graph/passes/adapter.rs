//! Low-rank adapters (LoRA) for an encoder's projections, merged into the weights at load.
//!
//! A projection is found by its shape in the graph, not by the exporter's tensor names:
//! `Add(MatMul(x, W), b)` with `W` an f32 initializer (after dequantisation is folded) and `b`
//! an initializer named `<stem>.bias`. Its name is `<stem>`, e.g.
//! `encoder.layer.0.attention.self.query`, whatever `W` is called in the file.
//!
//! The adapter file ([`emotions_adapter`]) names each target by a stem or a suffix of one; a
//! target matches the one projection whose stem is it or ends with `.<target>`.
//!
//! - [`merge`] (the exact mode): the merged weight is `W + (B·A)ᵀ` (ONNX's `W` is `[in, out]`).
//! - [`attach`] (integer mode): `W` stays as it is, so an int8 grid stays exact, and `A`, `B`
//!   become tensor attributes of the projection, now a marked op
//!   ([`crate::graph::ops::projection`]) that adds their term in f32.

use crate::error::{ErrorKind, RuntimeError};
use crate::graph::ops::projection::{INT8_MATMUL, INTEGER_MATMUL, LORA_A, LORA_B};
use crate::onnx::proto::{Initializers, ONNX_FLOAT, ONNX_INT8, floats, le_bytes};
use emotions_adapter::{LoraAdapter, LowRankDelta};
use std::collections::HashMap;
use tract_onnx::pb;

fn adapter_error(origin: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::new(
        origin,
        ErrorKind::Adapter(emotions_adapter::AdapterErrorKind::Malformed(
            message.into(),
        )),
    )
}

/// A `MatMul`, or a projection an earlier pass marked: an int8 one
/// ([`int8_matmuls`](super::int8_matmul::int8_matmuls)), or a dynamically quantised one.
fn is_projection(node: &pb::NodeProto) -> bool {
    node.op_type == "MatMul" || node.op_type == INT8_MATMUL || node.op_type == INTEGER_MATMUL
}

pub(crate) fn dims(t: &pb::TensorProto) -> Option<Vec<usize>> {
    t.dims.iter().map(|&d| usize::try_from(d).ok()).collect()
}

/// `(stem, initializer index of W)` for every `Add(MatMul(x, W), <stem>.bias)` of a folded
/// graph, in node order.
pub(crate) fn projections(graph: &pb::GraphProto) -> Vec<(String, usize)> {
    let init = Initializers::of(graph);
    let mut adds_of: HashMap<&str, Vec<&pb::NodeProto>> = HashMap::new();
    for node in graph.node.iter().filter(|n| n.op_type == "Add") {
        for i in &node.input {
            adds_of.entry(i.as_str()).or_default().push(node);
        }
    }
    let mut found = Vec::new();
    for mm in graph.node.iter().filter(|n| is_projection(n)) {
        let (Some(w), Some(out)) = (mm.input.get(1), mm.output.first()) else {
            continue;
        };
        let Some(w_ix) = init.index(w) else {
            continue;
        };
        // f32 weights, or an int8 projection's values (their shape is the weights').
        let int8 = mm.op_type == INT8_MATMUL && graph.initializer[w_ix].data_type == ONNX_INT8;
        if graph.initializer[w_ix].data_type != ONNX_FLOAT && !int8 {
            continue;
        }
        let stem = adds_of
            .get(out.as_str())
            .into_iter()
            .flatten()
            .find_map(|add| {
                add.input
                    .iter()
                    .filter(|i| *i != out && init.contains(i))
                    .find_map(|i| i.strip_suffix(".bias"))
            });
        if let Some(stem) = stem {
            found.push((stem.to_string(), w_ix));
        }
    }
    found
}

/// For each delta of `adapter`, the initializer index of its projection's weight.
fn matched_weights(
    graph: &pb::GraphProto,
    adapter: &LoraAdapter,
    origin: &str,
) -> Result<Vec<usize>, RuntimeError> {
    let err = |m: String| adapter_error(origin, m);
    let found = projections(graph);
    let mut weights = Vec::with_capacity(adapter.deltas.len());
    for delta in &adapter.deltas {
        let suffix = format!(".{}", delta.target);
        let matches: Vec<&(String, usize)> = found
            .iter()
            .filter(|(stem, _)| *stem == delta.target || stem.ends_with(&suffix))
            .collect();
        let &[(stem, w_ix)] = &matches[..] else {
            return Err(err(format!(
                "adapter target '{}' matches {} projections of the encoder (expected one; it has {})",
                delta.target,
                matches.len(),
                found.len()
            )));
        };
        let w = &graph.initializer[*w_ix];
        if dims(w).as_deref() != Some(&[delta.inputs, delta.outputs][..]) {
            return Err(err(format!(
                "adapter target '{}' is [{}, {}] but the encoder's {stem} weight is {:?}",
                delta.target, delta.inputs, delta.outputs, w.dims
            )));
        }
        if weights.contains(w_ix) {
            return Err(err(format!("adapter targets {stem} twice")));
        }
        weights.push(*w_ix);
    }
    Ok(weights)
}

/// Adds every delta of `adapter` to its projection's weight in a folded graph: the exact
/// mode, where the merged f32 weights are what onnxruntime would run.
pub(crate) fn merge(
    model: &mut pb::ModelProto,
    adapter: &LoraAdapter,
    origin: &str,
) -> Result<(), RuntimeError> {
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| adapter_error(origin, "the model has no graph"))?;
    for (delta, w_ix) in adapter
        .deltas
        .iter()
        .zip(matched_weights(graph, adapter, origin)?)
    {
        let w = &mut graph.initializer[w_ix];
        let mut values = floats(w)
            .ok_or_else(|| adapter_error(origin, format!("{}: weight is not f32", delta.target)))?;
        for (v, d) in values.iter_mut().zip(delta.dense_transposed()) {
            *v += d;
        }
        w.float_data.clear();
        w.raw_data = le_bytes(&values);
    }
    Ok(())
}

/// Leaves the projections' weights as they are (so an int8 grid stays exact for the integer
/// kernels) and gives each projection its delta's factors as two more inputs, marking it for
/// the integer kernels ([`INTEGER_MATMUL`], unless it is marked already); returns how many
/// projections, and how many of them it marked.
pub(crate) fn attach(
    model: &mut pb::ModelProto,
    adapter: &LoraAdapter,
    origin: &str,
) -> Result<(usize, usize), RuntimeError> {
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| adapter_error(origin, "the model has no graph"))?;
    let weights = matched_weights(graph, adapter, origin)?;
    let (mut attached, mut marked) = (0, 0);
    for (delta, w_ix) in adapter.deltas.iter().zip(weights) {
        let w = graph.initializer[w_ix].name.clone();
        for node in graph.node.iter_mut().filter(|n| is_projection(n)) {
            if node.input.get(1) != Some(&w) {
                continue;
            }
            if node.op_type == "MatMul" {
                node.op_type = INTEGER_MATMUL.into();
                node.domain.clear();
                marked += 1;
            }
            node.attribute.extend(factors(delta));
            attached += 1;
        }
    }
    Ok((attached, marked))
}

/// A delta's `A` and `B` as the marked projection's tensor attributes.
fn factors(delta: &LowRankDelta) -> [pb::AttributeProto; 2] {
    let factor = |name: &str, dims: [usize; 2], values: &[f32]| pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Tensor as i32,
        t: Some(pb::TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: ONNX_FLOAT,
            raw_data: le_bytes(values),
            ..Default::default()
        }),
        ..Default::default()
    };
    [
        factor(LORA_A, [delta.rank, delta.inputs], &delta.a),
        factor(LORA_B, [delta.outputs, delta.rank], &delta.b),
    ]
}
