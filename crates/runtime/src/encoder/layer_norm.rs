//! ONNX `LayerNormalization` over the last axis as one op.
//!
//! tract expands each layer norm into eleven generic ops (two reduces, then subtract, square,
//! add, rsqrt and three broadcast multiplies and adds), each a pass over the `[batch, seq,
//! hidden]` states with a scalar loop in tract-core: about 3% of MiniLM's time on go_emotions
//! texts, and 15% once tract-core is size-optimised for the binary. [`FusedLayerNorm`] does a
//! row in two passes with the widest vector instructions the CPU has.
//!
//! [`layer_norms`] renames the graph's `LayerNormalization` nodes to [`LAYER_NORM`], and turns
//! the chain that exports before opset 17 write instead into one such node. Its parser
//! ([`layer_norm`]) builds tract's own expansion as well and keeps it for what the fused op does
//! not cover: another axis, the optional mean and inverse-deviation outputs, another datum
//! type, or a scale or bias that is not a constant.

use super::dynamic_quant::floats;
use super::madd;
use super::pattern::{ProtoReaders, eval_in_place, keep_last_axis_last};
use crate::f32_isa::F32Isa;
use std::collections::HashSet;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{self, NodeProto};
use tract_onnx::tract_hir::internal::*;

/// The op type of the renamed layer norms, registered in the encoder's parser only.
pub(crate) const LAYER_NORM: &str = "EmotionsLayerNorm";

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

/// The op builder registered for [`LAYER_NORM`]: tract's `LayerNormalization`, wired as
/// [`FusedLayerNorm`] where that covers the node.
pub(crate) fn layer_norm(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let tract_builder = ctx
        .framework
        .op_register
        .0
        .get("LayerNormalization")
        .context("tract registers no LayerNormalization")?;
    let (tract_op, extra) = tract_builder(ctx, node)?;
    let axis: i64 = node.get_attr_opt("axis")?.unwrap_or(-1);
    let stash: DatumType = node.get_attr_opt("stash_type")?.unwrap_or(DatumType::F32);
    let epsilon: f32 = node.get_attr_opt("epsilon")?.unwrap_or(1e-5);
    let only_y = node.output.iter().skip(1).all(String::is_empty);
    let Some(expansion) = tract_op.as_op().downcast_ref::<Box<dyn Expansion>>() else {
        return Ok((tract_op, extra));
    };
    if axis != -1 || stash != DatumType::F32 || !only_y {
        return Ok((tract_op, extra));
    }
    let fused = LastAxisLayerNorm {
        epsilon,
        tract: expansion.clone(),
    };
    Ok((expand(fused), extra))
}

/// tract's expansion of one `LayerNormalization` over the last axis, wired as
/// [`FusedLayerNorm`] when the input is f32 and the scale and bias are constants of the last
/// axis' length.
#[derive(Debug, Clone)]
struct LastAxisLayerNorm {
    epsilon: f32,
    tract: Box<dyn Expansion>,
}

impl Expansion for LastAxisLayerNorm {
    fn name(&self) -> StaticName {
        "LastAxisLayerNorm".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.tract.rules(s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        match self.fused(model, inputs)? {
            Some(op) => model.wire_node(prefix, op, &inputs[..1]),
            None => self.tract.wire(prefix, model, inputs),
        }
    }
}

impl LastAxisLayerNorm {
    fn fused(
        &self,
        model: &TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<Option<FusedLayerNorm>> {
        let x = model.outlet_fact(inputs[0])?;
        let Some(hidden) = x.shape.last().and_then(|d| d.to_usize().ok()) else {
            return Ok(None);
        };
        if x.datum_type != f32::datum_type() || hidden == 0 {
            return Ok(None);
        }
        let konst = |ix: usize| -> TractResult<Option<Arc<Tensor>>> {
            let Some(&outlet) = inputs.get(ix) else {
                return Ok(None);
            };
            let fact = model.outlet_fact(outlet)?;
            Ok(fact
                .konst
                .clone()
                .filter(|t| t.datum_type() == f32::datum_type() && t.len() == hidden))
        };
        let Some(scale) = konst(1)? else {
            return Ok(None);
        };
        let bias = match inputs.len() {
            2 => Arc::new(Tensor::zero::<f32>(&[hidden])?),
            _ => match konst(2)? {
                Some(bias) => bias,
                None => return Ok(None),
            },
        };
        Ok(Some(FusedLayerNorm {
            epsilon: self.epsilon,
            scale,
            bias,
        }))
    }
}

/// `(x - mean) / sqrt(var + epsilon) * scale + bias` over the last axis of an f32 tensor, both
/// moments in f32 from two passes over the row.
#[derive(Debug, Clone)]
pub(crate) struct FusedLayerNorm {
    epsilon: f32,
    scale: Arc<Tensor>,
    bias: Arc<Tensor>,
}

impl PartialEq for FusedLayerNorm {
    fn eq(&self, other: &Self) -> bool {
        self.epsilon.to_bits() == other.epsilon.to_bits()
            && self.scale == other.scale
            && self.bias == other.bias
    }
}

impl Eq for FusedLayerNorm {}

impl Op for FusedLayerNorm {
    fn name(&self) -> StaticName {
        "FusedLayerNorm".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FusedLayerNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let scale = self.scale.try_as_plain_ram()?;
        let bias = self.bias.try_as_plain_ram()?;
        let (scale, bias) = (scale.as_slice::<f32>()?, bias.as_slice::<f32>()?);
        eval_in_place(inputs, |xs| {
            normalise_rows(F32Isa::detect(), xs, scale, bias, self.epsilon);
            Ok(())
        })
    }
}

impl TypedOp for FusedLayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        ensure!(
            x.datum_type == f32::datum_type() && x.shape.last() == Some(&self.scale.len().to_dim()),
            "FusedLayerNorm over {} values, input {x:?}",
            self.scale.len()
        );
        Ok(tvec!(f32::fact(x.shape.clone())))
    }

    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        AxesMapping::natural(inputs, outputs)
    }

    fn change_axes(
        &self,
        model: &TypedModel,
        node: &TypedNode,
        _io: InOut,
        change: &AxisOp,
    ) -> TractResult<Option<AxisChangeConsequence>> {
        // Any change that keeps the normalised axis last is fine.
        keep_last_axis_last(model, node, change)
    }

    as_op!();
}

/// Normalises each row of `x` (rows of `scale.len()` values) in place, on the instructions
/// `isa` (a test may force any the CPU runs), rows spread over the crate's thread pool when it
/// has one and there are enough of them.
pub(crate) fn normalise_rows(isa: F32Isa, x: &mut [f32], scale: &[f32], bias: &[f32], eps: f32) {
    let hidden = scale.len();
    if hidden == 0 {
        return;
    }
    // Rows per task: enough work per task to repay the handoff.
    let Ok(()) =
        crate::pool::for_each_block::<std::convert::Infallible>(x, hidden * 64, |_, rows| {
            normalise_block(isa, rows, scale, bias, eps);
            Ok(())
        });
}

fn normalise_block(isa: F32Isa, rows: &mut [f32], scale: &[f32], bias: &[f32], eps: f32) {
    match isa {
        // SAFETY: the CPU runs the ISA the function is compiled for (checked here: a test may
        // force one).
        #[cfg(target_arch = "x86_64")]
        F32Isa::Avx512 if isa.available() => unsafe { block_avx512(rows, scale, bias, eps) },
        #[cfg(target_arch = "x86_64")]
        F32Isa::Avx2Fma if isa.available() => unsafe { block_avx2(rows, scale, bias, eps) },
        _ => block_generic::<false>(rows, scale, bias, eps),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn block_avx512(rows: &mut [f32], scale: &[f32], bias: &[f32], eps: f32) {
    block_generic::<true>(rows, scale, bias, eps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(rows: &mut [f32], scale: &[f32], bias: &[f32], eps: f32) {
    block_generic::<true>(rows, scale, bias, eps)
}

/// Lanes of the partial sums: sixteen independent sums the compiler keeps in vector registers
/// (a single running sum would be a serial chain it may not reorder).
const LANES: usize = 16;

#[inline(always)]
fn block_generic<const FMA: bool>(rows: &mut [f32], scale: &[f32], bias: &[f32], eps: f32) {
    let hidden = scale.len();
    let n = hidden as f32;
    for row in rows.chunks_exact_mut(hidden) {
        let mut lanes = [0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                lanes[l] += c[l];
            }
        }
        let sum = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
        let mean = sum / n;
        let mut lanes = [0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                let d = c[l] - mean;
                lanes[l] = madd::<FMA>(d, d, lanes[l]);
            }
        }
        let tail = chunks
            .remainder()
            .iter()
            .fold(0f32, |s, &x| madd::<FMA>(x - mean, x - mean, s));
        let var = (lanes.iter().sum::<f32>() + tail) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((x, &s), &b) in row.iter_mut().zip(scale).zip(bias) {
            *x = madd::<FMA>((*x - mean) * inv, s, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::fold::ONNX_FLOAT;
    use crate::encoder::fold::tests::{f32s, node, runnable_at, tensor, typed};

    /// Each row normalised in f64.
    fn reference(x: &[f32], scale: &[f32], bias: &[f32], eps: f32) -> Vec<f64> {
        let h = scale.len();
        x.chunks(h)
            .flat_map(|row| {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h as f64;
                let inv = 1.0 / (var + eps as f64).sqrt();
                row.iter()
                    .zip(scale)
                    .zip(bias)
                    .map(move |((&v, &s), &b)| (v as f64 - mean) * inv * s as f64 + b as f64)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Rows of `hidden` values with an offset, so that the mean matters.
    fn rows(count: usize, hidden: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..count * hidden)
            .map(|i| ((i * 7919 % 101) as f32 * 0.37).sin() * 3.0 + 5.0)
            .collect();
        let scale = (0..hidden).map(|j| 0.5 + (j % 7) as f32 * 0.1).collect();
        let bias = (0..hidden).map(|j| (j % 5) as f32 * 0.2 - 0.4).collect();
        (x, scale, bias)
    }

    /// f32 sums of up to 384 values, against f64: a few ulps of values up to ~3.
    const KERNEL_TOLERANCE: f64 = 2e-6;

    #[test]
    fn every_isa_matches_f64_on_rows_with_and_without_a_tail() {
        for hidden in [384, 37, 5] {
            let (x, scale, bias) = rows(70, hidden);
            let want = reference(&x, &scale, &bias, 1e-12);
            for isa in F32Isa::all_available() {
                let mut got = x.clone();
                normalise_rows(isa, &mut got, &scale, &bias, 1e-12);
                let (worst, at) = got
                    .iter()
                    .zip(&want)
                    .map(|(&g, w)| (g as f64 - w).abs())
                    .enumerate()
                    .fold((0f64, 0), |m, (i, d)| if d > m.0 { (d, i) } else { m });
                assert!(
                    worst <= KERNEL_TOLERANCE,
                    "{isa:?}, hidden {hidden}: worst {worst:e} at {at}"
                );
            }
        }
    }

    #[test]
    fn rows_spread_over_a_thread_pool_give_identical_outputs() {
        use crate::pool::{single_threaded, with_threads};
        let (x, scale, bias) = rows(300, 384);
        let run = || {
            let mut y = x.clone();
            normalise_rows(F32Isa::detect(), &mut y, &scale, &bias, 1e-5);
            y
        };
        let alone = single_threaded(run);
        let pooled = with_threads(2, run);
        assert!(
            alone
                .iter()
                .zip(&pooled)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn a_nan_spreads_over_its_row_only() {
        let (mut x, scale, bias) = rows(3, 37);
        x[37 + 4] = f32::NAN;
        for isa in F32Isa::all_available() {
            let mut got = x.clone();
            normalise_rows(isa, &mut got, &scale, &bias, 1e-5);
            assert!(got[37..74].iter().all(|v| v.is_nan()), "{isa:?}");
            assert!(
                got[..37].iter().chain(&got[74..]).all(|v| v.is_finite()),
                "{isa:?}"
            );
        }
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
            onnx.op_register.insert(LAYER_NORM, layer_norm);
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
