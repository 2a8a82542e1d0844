//! Writes heads as ONNX in the model card's format, with the protobuf types tract-onnx
//! itself reads (prost), never from a template.
//!
//! Graph: input `logits` f32 `[N, D]` → MatMul `[D, K]` → Add bias → Sigmoid → per label
//! Slice its column → `[1 - p, p]` by Sub and Concat → output `[N, 2]` named by the label.
//! For an MLP head, a hidden layer (MatMul, Add, Relu) comes first.

use crate::error::{ErrorKind, RuntimeError};
use prost::Message;
use std::collections::BTreeMap;
use tract_onnx::pb;

/// One dense layer: `x · weights + bias`, `weights` `[inputs, outputs]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A head to export: optional ReLU hidden layer, then a sigmoid output layer of one unit per label.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadGraph {
    pub hidden: Option<Dense>,
    pub output: Dense,
    pub labels: Vec<String>,
    /// Stored as ONNX `metadata_props`.
    pub metadata: BTreeMap<String, String>,
}

fn tensor_f32(name: &str, dims: &[usize], data: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: data,
        ..Default::default()
    }
}

fn tensor_i64(name: &str, data: Vec<i64>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![data.len() as i64],
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        int64_data: data,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Result<usize, &str>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Ok(n) => Value::DimValue(*n as i64),
                                Err(p) => Value::DimParam(p.to_string()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl HeadGraph {
    /// The serialised ONNX model, or an error when the layers' shapes disagree with each other
    /// or with `labels`.
    pub fn to_onnx_bytes(&self) -> Result<Vec<u8>, RuntimeError> {
        self.check_shapes()?;
        let dim = self
            .hidden
            .as_ref()
            .map_or(self.output.inputs, |h| h.inputs);
        let mut init = vec![];
        let mut nodes = vec![];
        let mut x = "logits".to_string();
        if let Some(h) = &self.hidden {
            init.push(tensor_f32(
                "hidden.weight",
                &[h.inputs, h.outputs],
                h.weights.clone(),
            ));
            init.push(tensor_f32("hidden.bias", &[h.outputs], h.bias.clone()));
            nodes.push(node("MatMul", &[&x, "hidden.weight"], "hidden.z0"));
            nodes.push(node("Add", &["hidden.z0", "hidden.bias"], "hidden.z"));
            nodes.push(node("Relu", &["hidden.z"], "hidden.a"));
            x = "hidden.a".into();
        }
        let o = &self.output;
        init.push(tensor_f32(
            "output.weight",
            &[o.inputs, o.outputs],
            o.weights.clone(),
        ));
        init.push(tensor_f32("output.bias", &[o.outputs], o.bias.clone()));
        init.push(tensor_f32("one", &[1], vec![1.0]));
        init.push(tensor_i64("columns_axis", vec![1]));
        nodes.push(node("MatMul", &[&x, "output.weight"], "output.z0"));
        nodes.push(node("Add", &["output.z0", "output.bias"], "output.z"));
        nodes.push(node("Sigmoid", &["output.z"], "probabilities"));
        let mut outputs = vec![];
        for (i, label) in self.labels.iter().enumerate() {
            init.push(tensor_i64(&format!("{label}.start"), vec![i as i64]));
            init.push(tensor_i64(&format!("{label}.end"), vec![i as i64 + 1]));
            let (start, end, pos, neg) = (
                format!("{label}.start"),
                format!("{label}.end"),
                format!("{label}.positive"),
                format!("{label}.negative"),
            );
            nodes.push(node(
                "Slice",
                &["probabilities", &start, &end, "columns_axis"],
                &pos,
            ));
            nodes.push(node("Sub", &["one", &pos], &neg));
            let mut concat = node("Concat", &[&neg, &pos], label);
            concat.attribute.push(pb::AttributeProto {
                name: "axis".into(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: 1,
                ..Default::default()
            });
            nodes.push(concat);
            outputs.push(value_info(label, &[Err("N"), Ok(2)]));
        }
        let graph = pb::GraphProto {
            name: "emotions_head".into(),
            node: nodes,
            initializer: init,
            input: vec![value_info("logits", &[Err("N"), Ok(dim)])],
            output: outputs,
            ..Default::default()
        };
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            producer_name: "emotions".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(graph),
            metadata_props: self
                .metadata
                .iter()
                .map(|(k, v)| pb::StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        };
        Ok(model.encode_to_vec())
    }

    fn check_shapes(&self) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::bare(ErrorKind::Export(m)));
        for (name, d) in std::iter::once(("output", &self.output))
            .chain(self.hidden.as_ref().map(|h| ("hidden", h)))
        {
            if d.weights.len() != d.inputs * d.outputs || d.bias.len() != d.outputs {
                return bad(format!(
                    "the {name} layer is {}x{} but has {} weights and {} biases",
                    d.inputs,
                    d.outputs,
                    d.weights.len(),
                    d.bias.len()
                ));
            }
        }
        if self.output.outputs != self.labels.len() {
            return bad(format!(
                "{} output units for {} labels",
                self.output.outputs,
                self.labels.len()
            ));
        }
        if let Some(h) = &self.hidden
            && h.outputs != self.output.inputs
        {
            return bad(format!(
                "the hidden layer has {} units but the output layer takes {}",
                h.outputs, self.output.inputs
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(inputs: usize, outputs: usize) -> Dense {
        Dense {
            inputs,
            outputs,
            weights: vec![0.5; inputs * outputs],
            bias: vec![0.0; outputs],
        }
    }

    #[test]
    fn mismatched_shapes_are_errors_not_panics() {
        let labels: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let ok = HeadGraph {
            hidden: Some(dense(4, 3)),
            output: dense(3, 2),
            labels: labels.clone(),
            metadata: BTreeMap::new(),
        };
        assert!(ok.to_onnx_bytes().is_ok());
        let cases = [
            (
                HeadGraph {
                    output: dense(3, 3),
                    ..ok.clone()
                },
                "3 output units for 2 labels",
            ),
            (
                HeadGraph {
                    hidden: Some(dense(4, 5)),
                    ..ok.clone()
                },
                "the hidden layer has 5 units but the output layer takes 3",
            ),
            (
                HeadGraph {
                    output: Dense {
                        bias: vec![0.0],
                        ..dense(3, 2)
                    },
                    ..ok.clone()
                },
                "the output layer is 3x2 but has 6 weights and 1 biases",
            ),
        ];
        for (graph, want) in cases {
            let err = graph.to_onnx_bytes().unwrap_err();
            assert!(err.to_string().ends_with(want), "{err}");
        }
    }
}
