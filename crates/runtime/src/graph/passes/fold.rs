//! Folds constant dequantisation into f32 constants once, at load.
//!
//! Int8 exports store `weight_q` (int8) and compute `Cast(weight_q) * scale` in the graph.
//! tract's own constant propagation will not fold a result four times larger than its input,
//! so as loaded it re-casts every table (30522 × 384 word embeddings included) on every run:
//! 65 ms per text on MiniLM against 13 ms folded.
//!
//! Tables read by `Gather` (the 30522 × 384 word embeddings) are not folded:
//! [`gather_then_dequantise`] gathers the int8 rows and scales first, so the table stays a
//! quarter the size in memory and at load, and only the rows a batch reads are dequantised.
//!
//! Two passes: [`fold_proto_dequantisation`] rewrites the ONNX graph before tract sees it,
//! which also spares tract's type inference from evaluating and comparing the big tables
//! (most of a 0.3 s load). [`fold_constant_dequantisation`] catches what the proto pass
//! cannot see, after typing.

use crate::onnx::proto::{self, ONNX_FLOAT, ONNX_INT8, ONNX_UINT8, le_bytes};
use std::collections::HashMap;
use tract_onnx::pb;

/// A `Mul(Cast<float>(q), s)` with `q` and `s` both initializers, the cast read by the `Mul`
/// alone and the product not a graph output: what both passes below rewrite.
pub(crate) struct Dequantisation {
    /// The `Mul` node's index, and its output.
    pub(crate) mul: usize,
    pub(crate) product: String,
    /// How many node inputs read the product.
    pub(crate) product_uses: usize,
    pub(crate) cast_output: String,
    /// Indices of `q` and `s` among the initializers.
    pub(crate) q: usize,
    pub(crate) scale: usize,
}

/// Every [`Dequantisation`] of `graph`, found with one index of casts and uses.
pub(crate) fn dequantisations(graph: &pb::GraphProto) -> Vec<Dequantisation> {
    let init_ix: HashMap<&str, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for node in &graph.node {
        for i in &node.input {
            *uses.entry(i.as_str()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *uses.entry(o.name.as_str()).or_default() += 1;
    }
    let cast_of: HashMap<&str, &pb::NodeProto> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Cast" && n.input.len() == 1 && n.output.len() == 1)
        .map(|n| (n.output[0].as_str(), n))
        .collect();
    let mut found = Vec::new();
    for (ix, mul) in graph.node.iter().enumerate() {
        if mul.op_type != "Mul"
            || mul.input.len() != 2
            || mul.output.len() != 1
            || graph.output.iter().any(|o| o.name == mul.output[0])
        {
            continue;
        }
        let (cast, scale) = match (
            cast_of.get(mul.input[0].as_str()),
            cast_of.get(mul.input[1].as_str()),
        ) {
            (Some(c), None) => (*c, &mul.input[1]),
            (None, Some(c)) => (*c, &mul.input[0]),
            _ => continue,
        };
        let to = cast.attribute.iter().find(|a| a.name == "to").map(|a| a.i);
        if to != Some(ONNX_FLOAT as i64) || uses.get(cast.output[0].as_str()) != Some(&1) {
            continue;
        }
        let (Some(&q), Some(&s)) = (
            init_ix.get(cast.input[0].as_str()),
            init_ix.get(scale.as_str()),
        ) else {
            continue;
        };
        found.push(Dequantisation {
            mul: ix,
            product: mul.output[0].clone(),
            product_uses: uses.get(mul.output[0].as_str()).copied().unwrap_or(0),
            cast_output: cast.output[0].clone(),
            q,
            scale: s,
        });
    }
    found
}

/// The int8 tensor's name for each product [`fold_proto_dequantisation`] will fold, by the
/// product's name (which the folded tensor takes).
pub(crate) fn dequantised_names(graph: &pb::GraphProto) -> HashMap<String, String> {
    dequantisations(graph)
        .into_iter()
        .map(|d| (d.product, graph.initializer[d.q].name.clone()))
        .collect()
}

/// Replaces `Mul(Cast<float>(q), s)`, with `q` an int8/uint8 initializer and `s` an f32
/// initializer broadcasting as a scalar, per row (`[R, 1]`) or per column (`[C]`, `[1, C]`),
/// by one f32 initializer. Each value is `q as f32 * s`, the graph's own f32 product. Returns
/// how many were folded.
pub(crate) fn fold_proto_dequantisation(model: &mut pb::ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    // (Mul node index, Cast output name, folded tensor)
    let folds: Vec<_> = dequantisations(graph)
        .into_iter()
        .filter_map(|d| {
            let tensor = dequantise(&graph.initializer[d.q], &graph.initializer[d.scale])?;
            Some((d.mul, d.cast_output, tensor))
        })
        .collect();
    let count = folds.len();
    let mut removed = Vec::with_capacity(count);
    for (ix, cast_out, mut tensor) in folds {
        tensor.name = graph.node[ix].output[0].clone();
        graph.initializer.push(tensor);
        removed.push((ix, cast_out));
    }
    remove_dequantisation_nodes(graph, &removed);
    count
}

/// Removes each `(Mul node index, its Cast's output)`'s `Mul` and the `Cast` feeding it.
pub(crate) fn remove_dequantisation_nodes(graph: &mut pb::GraphProto, removed: &[(usize, String)]) {
    let mut dropped = vec![false; graph.node.len()];
    for (mul, cast_output) in removed {
        dropped[*mul] = true;
        if let Some(c) = graph
            .node
            .iter()
            .position(|n| n.output.first() == Some(cast_output))
        {
            dropped[c] = true;
        }
    }
    let mut keep = dropped.iter().map(|d| !d);
    graph.node.retain(|_| keep.next().unwrap_or(true));
}

/// Rewrites `Gather(Mul(Cast<float>(q), s), ids)` (axis 0), with `q` an int8/uint8 initializer
/// and `s` a per-row (`[R, 1]`) or scalar f32 initializer, as
/// `Mul(Cast<float>(Gather(q, ids)), Gather(s, ids))`: the same products, for the gathered rows
/// only. Applies only where every use of the product is such a `Gather`. Returns how many
/// tables were rewritten.
pub(crate) fn gather_then_dequantise(model: &mut pb::ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let mut readers: HashMap<&str, Vec<&pb::NodeProto>> = HashMap::new();
    for node in &graph.node {
        for i in &node.input {
            readers.entry(i.as_str()).or_default().push(node);
        }
    }
    let mut rewrites = vec![];
    for d in dequantisations(graph) {
        let gathers_rows = |n: &&pb::NodeProto| {
            n.op_type == "Gather"
                && n.input.len() == 2
                && n.input[0] == d.product
                && n.input[1] != d.product
                && n.attribute.iter().all(|a| a.name != "axis" || a.i == 0)
        };
        let users = readers
            .get(d.product.as_str())
            .map_or(&[][..], Vec::as_slice);
        if users.is_empty() || !users.iter().all(gathers_rows) {
            continue;
        }
        let (q, s) = (&graph.initializer[d.q], &graph.initializer[d.scale]);
        // Checked first: the per-row test below reads q's first dimension.
        if !matches!(q.data_type, ONNX_INT8 | ONNX_UINT8) || q.dims.len() != 2 {
            continue;
        }
        let s_len: i64 = s.dims.iter().product();
        let per_row = s.dims.len() == 2 && s.dims[1] == 1 && s.dims[0] == q.dims[0];
        let scalar = s_len == 1 && s.dims.len() <= 1;
        if s.data_type != ONNX_FLOAT || !(per_row || scalar) {
            continue;
        }
        rewrites.push((
            d.product,
            d.cast_output,
            q.name.clone(),
            s.name.clone(),
            per_row,
        ));
    }
    let count = rewrites.len();
    for (product, cast_out, q, s, per_row) in rewrites {
        graph
            .node
            .retain(|n| n.output.first() != Some(&product) && n.output.first() != Some(&cast_out));
        let mut nodes = Vec::with_capacity(graph.node.len());
        for node in std::mem::take(&mut graph.node) {
            if node.op_type != "Gather" || node.input[0] != product {
                nodes.push(node);
                continue;
            }
            let (ids, out) = (node.input[1].clone(), node.output[0].clone());
            let part = |what: &str| format!("{out}/{what}");
            let op = |op_type: &str, inputs: Vec<String>, output: String| pb::NodeProto {
                op_type: op_type.into(),
                name: output.clone(),
                input: inputs,
                output: vec![output],
                ..Default::default()
            };
            nodes.push(op("Gather", vec![q.clone(), ids.clone()], part("q")));
            let mut cast = op("Cast", vec![part("q")], part("qf"));
            cast.attribute.push(pb::AttributeProto {
                name: "to".into(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: ONNX_FLOAT as i64,
                ..Default::default()
            });
            nodes.push(cast);
            let scale = if per_row {
                nodes.push(op("Gather", vec![s.clone(), ids], part("s")));
                part("s")
            } else {
                s.clone()
            };
            nodes.push(op("Mul", vec![part("qf"), scale], out));
        }
        graph.node = nodes;
    }
    count
}

/// `q as f32 * scale` with the broadcasts named above; `None` for anything else.
fn dequantise(q: &pb::TensorProto, scale: &pb::TensorProto) -> Option<pb::TensorProto> {
    if !proto::in_file(q) || !proto::in_file(scale) {
        return None;
    }
    let values: Vec<f32> = match q.data_type {
        ONNX_INT8 if !q.raw_data.is_empty() => q.raw_data.iter().map(|&b| b as i8 as f32).collect(),
        ONNX_UINT8 if !q.raw_data.is_empty() => q.raw_data.iter().map(|&b| b as f32).collect(),
        ONNX_INT8 | ONNX_UINT8 => q.int32_data.iter().map(|&v| v as f32).collect(),
        _ => return None,
    };
    if scale.data_type != ONNX_FLOAT {
        return None;
    }
    let scales: Vec<f32> = if scale.raw_data.is_empty() {
        scale.float_data.clone()
    } else {
        scale
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let dims: Vec<usize> = q
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()?;
    if dims.iter().product::<usize>() != values.len() {
        return None;
    }
    let (rows, cols) = match dims[..] {
        [r, c] => (r, c),
        [c] => (1, c),
        [] => (1, 1),
        _ => return None,
    };
    let sdims: Vec<i64> = scale.dims.iter().copied().skip_while(|&d| d == 1).collect();
    let per = match (scale.dims.len(), &sdims[..], scales.len()) {
        (_, [], 1) => Broadcast::Scalar,
        (2, [r, 1], n) if dims.len() == 2 && *r as usize == rows && n == rows => Broadcast::Row,
        (1 | 2, [c], n) if *c as usize == cols && n == cols => Broadcast::Column,
        _ => return None,
    };
    if scale.dims.len() > dims.len().max(1) {
        return None;
    }
    let mut out = values;
    let cols = cols.max(1);
    for (r, row) in out.chunks_mut(cols).enumerate() {
        match per {
            Broadcast::Scalar => row.iter_mut().for_each(|v| *v *= scales[0]),
            Broadcast::Row => row.iter_mut().for_each(|v| *v *= scales[r]),
            Broadcast::Column => row.iter_mut().zip(&scales).for_each(|(v, s)| *v *= s),
        }
    }
    // As raw bytes: tract copies those once into its tensor, `float_data` twice.
    Some(pb::TensorProto {
        dims: q.dims.clone(),
        data_type: ONNX_FLOAT,
        raw_data: le_bytes(&out),
        ..Default::default()
    })
}

#[derive(Clone, Copy)]
enum Broadcast {
    Scalar,
    Row,
    Column,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{f32s, node, runnable, tensor, typed};
    use tract_onnx::prelude::*;

    /// `q` is int8 `[2, 3]`; `Mul(Cast(q), scale)`, then an op that reads the product.
    fn model(scale: pb::TensorProto, extra_cast_use: bool) -> pb::ModelProto {
        let q = tensor(
            "q",
            ONNX_INT8,
            &[2, 3],
            [-128i8, -1, 0, 1, 2, 127].map(|v| v as u8).to_vec(),
        );
        let mut nodes = vec![
            node("Cast", &["q"], "qf"),
            node("Mul", &["qf", "s"], "w"),
            node("MatMul", &["x", "w"], "y"),
        ];
        if extra_cast_use {
            nodes.push(node("Relu", &["qf"], "z"));
        }
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                node: nodes,
                initializer: vec![q, scale],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn folded(m: &pb::ModelProto) -> Vec<f32> {
        let g = m.graph.as_ref().unwrap();
        let w = g.initializer.iter().find(|t| t.name == "w").unwrap();
        assert_eq!((w.data_type, &w.dims[..]), (ONNX_FLOAT, &[2i64, 3][..]));
        crate::onnx::proto::floats(w).unwrap()
    }

    #[test]
    fn row_column_and_scalar_scales_fold_to_the_graphs_own_products() {
        let q = [-128f32, -1.0, 0.0, 1.0, 2.0, 127.0];
        let cases = [
            (
                tensor("s", ONNX_FLOAT, &[2, 1], f32s(&[0.5, 0.1])),
                [0.5, 0.5, 0.5, 0.1, 0.1, 0.1],
            ),
            (
                tensor("s", ONNX_FLOAT, &[3], f32s(&[1.0, 0.3, 2.0])),
                [1.0, 0.3, 2.0, 1.0, 0.3, 2.0],
            ),
            (
                tensor("s", ONNX_FLOAT, &[1, 3], f32s(&[1.0, 0.3, 2.0])),
                [1.0, 0.3, 2.0, 1.0, 0.3, 2.0],
            ),
            (tensor("s", ONNX_FLOAT, &[], f32s(&[0.7])), [0.7; 6]),
        ];
        for (scale, per) in cases {
            let dims = scale.dims.clone();
            let mut m = model(scale, false);
            assert_eq!(fold_proto_dequantisation(&mut m), 1, "{dims:?}");
            let want: Vec<f32> = q.iter().zip(per).map(|(q, s)| q * s).collect();
            assert_eq!(folded(&m), want, "{dims:?}");
            let ops: Vec<_> = m
                .graph
                .unwrap()
                .node
                .iter()
                .map(|n| n.op_type.clone())
                .collect();
            assert_eq!(ops, ["MatMul"], "{dims:?}");
        }
    }

    #[test]
    fn shared_casts_and_other_shapes_are_left_alone() {
        let scale = || tensor("s", ONNX_FLOAT, &[2, 1], f32s(&[0.5, 0.1]));
        let mut shared = model(scale(), true);
        assert_eq!(fold_proto_dequantisation(&mut shared), 0);
        assert_eq!(shared.graph.unwrap().node.len(), 4);
        let mut odd = model(tensor("s", ONNX_FLOAT, &[2, 2], f32s(&[1.0; 4])), false);
        assert_eq!(fold_proto_dequantisation(&mut odd), 0);
        let mut wrong_len = model(tensor("s", ONNX_FLOAT, &[3], f32s(&[1.0; 2])), false);
        assert_eq!(fold_proto_dequantisation(&mut wrong_len), 0);
    }

    /// `Gather(Mul(Cast(q), s), ids)` over an int8 `[3, 2]` table, as a tract-runnable model.
    fn table_model(scale: pb::TensorProto) -> pb::ModelProto {
        let q = tensor(
            "q",
            ONNX_INT8,
            &[3, 2],
            [-127i8, 5, 0, 1, 127, -3].map(|v| v as u8).to_vec(),
        );
        runnable(pb::GraphProto {
            node: vec![
                node("Cast", &["q"], "qf"),
                node("Mul", &["qf", "s"], "w"),
                node("Gather", &["w", "ids"], "rows"),
            ],
            initializer: vec![q, scale],
            input: vec![typed("ids", 7)],
            output: vec![typed("rows", ONNX_FLOAT)],
            ..Default::default()
        })
    }

    fn run(m: &pb::ModelProto, ids: &[i64]) -> Vec<f32> {
        let model = tract_onnx::onnx()
            .model_for_proto_model(m)
            .unwrap()
            .with_input_fact(0, i64::fact([ids.len()]).into())
            .unwrap()
            .into_runnable()
            .unwrap();
        let out = model.run(tvec![tensor1(ids).into_tvalue()]).unwrap();
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn tables_are_gathered_before_they_are_dequantised_with_the_same_values() {
        let ids = [2i64, 0, 2, 1];
        for scale in [
            tensor("s", ONNX_FLOAT, &[3, 1], f32s(&[0.5, 0.1, 0.037])),
            tensor("s", ONNX_FLOAT, &[], f32s(&[0.7])),
        ] {
            let dims = scale.dims.clone();
            let original = table_model(scale);
            let want = run(&original, &ids);
            let mut rewritten = original.clone();
            assert_eq!(gather_then_dequantise(&mut rewritten), 1, "{dims:?}");
            let graph = rewritten.graph.as_ref().unwrap();
            assert!(
                graph
                    .node
                    .iter()
                    .all(|n| !(n.op_type == "Gather" && n.input[0] == "w")),
                "{dims:?}: {:?}",
                graph.node
            );
            // Nothing is folded: the table stays int8.
            assert_eq!(fold_proto_dequantisation(&mut rewritten.clone()), 0);
            let got = run(&rewritten, &ids);
            assert_eq!(got.len(), ids.len() * 2);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits()),
                "{dims:?}: {got:?} vs {want:?}"
            );
        }
        // A product read by anything but a Gather is left to the fold.
        let mut other = table_model(tensor("s", ONNX_FLOAT, &[3, 1], f32s(&[1.0; 3])));
        other
            .graph
            .as_mut()
            .unwrap()
            .node
            .push(node("Relu", &["w"], "z"));
        assert_eq!(gather_then_dequantise(&mut other), 0);
    }
}
