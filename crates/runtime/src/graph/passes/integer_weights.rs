//! Integer mode: each f32 projection takes its weights as an attribute, so that tract never
//! copies them.
//!
//! tract copies every initializer into a tensor of its own when it parses a file. A
//! projection's f32 weights were then packed for the integer kernels from that copy, which was
//! dropped: for bge-small's 72 projections, 84 MB written into fresh memory and read back once.
//! [`weights_as_attributes`] moves each f32 `[k, n]` initializer that one projection alone
//! reads (a `MatMul`, or an [`INTEGER_MATMUL`] an earlier pass marked) into that node's tensor
//! attribute [`WEIGHTS`], and marks the node [`INTEGER_MATMUL`]. Its parser packs them from the
//! decoded file ([`crate::graph::ops::projection`]), as the projection rule would have packed
//! tract's copy: the same kernels, the same values. The exact mode keeps tract's path.

use crate::graph::ops::projection::{INTEGER_MATMUL, WEIGHTS};
use crate::onnx::proto::{self, Initializers, ONNX_FLOAT, ProtoReaders};
use std::collections::HashSet;
use tract_onnx::pb;

/// Moves the weights of every f32 projection that [`movable`] allows into its node; returns how
/// many. A graph with subgraphs is left as it is: they may read an initializer by name.
pub(crate) fn weights_as_attributes(model: &mut pb::ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let has_subgraphs = graph
        .node
        .iter()
        .flat_map(|n| &n.attribute)
        .any(|a| a.g.is_some() || !a.graphs.is_empty());
    if has_subgraphs {
        return 0;
    }
    // (node, initializer index)
    let moves: Vec<(usize, usize)> = {
        let init = Initializers::of(graph);
        let readers = ProtoReaders::of(graph);
        let inputs: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        graph
            .node
            .iter()
            .enumerate()
            .filter_map(|(at, node)| {
                let is_projection = (node.op_type == "MatMul" && node.domain.is_empty())
                    || node.op_type == INTEGER_MATMUL;
                if !is_projection || node.input.len() != 2 || node.output.len() != 1 {
                    return None;
                }
                let (x, w) = (node.input[0].as_str(), node.input[1].as_str());
                let w_ix = init.index(w)?;
                // The weights read here alone and never fed from outside (an initializer also
                // listed as an input is a default); `x` not a constant, which tract would fold.
                let sole = readers.sole(w) == Some(at) && !inputs.contains(w);
                (sole && !init.contains(x) && movable(&graph.initializer[w_ix]))
                    .then_some((at, w_ix))
            })
            .collect()
    };
    let moved: HashSet<usize> = moves.iter().map(|&(_, w_ix)| w_ix).collect();
    let mut taken: Vec<Option<pb::TensorProto>> = std::mem::take(&mut graph.initializer)
        .into_iter()
        .map(Some)
        .collect();
    for &(at, w_ix) in &moves {
        let node = &mut graph.node[at];
        node.op_type = INTEGER_MATMUL.into();
        node.domain.clear();
        node.input.truncate(1);
        node.attribute.push(pb::AttributeProto {
            name: WEIGHTS.into(),
            r#type: pb::attribute_proto::AttributeType::Tensor as i32,
            t: taken[w_ix].take(),
            ..Default::default()
        });
    }
    graph.initializer = taken
        .into_iter()
        .enumerate()
        .filter_map(|(ix, t)| if moved.contains(&ix) { None } else { t })
        .collect();
    moves.len()
}

/// An f32 `[k, n]` tensor whose values are in the file, as many as its shape says.
fn movable(t: &pb::TensorProto) -> bool {
    let [k, n] = t.dims[..] else {
        return false;
    };
    let (Ok(k), Ok(n)) = (usize::try_from(k), usize::try_from(n)) else {
        return false;
    };
    let Some(len) = k.checked_mul(n).filter(|&len| len > 0) else {
        return false;
    };
    let values = if t.raw_data.is_empty() {
        Some(t.float_data.len())
    } else {
        let bytes = t.raw_data.len();
        bytes.is_multiple_of(4).then_some(bytes / 4)
    };
    t.data_type == ONNX_FLOAT && proto::in_file(t) && values == Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{f32s, node, runnable, tensor, typed};
    use tract_onnx::prelude::*;

    const K: usize = 8;
    const N: usize = 6;

    /// `y = x[2, 3, K] · w + b`; with `shared`, `w` is also read by a second product.
    fn projection(shared: bool) -> pb::ModelProto {
        let w: Vec<f32> = (0..K * N)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 70.0)
            .collect();
        let b: Vec<f32> = (0..N).map(|j| j as f32 * 0.25 - 0.5).collect();
        let mut nodes = vec![
            node("MatMul", &["x", "w"], "xw"),
            node("Add", &["xw", "b"], "y"),
        ];
        let mut output = vec![typed("y", ONNX_FLOAT)];
        if shared {
            nodes.push(node("MatMul", &["x", "w"], "xw2"));
            output.push(typed("xw2", ONNX_FLOAT));
        }
        runnable(pb::GraphProto {
            node: nodes,
            initializer: vec![
                tensor("w", ONNX_FLOAT, &[K as i64, N as i64], f32s(&w)),
                tensor("b", ONNX_FLOAT, &[N as i64], f32s(&b)),
            ],
            input: vec![typed("x", ONNX_FLOAT)],
            output,
            ..Default::default()
        })
    }

    /// The first output for a fixed `x` as the encoder runs the file in integer mode, and the
    /// packed projections' count.
    fn packed_output(proto: &pb::ModelProto) -> TractResult<(Vec<f32>, usize)> {
        let packed = super::super::test_support::packed_output(proto, K)?;
        assert_eq!(
            packed.linear, packed.int16,
            "every projection on the integer kernels"
        );
        Ok((packed.y, packed.linear))
    }

    #[test]
    fn moved_weights_give_the_same_outputs_bit_for_bit() -> TractResult<()> {
        let original = projection(false);
        let mut moved = original.clone();
        assert_eq!(weights_as_attributes(&mut moved), 1);
        let graph = moved.graph.as_ref().unwrap();
        let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["b"], "the weights left the initializers");
        assert_eq!(graph.node[0].op_type, INTEGER_MATMUL);
        assert_eq!(graph.node[0].input, ["x"]);
        let (want, _) = packed_output(&original)?;
        let (got, packed) = packed_output(&moved)?;
        assert_eq!(packed, 1);
        // The same values packed the same way: identical, not merely close.
        assert_eq!(want, got);
        Ok(())
    }

    #[test]
    fn shared_or_unusual_weights_stay_where_they_are() {
        let mut shared = projection(true);
        let before = shared.clone();
        assert_eq!(weights_as_attributes(&mut shared), 0);
        assert_eq!(shared, before);

        let mut short = projection(false);
        short.graph.as_mut().unwrap().initializer[0].raw_data.pop();
        let before = short.clone();
        assert_eq!(
            weights_as_attributes(&mut short),
            0,
            "a payload not of its shape"
        );
        assert_eq!(short, before);

        let mut listed = projection(false);
        listed
            .graph
            .as_mut()
            .unwrap()
            .input
            .push(typed("w", ONNX_FLOAT));
        assert_eq!(
            weights_as_attributes(&mut listed),
            0,
            "an overridable input"
        );
    }
}
