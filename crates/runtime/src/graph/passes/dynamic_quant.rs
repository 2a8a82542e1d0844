//! Dynamically quantised projections, as onnxruntime's `quantize_dynamic` writes them (the
//! `model_quantized.onnx` of Xenova's repositories):
//!
//! ```text
//! x_q, x_scale, x_zero = DynamicQuantizeLinear(x)            u8, per tensor, at run time
//! y = Cast<float>(MatMulInteger(x_q, W_q, x_zero, W_zero)) * (x_scale * W_scale)
//! ```
//!
//! [`float_dynamic_matmuls`] rewrites each as a projection by `(W_q - W_zero) * W_scale`: the
//! file's int8 weights, exactly. In the exact mode that is a plain `MatMul`, in f32. In integer
//! mode it is [`INTEGER_MATMUL`] with [`U8_ACTIVATIONS`] set, which runs with activations
//! rounded to 8 bits per token (symmetric; the file asks for per tensor, asymmetric) where the
//! CPU has AVX-512 VNNI (`emotions_kernels::u8xi8`), on the 16-bit kernels elsewhere. The
//! conformance suite states how far each is from onnxruntime running the same file, and from
//! the f32 model.

use crate::graph::ops::projection::{INTEGER_MATMUL, U8_ACTIVATIONS};
use crate::graph::options::Precision;
use crate::onnx::proto::{Initializers, ONNX_FLOAT, ProtoReaders, floats, integers, le_bytes};
use std::collections::HashMap;
use tract_onnx::pb;

/// One value per column (`[]`, `[1]` broadcast; `[n]` per column), or `None`.
fn per_column<T: Copy>(values: Vec<T>, n: usize) -> Option<Vec<T>> {
    match values.len() {
        1 => Some(vec![values[0]; n]),
        len if len == n => Some(values),
        _ => None,
    }
}

/// Rewrites every matched `MatMulInteger` chain for `precision`; returns how many.
pub(crate) fn float_dynamic_matmuls(model: &mut pb::ModelProto, precision: Precision) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let init = Initializers::of(graph);
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let readers = ProtoReaders::of(graph);
    // (MatMulInteger index, x, new weight, output, nodes to drop)
    let mut rewrites = Vec::new();
    for (mi, m) in graph.node.iter().enumerate() {
        if m.op_type != "MatMulInteger" || !(3..=4).contains(&m.input.len()) {
            continue;
        }
        let Some(&di) = producer.get(m.input[0].as_str()) else {
            continue;
        };
        let d = &graph.node[di];
        if d.op_type != "DynamicQuantizeLinear"
            || d.output.len() != 3
            || d.output[0] != m.input[0]
            || d.output[2] != m.input[2]
        {
            continue;
        }
        let Some(w) = init.get(m.input[1].as_str()) else {
            continue;
        };
        let [k, n] = w.dims[..] else {
            continue;
        };
        let (Ok(k), Ok(n)) = (usize::try_from(k), usize::try_from(n)) else {
            continue;
        };
        let Some(q) = integers(w).filter(|q| k.checked_mul(n) == Some(q.len())) else {
            continue;
        };
        let zero = match m.input.get(3).filter(|z| !z.is_empty()) {
            None => Some(vec![0; n]),
            Some(z) => init
                .get(z.as_str())
                .and_then(integers)
                .and_then(|z| per_column(z, n)),
        };
        let Some(zero) = zero else {
            continue;
        };
        // Cast<float>, read by one Mul with the scales' product.
        let Some(ci) = readers.sole(&m.output[0]) else {
            continue;
        };
        let c = &graph.node[ci];
        let to = c.attribute.iter().find(|a| a.name == "to").map(|a| a.i);
        if c.op_type != "Cast" || to != Some(ONNX_FLOAT as i64) || c.output.len() != 1 {
            continue;
        }
        let Some(yi) = readers.sole(&c.output[0]) else {
            continue;
        };
        let y = &graph.node[yi];
        if y.op_type != "Mul" || y.input.len() != 2 || y.output.len() != 1 {
            continue;
        }
        let scales = if y.input[0] == c.output[0] {
            &y.input[1]
        } else {
            &y.input[0]
        };
        let Some(&si) = producer.get(scales.as_str()) else {
            continue;
        };
        let s = &graph.node[si];
        if s.op_type != "Mul" || s.input.len() != 2 || readers.sole(&s.output[0]) != Some(yi) {
            continue;
        }
        let w_scale = if s.input[0] == d.output[1] {
            &s.input[1]
        } else if s.input[1] == d.output[1] {
            &s.input[0]
        } else {
            continue;
        };
        let Some(w_scale) = init
            .get(w_scale.as_str())
            .and_then(floats)
            .and_then(|s| per_column(s, n))
        else {
            continue;
        };
        let mut values = vec![0f32; k * n];
        for (out, q) in values.chunks_exact_mut(n).zip(q.chunks_exact(n)) {
            for (col, (v, &q)) in out.iter_mut().zip(q).enumerate() {
                *v = (q - zero[col]) as f32 * w_scale[col];
            }
        }
        let tensor = pb::TensorProto {
            name: format!("{}.dequantised", m.input[1]),
            dims: w.dims.clone(),
            data_type: ONNX_FLOAT,
            // As raw bytes: tract copies those once into its tensor, `float_data` twice.
            raw_data: le_bytes(&values),
            ..Default::default()
        };
        rewrites.push((
            mi,
            d.input[0].clone(),
            tensor,
            y.output[0].clone(),
            [ci, yi, si],
        ));
    }
    let count = rewrites.len();
    let mut dropped = vec![false; graph.node.len()];
    for (mi, x, tensor, out, drop) in rewrites {
        let m = &mut graph.node[mi];
        m.domain.clear();
        m.attribute.clear();
        match precision {
            Precision::F32 => m.op_type = "MatMul".into(),
            Precision::Int16 | Precision::Int8 => {
                m.op_type = INTEGER_MATMUL.into();
                m.attribute.push(pb::AttributeProto {
                    name: U8_ACTIVATIONS.into(),
                    r#type: pb::attribute_proto::AttributeType::Int as i32,
                    i: 1,
                    ..Default::default()
                });
            }
        }
        m.input = vec![x, tensor.name.clone()];
        m.output = vec![out];
        graph.initializer.push(tensor);
        for i in drop {
            dropped[i] = true;
        }
    }
    let mut keep = dropped.iter().map(|d| !d);
    graph.node.retain(|_| keep.next().unwrap_or(true));
    drop_unused_quantisers(graph);
    count
}

/// Removes the `DynamicQuantizeLinear`s that no longer feed anything.
fn drop_unused_quantisers(graph: &mut pb::GraphProto) {
    let used: std::collections::HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    graph.node.retain(|n| {
        n.op_type != "DynamicQuantizeLinear" || n.output.iter().any(|o| used.contains(o))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::ONNX_INT8;

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            name: outputs[0].into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn cast_to_float(input: &str, output: &str) -> pb::NodeProto {
        let mut n = node("Cast", &[input], &[output]);
        n.attribute.push(pb::AttributeProto {
            name: "to".into(),
            i: ONNX_FLOAT as i64,
            ..Default::default()
        });
        n
    }

    /// `x → DynamicQuantizeLinear → MatMulInteger(·, W) → Cast → Mul(·, x_scale · w_scale)`,
    /// with `W` 2 × 3 int8, as `quantize_dynamic` writes it; `scale_from` feeds the scales' Mul.
    fn chain(scale_from: &str) -> pb::ModelProto {
        let w = pb::TensorProto {
            name: "w".into(),
            dims: vec![2, 3],
            data_type: ONNX_INT8,
            raw_data: [1i8, -2, 3, -127, 5, 6].iter().map(|&v| v as u8).collect(),
            ..Default::default()
        };
        let w_scale = pb::TensorProto {
            name: "w_scale".into(),
            data_type: ONNX_FLOAT,
            float_data: vec![0.5],
            ..Default::default()
        };
        let w_zero = pb::TensorProto {
            name: "w_zero".into(),
            data_type: ONNX_INT8,
            raw_data: vec![0],
            ..Default::default()
        };
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                node: vec![
                    node("DynamicQuantizeLinear", &["x"], &["xq", "xs", "xz"]),
                    node("MatMulInteger", &["xq", "w", "xz", "w_zero"], &["acc"]),
                    cast_to_float("acc", "accf"),
                    node("Mul", &[scale_from, "w_scale"], &["scales"]),
                    node("Mul", &["accf", "scales"], &["y"]),
                ],
                initializer: vec![w, w_scale, w_zero],
                output: vec![pb::ValueInfoProto {
                    name: "y".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// In the exact mode a plain `MatMul`; in integer mode the marked projection, asking for
    /// 8-bit activations in an attribute (the node keeps its name).
    #[test]
    fn the_chain_becomes_a_projection_over_the_int8_weights() {
        for (precision, op_type, u8_attribute) in [
            (Precision::F32, "MatMul", None),
            (Precision::Int16, INTEGER_MATMUL, Some(1)),
        ] {
            let mut model = chain("xs");
            let name = model.graph.as_ref().unwrap().node[1].name.clone();
            assert_eq!(float_dynamic_matmuls(&mut model, precision), 1);
            let graph = model.graph.unwrap();
            let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
            assert_eq!(ops, [op_type]);
            let matmul = &graph.node[0];
            assert_eq!(matmul.name, name);
            let attribute = matmul.attribute.iter().find(|a| a.name == U8_ACTIVATIONS);
            assert_eq!(attribute.map(|a| a.i), u8_attribute);
            assert_eq!(matmul.output, ["y"]);
            assert_eq!(matmul.input[0], "x");
            let w = graph
                .initializer
                .iter()
                .find(|t| t.name == matmul.input[1])
                .unwrap();
            assert_eq!(floats(w).unwrap(), [0.5, -1.0, 1.5, -63.5, 2.5, 3.0]);
        }
    }

    /// Scales that are not the quantiser's: not the pattern, so the graph is left as it is.
    #[test]
    fn anything_else_is_left_alone() {
        let mut model = chain("w_scale");
        let before = model.clone();
        assert_eq!(float_dynamic_matmuls(&mut model, Precision::Int16), 0);
        assert_eq!(model, before);
    }
}
