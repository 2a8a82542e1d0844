//! What a head's ONNX graph declares, checked against what a head must be, before tract
//! builds anything from it.

use super::HeadLayout;
use crate::error::{ErrorKind, RuntimeError, tract_err};
use emotions_labels::{LABELS, NUM_LABELS, label_id};
use std::collections::BTreeMap;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// How to read the 28 label scores out of the plan's outputs.
#[derive(Debug, Clone)]
pub(crate) enum Columns {
    /// Output `k` is label `k`'s `[N, 2]`; the positive probability is column 1.
    PerLabel,
    /// One `[N, width]` output; label `k` is column `column_of[k]`.
    Single { width: usize, column_of: Vec<usize> },
    /// One `[N, 28]` output in label order.
    Fused,
}

/// What the ONNX graph declares, checked against what a head must be.
pub(crate) struct Signature {
    pub(crate) input_name: String,
    pub(crate) input_dim: usize,
    pub(crate) layout: HeadLayout,
    /// Output tensor names to keep, in order.
    pub(crate) outputs: Vec<String>,
    pub(crate) columns: Columns,
    pub(crate) metadata: BTreeMap<String, String>,
}

/// The model card's embedding width.
pub(crate) const DEFAULT_DIM: usize = 384;

impl Signature {
    pub(crate) fn validate(
        proto: &pb::ModelProto,
        origin: &str,
        expected_dim: Option<usize>,
    ) -> Result<Signature, RuntimeError> {
        let graph = proto.graph.as_ref().ok_or_else(|| {
            RuntimeError::new(
                origin,
                ErrorKind::Decode {
                    source: "the model has no graph".into(),
                },
            )
        })?;
        let register = tract_onnx::onnx().op_register;
        if let Some(node) = graph
            .node
            .iter()
            .find(|n| !register.0.contains_key(&n.op_type))
        {
            return Err(RuntimeError::new(
                origin,
                ErrorKind::UnknownOp {
                    node: node.name.clone(),
                    op: node.op_type.clone(),
                    domain: node.domain.clone(),
                },
            ));
        }
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .collect();
        let [input] = inputs[..] else {
            return Err(RuntimeError::new(
                origin,
                ErrorKind::InputCount {
                    found: inputs.len(),
                    names: inputs.iter().map(|i| i.name.clone()).collect(),
                },
            ));
        };
        let input_dim = check_input(input, origin, expected_dim)?;
        let metadata: BTreeMap<String, String> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        let output_names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();

        let missing: Vec<&'static str> = LABELS
            .iter()
            .copied()
            .filter(|l| !output_names.iter().any(|o| o == l))
            .collect();
        if missing.is_empty() {
            for label in LABELS {
                let out = graph
                    .output
                    .iter()
                    .find(|o| o.name == label)
                    .expect("present");
                check_declared_output(out, origin, 2)?;
            }
            return Ok(Signature {
                input_name: input.name.clone(),
                input_dim,
                layout: HeadLayout::PerLabelOutputs,
                outputs: LABELS.iter().map(|l| l.to_string()).collect(),
                columns: Columns::PerLabel,
                metadata,
            });
        }
        let float_outputs: Vec<&pb::ValueInfoProto> = graph
            .output
            .iter()
            .filter(|o| declared_elem_type(o).is_none_or(|t| t == 1))
            .collect();
        if let (Some(names), [single]) = (metadata.get("labels"), &float_outputs[..]) {
            let names = parse_label_list(names).ok_or_else(|| {
                RuntimeError::new(
                    origin,
                    ErrorKind::BadLabelsMetadata {
                        found: names.clone(),
                    },
                )
            })?;
            let missing: Vec<&'static str> = LABELS
                .iter()
                .copied()
                .filter(|l| !names.iter().any(|n| n == l))
                .collect();
            if !missing.is_empty() {
                return Err(RuntimeError::new(
                    origin,
                    ErrorKind::MissingLabels {
                        missing,
                        outputs: output_names,
                    },
                ));
            }
            check_declared_output(single, origin, names.len())?;
            let mut column_of = vec![0usize; NUM_LABELS];
            for (col, name) in names.iter().enumerate() {
                if let Some(id) = label_id(name) {
                    column_of[id] = col;
                }
            }
            return Ok(Signature {
                input_name: input.name.clone(),
                input_dim,
                layout: HeadLayout::SingleOutput,
                outputs: vec![single.name.clone()],
                columns: Columns::Single {
                    width: names.len(),
                    column_of,
                },
                metadata,
            });
        }
        Err(RuntimeError::new(
            origin,
            ErrorKind::MissingLabels {
                missing,
                outputs: output_names,
            },
        ))
    }

    /// The general path: the model's own graph, restricted to the label outputs, typed for
    /// `[N, D]` with a symbolic batch.
    pub(crate) fn typed_model(
        &self,
        proto: &pb::ModelProto,
        origin: &str,
    ) -> Result<TypedModel, RuntimeError> {
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .map_err(|e| tract_err(origin, "parse", e))?;
        let batch = model.sym("N");
        model
            .set_input_fact(
                0,
                f32::fact(&[batch.to_dim(), self.input_dim.to_dim()]).into(),
            )
            .map_err(|e| tract_err(origin, "type the input of", e))?;
        model
            .select_outputs_by_name(&self.outputs)
            .map_err(|e| tract_err(origin, "select the outputs of", e))?;
        let typed = model
            .into_typed()
            .map_err(|e| tract_err(origin, "type", e))?;
        let expected_width = match self.columns {
            Columns::PerLabel => 2,
            Columns::Single { width, .. } => width,
            Columns::Fused => NUM_LABELS,
        };
        for (ix, name) in self.outputs.iter().enumerate() {
            let fact = typed
                .output_fact(ix)
                .map_err(|e| tract_err(origin, "type", e))?;
            let ok = fact.datum_type == f32::datum_type()
                && fact.rank() == 2
                && fact.shape[0] == batch.to_dim()
                && fact.shape[1] == expected_width.to_dim();
            if !ok {
                return Err(RuntimeError::new(
                    origin,
                    ErrorKind::OutputShape {
                        name: name.clone(),
                        expected: format!("f32 [N, {expected_width}]"),
                        found: format!("{fact:?}"),
                    },
                ));
            }
        }
        Ok(typed)
    }
}

fn declared_elem_type(v: &pb::ValueInfoProto) -> Option<i32> {
    match v.r#type.as_ref()?.value.as_ref()? {
        pb::type_proto::Value::TensorType(t) => Some(t.elem_type).filter(|&t| t != 0),
    }
}

/// Declared dims: `Some(n)` for a fixed dim, `None` for a symbolic one. `None` overall when the
/// file declares no shape.
fn declared_dims(v: &pb::ValueInfoProto) -> Option<Vec<Option<i64>>> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) => Some(n),
                _ => None,
            })
            .collect(),
    )
}

fn elem_type_name(t: i32) -> String {
    pb::tensor_proto::DataType::try_from(t)
        .map(|d| format!("{d:?}").to_lowercase())
        .unwrap_or_else(|_| format!("type {t}"))
}

fn check_input(
    input: &pb::ValueInfoProto,
    origin: &str,
    expected_dim: Option<usize>,
) -> Result<usize, RuntimeError> {
    if let Some(t) = declared_elem_type(input).filter(|&t| t != 1) {
        return Err(RuntimeError::new(
            origin,
            ErrorKind::InputType {
                name: input.name.clone(),
                found: elem_type_name(t),
            },
        ));
    }
    let dims = declared_dims(input);
    if let Some(dims) = &dims
        && dims.len() != 2
    {
        return Err(RuntimeError::new(
            origin,
            ErrorKind::InputRank {
                name: input.name.clone(),
                found: dims.len(),
            },
        ));
    }
    let declared = dims.as_ref().and_then(|d| d[1]);
    let width_err = |found: String, expected: usize| {
        RuntimeError::new(
            origin,
            ErrorKind::InputWidth {
                name: input.name.clone(),
                expected,
                found,
            },
        )
    };
    match (declared, expected_dim) {
        (Some(d), Some(e)) if d != e as i64 => Err(width_err(d.to_string(), e)),
        (Some(d), _) if d as u64 > crate::onnx::limits::MAX_INPUT_WIDTH as u64 => {
            Err(RuntimeError::new(
                origin,
                ErrorKind::Limit {
                    what: format!(
                        "input '{}' is {d} wide, more than the limit of {}",
                        input.name,
                        crate::onnx::limits::MAX_INPUT_WIDTH
                    ),
                },
            ))
        }
        (Some(d), _) if d > 0 => Ok(d as usize),
        (None, Some(e)) => Ok(e),
        (found, _) => Err(width_err(
            found.map_or("a symbolic width".into(), |d| d.to_string()),
            expected_dim.unwrap_or(DEFAULT_DIM),
        )),
    }
}

fn check_declared_output(
    out: &pb::ValueInfoProto,
    origin: &str,
    width: usize,
) -> Result<(), RuntimeError> {
    let elem_ok = declared_elem_type(out).is_none_or(|t| t == 1);
    let dims = declared_dims(out);
    let shape_ok = dims
        .as_ref()
        .is_none_or(|d| d.len() == 2 && d[1].is_none_or(|w| w == width as i64));
    if elem_ok && shape_ok {
        return Ok(());
    }
    Err(RuntimeError::new(
        origin,
        ErrorKind::OutputShape {
            name: out.name.clone(),
            expected: format!("float [N, {width}]"),
            found: format!(
                "{} {}",
                declared_elem_type(out).map_or("float".into(), elem_type_name),
                dims.map_or("unknown shape".into(), |d| format!(
                    "[{}]",
                    d.iter()
                        .map(|x| x.map_or("?".into(), |n| n.to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            ),
        },
    ))
}

fn parse_label_list(s: &str) -> Option<Vec<String>> {
    let s = s.trim();
    if s.starts_with('[') {
        let names: Vec<String> = serde_json::from_str(s).ok()?;
        return names.iter().all(|n| !n.is_empty()).then_some(names);
    }
    let names: Vec<String> = s.split(',').map(|n| n.trim().to_string()).collect();
    names.iter().all(|n| !n.is_empty()).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_lists_parse_both_ways() {
        assert_eq!(parse_label_list(r#"["a", "b"]"#).unwrap(), ["a", "b"]);
        assert_eq!(parse_label_list("a, b").unwrap(), ["a", "b"]);
        assert!(parse_label_list(r#"["a", 3]"#).is_none());
        assert!(parse_label_list("a,,b").is_none());
    }
}
