//! Int8 projections handed to the integer kernels as they are, with no f32 copy.
//!
//! An int8 export computes each projection as `MatMul(x, Mul(Cast(q), s))`. Folded to f32 like
//! the other dequantisations ([`super::fold`]), MiniLM's 36 projections are 42 MB that the fold
//! writes, tract copies and the packing reads back to find the int8 grid again: half the page
//! faults of a cold `classify --text`, and most of its copying. In integer mode
//! ([`Precision::Int16`](super::Precision::Int16)) [`int8_matmuls`] turns each such pattern into
//! one node of [`INT8_MATMUL`], reading `q` and `s`, which the parser wires straight to a
//! `PackedLinear` on the file's own int8 values and scales ([`crate::graph::ops::projection`]). The exact mode keeps the fold: it
//! multiplies the f32 products, as onnxruntime does.

use super::fold;
use crate::error::{ErrorKind, RuntimeError};
use crate::graph::calibration::Int8Calibration;
use crate::graph::ops::projection::{INT8_MATMUL, U8_OUTLIERS};
use crate::onnx::proto::{self, ONNX_FLOAT, ONNX_INT8};
use std::collections::HashMap;
use tract_onnx::pb;

/// Rewrites every `MatMul(x, Mul(Cast<float>(q), s))` whose weights the integer kernels take
/// exactly (see [`takes_exactly`]) as `EmotionsInt8MatMul(x, q, s)`, dropping the `Cast` and
/// the `Mul`. The product must be read by that `MatMul` alone. Returns how many.
pub(crate) fn int8_matmuls(model: &mut pb::ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let weights_of: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type == "MatMul" && n.input.len() == 2 && n.output.len() == 1)
        .map(|(i, n)| (n.input[1].as_str(), i))
        .collect();
    // (MatMul index, Mul index, Cast output, q's name, s's name)
    let rewrites: Vec<_> = fold::dequantisations(graph)
        .into_iter()
        .filter_map(|d| {
            let &matmul = weights_of.get(d.product.as_str())?;
            let (q, s) = (&graph.initializer[d.q], &graph.initializer[d.scale]);
            // Read once, so only as the MatMul's weights.
            (d.product_uses == 1 && takes_exactly(q, s))
                .then(|| (matmul, d.mul, d.cast_output, q.name.clone(), s.name.clone()))
        })
        .collect();
    let count = rewrites.len();
    let mut removed = Vec::with_capacity(count);
    for (matmul, mul, cast_output, q, s) in rewrites {
        let node = &mut graph.node[matmul];
        node.op_type = INT8_MATMUL.into();
        node.domain.clear();
        node.input.truncate(1);
        node.input.extend([q, s]);
        removed.push((mul, cast_output));
    }
    fold::remove_dequantisation_nodes(graph, &removed);
    count
}

/// Gives each int8 projection the calibration lists the attribute [`U8_OUTLIERS`] (its
/// outlier channels), which asks for 8-bit activations. Every listed projection must be an
/// int8 projection of this graph with the weights calibrated (shape and `Σ q`); else the
/// calibration is for another file, and is refused.
pub(crate) fn mark_u8(
    model: &mut pb::ModelProto,
    calibration: &Int8Calibration,
) -> Result<(), RuntimeError> {
    let bad = |message: String| {
        RuntimeError::new(&calibration.origin, ErrorKind::Calibration { message })
    };
    let Some(graph) = model.graph.as_mut() else {
        return Err(bad("the graph is empty".into()));
    };
    let inits: HashMap<&str, &pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut marks = Vec::new();
    for (name, want) in &calibration.projections {
        let node = graph
            .node
            .iter()
            .position(|n| &n.name == name && n.op_type == INT8_MATMUL);
        let Some(at) = node else {
            return Err(bad(format!(
                "projection {name}: the graph has no int8 projection of that name (a calibration for another model?)"
            )));
        };
        let q = inits.get(graph.node[at].input[1].as_str()).copied();
        let found = q.and_then(|q| {
            let [k, n] = q.dims[..] else { return None };
            let sum: i64 = if q.raw_data.is_empty() {
                q.int32_data.iter().map(|&v| v as i64).sum()
            } else {
                q.raw_data.iter().map(|&b| b as i8 as i64).sum()
            };
            Some((k as usize, n as usize, sum))
        });
        if found != Some((want.k, want.n, want.q_sum)) {
            return Err(bad(format!(
                "projection {name}: calibrated for [{}, {}] weights with sum {}, found {} (a calibration for another model?)",
                want.k,
                want.n,
                want.q_sum,
                found.map_or("none".to_string(), |(k, n, s)| format!(
                    "[{k}, {n}] with sum {s}"
                ))
            )));
        }
        marks.push((
            at,
            want.outliers.iter().map(|&c| c as i64).collect::<Vec<_>>(),
        ));
    }
    for (at, outliers) in marks {
        graph.node[at].attribute.push(pb::AttributeProto {
            name: U8_OUTLIERS.into(),
            r#type: pb::attribute_proto::AttributeType::Ints as i32,
            ints: outliers,
            ..Default::default()
        });
    }
    Ok(())
}

/// `q` an int8 `[k, n]` tensor in the file (no external data) with no -128 (the kernels bound
/// their sums for |q| ≤ 127), and `s` an f32 scale for the whole tensor or one per column.
fn takes_exactly(q: &pb::TensorProto, s: &pb::TensorProto) -> bool {
    let [k, n] = q.dims[..] else {
        return false;
    };
    let (Ok(k), Ok(n)) = (usize::try_from(k), usize::try_from(n)) else {
        return false;
    };
    if q.data_type != ONNX_INT8
        || s.data_type != ONNX_FLOAT
        || !proto::in_file(q)
        || !proto::in_file(s)
    {
        return false;
    }
    let values_ok = if q.raw_data.is_empty() {
        q.int32_data.len() == k * n && q.int32_data.iter().all(|&v| (-127..=127).contains(&v))
    } else {
        q.raw_data.len() == k * n && !q.raw_data.contains(&0x80)
    };
    let scales = if s.raw_data.is_empty() {
        s.float_data.len()
    } else {
        s.raw_data.len() / 4
    };
    let shape_ok = match s.dims[..] {
        [] | [1] | [1, 1] => scales == 1,
        [c] | [1, c] => c as usize == n && scales == n,
        _ => false,
    };
    values_ok && shape_ok && k > 0 && n > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{f32s, node, runnable, tensor, typed};
    use tract_onnx::prelude::*;

    const K: usize = 8;
    const N: usize = 6;

    /// `y = x[2, 3, K] · (Cast(q) · s) + bias`, `q` int8 `[K, N]`; with `shared`, the product
    /// is also a second output.
    fn projection(q: &[i8], scale: pb::TensorProto, shared: bool) -> pb::ModelProto {
        let bias: Vec<f32> = (0..N).map(|j| j as f32 * 0.25 - 0.5).collect();
        let mut nodes = vec![
            node("Cast", &["q"], "qf"),
            node("Mul", &["qf", "s"], "w"),
            node("MatMul", &["x", "w"], "xw"),
            node("Add", &["xw", "b"], "y"),
        ];
        let mut output = vec![typed("y", ONNX_FLOAT)];
        if shared {
            nodes.push(node("Relu", &["w"], "w_relu"));
            output.push(typed("w_relu", ONNX_FLOAT));
        }
        runnable(pb::GraphProto {
            node: nodes,
            initializer: vec![
                tensor(
                    "q",
                    ONNX_INT8,
                    &[K as i64, N as i64],
                    q.iter().map(|&v| v as u8).collect(),
                ),
                scale,
                tensor("b", ONNX_FLOAT, &[N as i64], f32s(&bias)),
            ],
            input: vec![typed("x", ONNX_FLOAT)],
            output,
            ..Default::default()
        })
    }

    /// Every column reaches ±127, as in a per-channel export, so that the fold's path finds
    /// the same grid again from the f32 products.
    fn weights() -> Vec<i8> {
        (0..K * N)
            .map(|i| match i {
                i if i < N => [127, -127][i % 2],
                i => ((i * 37 % 255) as i32 - 127) as i8,
            })
            .collect()
    }

    /// The output for a fixed `x` as the encoder runs the file, and how many `Add`s are left
    /// in the graph; the file has one projection, on the 16-bit kernels.
    fn packed_output(proto: &pb::ModelProto) -> TractResult<(Vec<f32>, usize)> {
        let packed = super::super::test_support::packed_output(proto, K)?;
        assert_eq!((packed.linear, packed.int16), (1, 1));
        Ok((packed.y, packed.adds))
    }

    #[test]
    fn rewritten_projections_match_the_folded_ones_and_keep_their_bias() -> TractResult<()> {
        let per_column: Vec<f32> = (0..N).map(|j| 0.01 + j as f32 * 0.003).collect();
        for scale in [
            tensor("s", ONNX_FLOAT, &[N as i64], f32s(&per_column)),
            tensor("s", ONNX_FLOAT, &[1, N as i64], f32s(&per_column)),
            tensor("s", ONNX_FLOAT, &[], f32s(&[0.02])),
        ] {
            let original = projection(&weights(), scale, false);
            let mut rewritten = original.clone();
            assert_eq!(int8_matmuls(&mut rewritten), 1);
            let ops: Vec<&str> = rewritten
                .graph
                .as_ref()
                .unwrap()
                .node
                .iter()
                .map(|n| n.op_type.as_str())
                .collect();
            assert_eq!(ops, [INT8_MATMUL, "Add"]);
            let mut folded = original.clone();
            assert_eq!(fold::fold_proto_dequantisation(&mut folded), 1);
            let (want, _) = packed_output(&folded)?;
            let (got, adds) = packed_output(&rewritten)?;
            assert_eq!(adds, 0, "the bias add joins the packed projection");
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            // The same int8 values on the same kernel; the folded path finds its scales again
            // from f32 products, so they may differ in the last bit.
            assert!(
                worst <= 1e-6 * scale,
                "worst difference {worst:e} for outputs up to {scale}"
            );
        }
        Ok(())
    }

    #[test]
    fn weights_the_kernels_cannot_take_exactly_are_left_to_the_fold() {
        let scale = || tensor("s", ONNX_FLOAT, &[], f32s(&[0.02]));
        let mut with_min = weights();
        with_min[5] = i8::MIN;
        let per_row = tensor("s", ONNX_FLOAT, &[K as i64, 1], f32s(&[0.5; K]));
        for mut proto in [
            projection(&with_min, scale(), false),
            projection(&weights(), per_row, false),
            projection(&weights(), scale(), true),
        ] {
            let before = proto.clone();
            assert_eq!(int8_matmuls(&mut proto), 0);
            assert_eq!(proto, before);
        }
    }

    #[test]
    fn a_file_of_its_own_with_minus_128_is_an_error_not_a_panic() {
        let mut proto = projection(
            &weights(),
            tensor("s", ONNX_FLOAT, &[], f32s(&[0.02])),
            false,
        );
        assert_eq!(int8_matmuls(&mut proto), 1);
        let q = &mut proto.graph.as_mut().unwrap().initializer[0];
        q.raw_data[3] = 0x80;
        let err = packed_output(&proto).unwrap_err();
        assert!(format!("{err:?}").contains("-128"), "{err:?}");
    }
}
