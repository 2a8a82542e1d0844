//! The ONNX-file half of the fused layer norm ([`crate::graph::ops::layer_norm`]): every
//! `LayerNormalization`, and every chain that exports before opset 17 write instead, becomes
//! one [`LAYER_NORM`] node for its parser.

use crate::graph::ops::layer_norm::LAYER_NORM;
use crate::onnx::proto::{ProtoReaders, floats};
use std::collections::HashSet;
use tract_onnx::pb;

/// Renames every `LayerNormalization` of the default domain to [`LAYER_NORM`], and replaces
/// each decomposed chain ([`Decomposed`]) by a [`LAYER_NORM`] node. Returns how many of each.
pub(crate) fn layer_norms(model: &mut pb::ModelProto) -> (usize, usize) {
    let Some(graph) = model.graph.as_mut() else {
        return (0, 0);
    };
    let mut renamed = 0;
    for node in &mut graph.node {
        if node.op_type == "LayerNormalization" && matches!(node.domain.as_str(), "" | "ai.onnx") {
            node.op_type = LAYER_NORM.into();
            renamed += 1;
        }
    }
    (renamed, collapse_decomposed(graph))
}

/// A layer norm as torch's TorchScript exporter writes it below opset 17:
///
/// `ReduceMean(x) → Sub(x, ·) = d → Pow(d, 2) → ReduceMean → Add(·, ε) → Sqrt → Div(d, ·) →
/// Mul(·, scale) → Add(·, bias) = y`, both means over axes `[-1]`, keeping dims.
#[derive(Debug)]
struct Decomposed {
    /// The chain's nodes and its two constants' `Constant` nodes, when only the chain reads them.
    nodes: Vec<usize>,
    /// The final `Add`, which becomes the [`LAYER_NORM`] node.
    last: usize,
    x: String,
    scale: String,
    bias: String,
    epsilon: f32,
}

fn collapse_decomposed(graph: &mut pb::GraphProto) -> usize {
    // A subgraph may read any value of this graph, which `ProtoReaders` does not see.
    let has_subgraphs = graph.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    });
    if has_subgraphs {
        return 0;
    }
    let chains: Vec<Decomposed> = {
        let readers = ProtoReaders::of(graph);
        (0..graph.node.len())
            .filter_map(|i| decomposed_from(graph, &readers, i))
            .collect()
    };
    let mut removed = HashSet::new();
    for chain in &chains {
        let node = &mut graph.node[chain.last];
        node.op_type = LAYER_NORM.into();
        node.domain.clear();
        node.input = vec![chain.x.clone(), chain.scale.clone(), chain.bias.clone()];
        node.attribute = vec![pb::AttributeProto {
            name: "epsilon".into(),
            r#type: pb::attribute_proto::AttributeType::Float as i32,
            f: chain.epsilon,
            ..Default::default()
        }];
        removed.extend(chain.nodes.iter().copied().filter(|&i| i != chain.last));
    }
    let mut index = 0;
    graph.node.retain(|_| {
        index += 1;
        !removed.contains(&(index - 1))
    });
    chains.len()
}

/// The chain that starts at node `first`, if it is one whose values nothing else reads.
fn decomposed_from(
    graph: &pb::GraphProto,
    readers: &ProtoReaders,
    first: usize,
) -> Option<Decomposed> {
    let node = |i: usize| &graph.node[i];
    let out = |i: usize| node(i).output.first().map(String::as_str);
    // The one node that reads node `i`'s output, if it is an `op`.
    let sole_reader = |i: usize, op: &str| -> Option<usize> {
        readers
            .sole(out(i)?)
            .filter(|&r| node(r).op_type == op && node(r).output.len() == 1)
    };
    let last_axis_mean = |i: usize| {
        let n = node(i);
        n.op_type == "ReduceMean"
            && n.input.len() == 1
            && n.output.len() == 1
            && n.attribute.iter().all(|a| match a.name.as_str() {
                "axes" => a.ints == [-1],
                "keepdims" => a.i == 1,
                _ => false,
            })
            && n.attribute.iter().any(|a| a.name == "axes")
    };
    // The other input of a binary node that reads `value`, in either order.
    let other = |i: usize, value: &str| -> Option<String> {
        match &node(i).input[..] {
            [a, b] if a == value => Some(b.clone()),
            [a, b] if b == value => Some(a.clone()),
            _ => None,
        }
    };
    if !last_axis_mean(first) {
        return None;
    }
    let x = node(first).input[0].clone();
    let sub = sole_reader(first, "Sub")?;
    if node(sub).input[..] != [x.clone(), out(first)?.to_string()] {
        return None;
    }
    let d = out(sub)?;
    let outside = ProtoReaders::GRAPH_OUTPUT;
    let (pow, div) = match readers.all(d) {
        &[a, b] if a != outside && b != outside => match (&*node(a).op_type, &*node(b).op_type) {
            ("Pow", "Div") => (a, b),
            ("Div", "Pow") => (b, a),
            _ => return None,
        },
        _ => return None,
    };
    let two = match &node(pow).input[..] {
        [base, exponent] if base == d => exponent.clone(),
        _ => return None,
    };
    if scalar(graph, &two) != Some(2.0) {
        return None;
    }
    let variance = sole_reader(pow, "ReduceMean")?;
    if !last_axis_mean(variance) {
        return None;
    }
    let add_epsilon = sole_reader(variance, "Add")?;
    let epsilon_name = other(add_epsilon, out(variance)?)?;
    let epsilon = scalar(graph, &epsilon_name)?;
    let sqrt = sole_reader(add_epsilon, "Sqrt")?;
    if sole_reader(sqrt, "Div")? != div
        || node(div).input[..] != [d.to_string(), out(sqrt)?.to_string()]
    {
        return None;
    }
    let mul = sole_reader(div, "Mul")?;
    let scale = other(mul, out(div)?)?;
    let last = sole_reader(mul, "Add")?;
    let bias = other(last, out(mul)?)?;
    let vector = |name: &str| {
        graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .filter(|t| t.dims.len() == 1)
            .and_then(floats)
            .map(|v| v.len())
    };
    if vector(&scale).is_none() || vector(&scale) != vector(&bias) {
        return None;
    }
    let mut nodes = vec![first, sub, pow, variance, add_epsilon, sqrt, div, mul, last];
    // Their constants go too, when nothing else reads them.
    for name in [&two, &epsilon_name] {
        if let Some(c) = graph
            .node
            .iter()
            .position(|n| n.op_type == "Constant" && n.output.first() == Some(name))
            && readers.all(name).len() == 1
        {
            nodes.push(c);
        }
    }
    Some(Decomposed {
        nodes,
        last,
        x,
        scale,
        bias,
        epsilon,
    })
}

/// A one-value f32 constant, from a `Constant` node or an initializer.
fn scalar(graph: &pb::GraphProto, name: &str) -> Option<f32> {
    let tensor = graph
        .node
        .iter()
        .find(|n| n.op_type == "Constant" && n.output.first().map(String::as_str) == Some(name))
        .and_then(|n| n.attribute.iter().find(|a| a.name == "value"))
        .and_then(|a| a.t.as_ref())
        .or_else(|| graph.initializer.iter().find(|t| t.name == name))?;
    match floats(tensor)?[..] {
        [v] => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ops::layer_norm::FusedLayerNorm;
    use crate::onnx::proto::ONNX_FLOAT;
    use crate::testing::{f32s, node, runnable_at, tensor, typed};
    use tract_onnx::prelude::*;

    /// Rows of `hidden` values with an offset, so that the mean matters.
    fn rows(count: usize, hidden: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..count * hidden)
            .map(|i| ((i * 7919 % 101) as f32 * 0.37).sin() * 3.0 + 5.0)
            .collect();
        let scale = (0..hidden).map(|j| 0.5 + (j % 7) as f32 * 0.1).collect();
        let bias = (0..hidden).map(|j| (j % 5) as f32 * 0.2 - 0.4).collect();
        (x, scale, bias)
    }

    const HIDDEN: usize = 12;

    /// `y = LayerNormalization(x[2, 3, HIDDEN], scale, bias)` with `attributes`, the scale
    /// and bias of shape `normalised`, and the mean as a second output when `mean` is set.
    fn model(
        attributes: Vec<pb::AttributeProto>,
        normalised: &[i64],
        mean: bool,
    ) -> pb::ModelProto {
        let (_, scale, bias) = rows(1, normalised.iter().product::<i64>() as usize);
        let mut ln = node("LayerNormalization", &["x", "scale", "bias"], "y");
        ln.attribute = attributes;
        let mut output = vec![typed("y", ONNX_FLOAT)];
        if mean {
            ln.output.push("mean".into());
            output.push(typed("mean", ONNX_FLOAT));
        }
        runnable_at(
            17,
            pb::GraphProto {
                node: vec![ln],
                initializer: vec![
                    tensor("scale", ONNX_FLOAT, normalised, f32s(&scale)),
                    tensor("bias", ONNX_FLOAT, normalised, f32s(&bias)),
                ],
                input: vec![typed("x", ONNX_FLOAT)],
                output,
                ..Default::default()
            },
        )
    }

    fn attribute(name: &str, i: Option<i64>, f: Option<f32>) -> pb::AttributeProto {
        use pb::attribute_proto::AttributeType;
        pb::AttributeProto {
            name: name.into(),
            r#type: if f.is_some() {
                AttributeType::Float
            } else {
                AttributeType::Int
            } as i32,
            i: i.unwrap_or(0),
            f: f.unwrap_or(0.0),
            ..Default::default()
        }
    }

    /// Parsed, typed and decluttered as the encoder does (with the rename and the parser when
    /// `fuse`): the first output for a fixed `x`, and how many fused layer norms the graph has.
    fn run(proto: &pb::ModelProto, fuse: bool) -> TractResult<(Vec<f32>, usize)> {
        let mut proto = proto.clone();
        let mut onnx = tract_onnx::onnx();
        if fuse {
            layer_norms(&mut proto);
            crate::graph::parsers::register(&mut onnx);
        }
        let model = onnx
            .model_for_proto_model(&proto)?
            .with_input_fact(0, f32::fact([2, 3, HIDDEN]).into())?
            .into_typed()?
            .into_decluttered()?;
        let fused = model
            .nodes
            .iter()
            .filter(|n| n.op_is::<FusedLayerNorm>())
            .count();
        let (x, _, _) = rows(6, HIDDEN);
        // Small values, so that epsilon weighs in the variance.
        let x: Vec<f32> = x.iter().map(|v| v * 0.01).collect();
        let out = model.into_optimized()?.into_runnable()?.run(tvec![
            tensor1(&x).into_shape(&[2, 3, HIDDEN])?.into_tvalue()
        ])?;
        let y = out[0]
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect();
        Ok((y, fused))
    }

    #[test]
    fn the_fused_op_matches_tracts_expansion() -> TractResult<()> {
        for attributes in [
            vec![],
            vec![attribute("axis", Some(-1), None)],
            vec![attribute("epsilon", None, Some(0.5))],
        ] {
            let proto = model(attributes.clone(), &[HIDDEN as i64], false);
            assert_eq!(layer_norms(&mut proto.clone()), (1, 0));
            let (want, none) = run(&proto, false)?;
            let (got, fused) = run(&proto, true)?;
            assert_eq!((none, fused), (0, 1), "{attributes:?}");
            let worst = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-6, "{attributes:?}: worst {worst:e}");
        }
        Ok(())
    }

    #[test]
    fn what_the_fused_op_does_not_cover_is_tracts_expansion() -> TractResult<()> {
        for (attributes, normalised, mean) in [
            // Two axes normalised together.
            (
                vec![attribute("axis", Some(1), None)],
                [3, HIDDEN as i64],
                false,
            ),
            // The mean as an output too.
            (vec![], [1, HIDDEN as i64], true),
        ] {
            let proto = model(attributes.clone(), &normalised, mean);
            let (want, _) = run(&proto, false)?;
            let (got, fused) = run(&proto, true)?;
            assert_eq!(fused, 0, "{attributes:?}, mean {mean}");
            assert_eq!(want, got, "{attributes:?}, mean {mean}");
        }
        Ok(())
    }

    /// The opset-14 chain ([`Decomposed`]) over `x[2, 3, HIDDEN]`, with `d = x - mean` also a
    /// graph output when `d_read_outside` is set.
    fn decomposed(d_read_outside: bool) -> pb::ModelProto {
        let (_, scale, bias) = rows(1, HIDDEN);
        let mean = |input: &str, output: &str| {
            let mut n = node("ReduceMean", &[input], output);
            n.attribute.push(pb::AttributeProto {
                name: "axes".into(),
                r#type: pb::attribute_proto::AttributeType::Ints as i32,
                ints: vec![-1],
                ..Default::default()
            });
            n
        };
        let constant = |output: &str, value: f32| {
            let mut n = node("Constant", &[], output);
            n.attribute.push(pb::AttributeProto {
                name: "value".into(),
                r#type: pb::attribute_proto::AttributeType::Tensor as i32,
                t: Some(tensor("", ONNX_FLOAT, &[], f32s(&[value]))),
                ..Default::default()
            });
            n
        };
        let mut output = vec![typed("y", ONNX_FLOAT)];
        if d_read_outside {
            output.push(typed("d", ONNX_FLOAT));
        }
        runnable_at(
            14,
            pb::GraphProto {
                node: vec![
                    mean("x", "m"),
                    node("Sub", &["x", "m"], "d"),
                    constant("two", 2.0),
                    node("Pow", &["d", "two"], "dd"),
                    mean("dd", "var"),
                    constant("eps", 1e-5),
                    node("Add", &["var", "eps"], "var_eps"),
                    node("Sqrt", &["var_eps"], "std"),
                    node("Div", &["d", "std"], "n"),
                    node("Mul", &["n", "scale"], "scaled"),
                    node("Add", &["scaled", "bias"], "y"),
                ],
                initializer: vec![
                    tensor("scale", ONNX_FLOAT, &[HIDDEN as i64], f32s(&scale)),
                    tensor("bias", ONNX_FLOAT, &[HIDDEN as i64], f32s(&bias)),
                ],
                input: vec![typed("x", ONNX_FLOAT)],
                output,
                ..Default::default()
            },
        )
    }

    #[test]
    fn the_opset_14_chain_becomes_the_fused_op() -> TractResult<()> {
        let proto = decomposed(false);
        let mut collapsed = proto.clone();
        assert_eq!(layer_norms(&mut collapsed), (0, 1));
        let ops: Vec<&str> = collapsed
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type.as_str())
            .collect();
        assert_eq!(ops, [LAYER_NORM], "the chain and its constants are gone");
        let (want, none) = run(&proto, false)?;
        let (got, fused) = run(&proto, true)?;
        assert_eq!((none, fused), (0, 1));
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-6, "worst {worst:e}");
        Ok(())
    }

    #[test]
    fn a_chain_whose_values_are_read_elsewhere_is_left_as_it_is() {
        let mut read_outside = decomposed(true);
        // A graph with a subgraph, which could read any of the chain's values.
        let mut with_subgraph = decomposed(false);
        let graph = with_subgraph.graph.as_mut().unwrap();
        let mut branch = node("If", &["cond"], "branch_out");
        branch.attribute.push(pb::AttributeProto {
            name: "then_branch".into(),
            r#type: pb::attribute_proto::AttributeType::Graph as i32,
            g: Some(pb::GraphProto::default()),
            ..Default::default()
        });
        graph.node.push(branch);
        for proto in [&mut read_outside, &mut with_subgraph] {
            let before = proto.clone();
            assert_eq!(layer_norms(proto), (0, 0));
            assert_eq!(*proto, before);
        }
    }
}
