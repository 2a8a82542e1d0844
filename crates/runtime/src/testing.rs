//! ONNX builders shared by the crate's unit tests.

use crate::onnx::proto::ONNX_FLOAT;
use tract_onnx::pb;

pub(crate) fn tensor(name: &str, data_type: i32, dims: &[i64], raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        data_type,
        dims: dims.to_vec(),
        raw_data: raw,
        ..Default::default()
    }
}

pub(crate) fn f32s(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    let mut n = pb::NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    };
    if op == "Cast" {
        n.attribute.push(pb::AttributeProto {
            name: "to".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: ONNX_FLOAT as i64,
            ..Default::default()
        });
    }
    n
}

/// A graph input or output of element type `elem_type`, shape left to the caller.
pub(crate) fn typed(name: &str, elem_type: i32) -> pb::ValueInfoProto {
    use pb::type_proto::{Tensor, Value};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(Value::TensorType(Tensor {
                elem_type,
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `graph` as a model tract runs (opset 14).
pub(crate) fn runnable(graph: pb::GraphProto) -> pb::ModelProto {
    runnable_at(14, graph)
}

/// `graph` as a model of opset `opset`.
pub(crate) fn runnable_at(opset: i64, graph: pb::GraphProto) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(graph),
        ..Default::default()
    }
}
