//! Checks on a model file before tract builds anything from it: bounds on its size and on
//! the shapes it can ask for, finite weights, and coefficient counts that fit the input. Each
//! refusal names the limit or the tensor at fault.
//!
//! The bounds are far above what a go_emotions head or a BERT-family encoder needs, and far
//! below what makes a small hostile file take minutes, gigabytes or an abort.

use crate::error::{ErrorKind, RuntimeError};
use tract_onnx::pb;

/// Bytes in a head file: a 4096-wide hidden layer over a 4096-wide input is 64 MiB.
pub const MAX_HEAD_FILE_BYTES: u64 = 256 << 20;
/// Bytes in an encoder file: protobuf's own limit (larger models keep external data).
pub const MAX_ENCODER_FILE_BYTES: u64 = 2 << 30;
/// Bytes in a LoRA adapter file (rank 64 on every projection of a 24-layer 1024-wide encoder
/// is under 100 MiB).
pub const MAX_ADAPTER_FILE_BYTES: u64 = 256 << 20;

/// Nodes in a head graph. The model card's head has under 100; a 10,000-node chain of
/// Identity ops took 21 s and 6 GB to load.
pub const MAX_HEAD_NODES: usize = 4096;
/// Nodes in an encoder graph (a 24-layer BERT export has about 1,500).
pub const MAX_ENCODER_NODES: usize = 20_000;
/// Values in all weights together (a 1 GB f32 model).
pub const MAX_WEIGHT_VALUES: u64 = 1 << 28;
/// A head's input width (embedding widths are 384 to 4096).
pub const MAX_INPUT_WIDTH: usize = 16_384;
/// Values in a tensor whose shape a constant fixes (`Expand`, `ConstantOfShape`, `Tile`).
pub const MAX_CONSTANT_SHAPE_VALUES: u64 = 1 << 26;

fn limit(origin: &str, what: String) -> RuntimeError {
    RuntimeError::new(origin, ErrorKind::Limit { what })
}

/// Every check that reads the proto only.
pub(crate) fn check_model(
    proto: &pb::ModelProto,
    origin: &str,
    max_nodes: usize,
) -> Result<(), RuntimeError> {
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(());
    };
    if graph.node.len() > max_nodes {
        return Err(limit(
            origin,
            format!(
                "{} nodes, more than the limit of {max_nodes}",
                graph.node.len()
            ),
        ));
    }
    let mut total: u64 = 0;
    for t in &graph.initializer {
        total = total.saturating_add(element_count(t, origin)?);
        check_finite_tensor(t, origin)?;
    }
    if total > MAX_WEIGHT_VALUES {
        return Err(limit(
            origin,
            format!("{total} weight values, more than the limit of {MAX_WEIGHT_VALUES}"),
        ));
    }
    for node in &graph.node {
        for a in &node.attribute {
            // The same rule as for tensors: a lone float may be infinite, never NaN.
            let lone = a.floats.len() <= 1;
            if let Some(bad) = a
                .floats
                .iter()
                .chain([&a.f])
                .find(|x| x.is_nan() || (x.is_infinite() && !lone))
            {
                return Err(RuntimeError::new(
                    origin,
                    ErrorKind::NonFiniteWeights {
                        tensor: format!("attribute '{}' of node '{}'", a.name, node.name),
                        found: bad.to_string(),
                    },
                ));
            }
            if let Some(t) = &a.t {
                element_count(t, origin)?;
                check_finite_tensor(t, origin)?;
            }
        }
        if matches!(node.op_type.as_str(), "Expand" | "ConstantOfShape" | "Tile")
            && let Some(shape) = node
                .input
                .get(if node.op_type == "ConstantOfShape" {
                    0
                } else {
                    1
                })
                .and_then(|name| graph.initializer.iter().find(|t| &t.name == name))
        {
            let values = int64_values(shape);
            let product = values
                .iter()
                .try_fold(1u64, |p, &v| p.checked_mul(v.max(1) as u64));
            if product.is_none_or(|p| p > MAX_CONSTANT_SHAPE_VALUES) {
                return Err(limit(
                    origin,
                    format!(
                        "node '{}' ({}) asks for shape {values:?}, more than {MAX_CONSTANT_SHAPE_VALUES} values",
                        node.name, node.op_type
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Every LinearClassifier must have `intercepts × width` coefficients, where the width is
/// that of its input as tract types it: the graph input's, or what a Slice, Gather or MatMul
/// in front of it makes (onnxruntime refuses any other count; tract would reshape them, and
/// score a zero-column Slice as a constant).
///
/// `graph_input` is the graph's input and its width; `typed` is needed only when some
/// LinearClassifier reads another tensor ([`linear_classifiers_need_types`]).
pub(crate) fn check_linear_classifiers(
    graph: &pb::GraphProto,
    graph_input: (&str, usize),
    typed: Option<&tract_onnx::prelude::TypedModel>,
    origin: &str,
) -> Result<(), RuntimeError> {
    for node in graph
        .node
        .iter()
        .filter(|n| n.op_type == "LinearClassifier")
    {
        let Some(input) = node.input.first() else {
            continue;
        };
        let width = if input == graph_input.0 {
            Some(graph_input.1)
        } else {
            typed.and_then(|typed| tensor_width(typed, input))
        };
        let width = match width {
            Some(0) => {
                return Err(limit(
                    origin,
                    format!("LinearClassifier '{}' reads a zero-width input", node.name),
                ));
            }
            Some(width) => width,
            None => {
                return Err(limit(
                    origin,
                    format!(
                        "LinearClassifier '{}': the width of its input '{input}' is not known",
                        node.name
                    ),
                ));
            }
        };
        let floats = |name: &str| {
            node.attribute
                .iter()
                .find(|a| a.name == name)
                .map_or(0, |a| a.floats.len())
        };
        let (coefficients, intercepts) = (floats("coefficients"), floats("intercepts"));
        let models = intercepts.max(1);
        if coefficients != models * width {
            return Err(RuntimeError::new(
                origin,
                ErrorKind::Coefficients {
                    node: node.name.clone(),
                    found: coefficients,
                    expected: models * width,
                    width,
                    intercepts,
                },
            ));
        }
    }
    Ok(())
}

/// Whether some LinearClassifier reads a tensor other than the graph input, whose width only
/// tract's types can tell.
pub(crate) fn linear_classifiers_need_types(graph: &pb::GraphProto, graph_input: &str) -> bool {
    graph.node.iter().any(|n| {
        n.op_type == "LinearClassifier" && n.input.first().is_some_and(|i| i != graph_input)
    })
}

/// The last dimension of a tensor of the typed model, named as in the ONNX graph.
fn tensor_width(typed: &tract_onnx::prelude::TypedModel, name: &str) -> Option<usize> {
    let outlet = typed.find_outlet_label(name)?;
    let fact = typed.outlet_fact(outlet).ok()?;
    fact.shape
        .last()
        .and_then(|d| d.as_i64())
        .and_then(|v| usize::try_from(v).ok())
}

/// How many values a tensor declares, checked against its data.
fn element_count(t: &pb::TensorProto, origin: &str) -> Result<u64, RuntimeError> {
    t.dims
        .iter()
        .try_fold(1u64, |p, &d| {
            u64::try_from(d).ok().and_then(|d| p.checked_mul(d))
        })
        .ok_or_else(|| limit(origin, format!("tensor '{}' has dims {:?}", t.name, t.dims)))
}

/// NaN is rejected everywhere. An infinity is allowed only in a one-element tensor: exporters
/// fill attention masks with a scalar `-inf` (transformers 5's SDPA path), while an infinite
/// weight would only turn outputs into NaN.
fn check_finite_tensor(t: &pb::TensorProto, origin: &str) -> Result<(), RuntimeError> {
    use pb::tensor_proto::DataType;
    let scalar = t.dims.iter().product::<i64>() <= 1;
    let bad_value = |x: f64| x.is_nan() || (x.is_infinite() && !scalar);
    let bad = if t.data_type == DataType::Float as i32 {
        t.float_data
            .iter()
            .copied()
            .chain(
                t.raw_data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            )
            .find(|&x| bad_value(x.into()))
            .map(|x| x.to_string())
    } else if t.data_type == DataType::Double as i32 {
        t.double_data
            .iter()
            .copied()
            .chain(
                t.raw_data
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
            )
            .find(|&x| bad_value(x))
            .map(|x| x.to_string())
    } else {
        None
    };
    match bad {
        Some(found) => Err(RuntimeError::new(
            origin,
            ErrorKind::NonFiniteWeights {
                tensor: format!("tensor '{}'", t.name),
                found,
            },
        )),
        None => Ok(()),
    }
}

fn int64_values(t: &pb::TensorProto) -> Vec<i64> {
    if !t.int64_data.is_empty() {
        return t.int64_data.clone();
    }
    t.raw_data
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_constant(values: &[f32], dims: &[i64]) -> pb::ModelProto {
        let tensor = pb::TensorProto {
            name: "c".into(),
            dims: dims.to_vec(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: values.to_vec(),
            ..Default::default()
        };
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                initializer: vec![tensor],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// transformers 5 fills masks from a scalar `-inf`: allowed. NaN never is, nor an infinite
    /// value among many (a weight).
    #[test]
    fn only_a_lone_value_may_be_infinite() {
        let check = |p: &pb::ModelProto| check_model(p, "m.onnx", 10);
        assert!(check(&with_constant(&[f32::NEG_INFINITY], &[])).is_ok());
        assert!(check(&with_constant(&[f32::INFINITY], &[1, 1])).is_ok());
        for (values, dims) in [
            (&[f32::NAN][..], &[][..]),
            (&[0.5, f32::NEG_INFINITY], &[2]),
            (&[0.5, f32::NAN], &[2]),
        ] {
            let err = check(&with_constant(values, dims)).unwrap_err();
            assert!(
                matches!(&err.kind, ErrorKind::NonFiniteWeights { tensor, .. } if tensor == "tensor 'c'"),
                "{values:?}: {err}"
            );
        }
    }
}
