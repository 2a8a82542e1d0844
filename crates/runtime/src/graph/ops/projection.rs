//! Projections the ONNX-file passes marked, wired straight to a [`PackedLinear`] at parse:
//! the marks are op types and attributes of the ONNX graph, never node names.
//!
//! - [`INT8_MATMUL`] `(x, q, s)`: an int8 export's projection on its own int8 values and
//!   scales ([`crate::graph::passes::int8_matmul`]).
//! - [`INTEGER_MATMUL`] `(x, w)`: f32 weights on the integer kernels, with the attribute
//!   [`U8_ACTIVATIONS`] where the graph asked for 8-bit activations
//!   ([`crate::graph::passes::dynamic_quant`]); or `(x)` with the weights in the tensor
//!   attribute [`WEIGHTS`] ([`crate::graph::passes::integer_weights`]), packed here from the
//!   decoded file, so that tract never copies them.
//!
//! Either takes an adapter's factors `A`, `B` as tensor attributes ([`LORA_A`], [`LORA_B`];
//! [`crate::graph::passes::adapter`]), and the packed op adds their low-rank term. Attributes,
//! not inputs: they never become graph nodes for tract to type and declutter.

use super::linear::{PackedLinear, Weights};
use crate::onnx::proto::floats;
use emotions_kernels::Isa;
use emotions_kernels::i16xi8::Int16Weights;
use emotions_kernels::low_rank::LowRank;
use emotions_kernels::u8xi8::Uint8Weights;
use std::sync::Arc;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The op type of an int8 export's projections, registered in the encoder's parser only.
pub(crate) const INT8_MATMUL: &str = "EmotionsInt8MatMul";
/// The op type of marked f32 projections, likewise.
pub(crate) const INTEGER_MATMUL: &str = "EmotionsIntegerMatMul";
/// [`INTEGER_MATMUL`]'s tensor attribute for its f32 `[k, n]` weights, in place of the second
/// input.
pub(crate) const WEIGHTS: &str = "weights";
/// [`INTEGER_MATMUL`]'s attribute: 1 where the graph asked for 8-bit activations.
pub(crate) const U8_ACTIVATIONS: &str = "u8_activations";
/// [`INT8_MATMUL`]'s attribute from an int8 calibration: the outlier channels (ints) of a
/// projection that takes 8-bit activations ([`crate::graph::passes::int8_matmul::mark_u8`]).
pub(crate) const U8_OUTLIERS: &str = "u8_outliers";
/// Either op's attributes for an adapter's factors: `A` `[rank, k]` and `B` `[n, rank]`, f32
/// tensors (the scale in `B`), whose term the projection adds in f32.
pub(crate) const LORA_A: &str = "lora_a";
pub(crate) const LORA_B: &str = "lora_b";

/// `x · (q · s)` over the last axis of `x`: inputs `x` (f32), `q` (int8 `[k, n]`, constant) and
/// `s` (f32, one or `n` values, constant).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Int8MatMul {
    low_rank: Option<Factors>,
    /// From [`U8_OUTLIERS`]: 8-bit activations with these outlier channels.
    u8_outliers: Option<Vec<usize>>,
}

/// An adapter's low-rank term, from the node's attributes [`LORA_A`] (`[rank, k]`) and
/// [`LORA_B`] (`[n, rank]`), f32 tensors, when it has them.
fn low_rank(node: &NodeProto) -> TractResult<Option<Factors>> {
    let a: Option<&tract_onnx::pb::TensorProto> = node.get_attr_opt(LORA_A)?;
    let b: Option<&tract_onnx::pb::TensorProto> = node.get_attr_opt(LORA_B)?;
    let (a, b) = match (a, b) {
        (None, None) => return Ok(None),
        (Some(a), Some(b)) => (a, b),
        _ => bail!(
            "{}: needs both {LORA_A} and {LORA_B}, or neither",
            node.name
        ),
    };
    let dims = |t: &tract_onnx::pb::TensorProto| -> Option<[usize; 2]> {
        let [r, c] = t.dims[..] else { return None };
        Some([usize::try_from(r).ok()?, usize::try_from(c).ok()?])
    };
    let (Some([rank, k]), Some([n, rank_b]), Some(av), Some(bv)) =
        (dims(a), dims(b), floats(a), floats(b))
    else {
        bail!(
            "{}: {LORA_A} and {LORA_B} must be 2-d f32 tensors",
            node.name
        );
    };
    ensure!(
        rank == rank_b && av.len() == rank * k && bv.len() == n * rank,
        "{}: low-rank factors are {:?} and {:?}, expected [r, k] and [n, r]",
        node.name,
        a.dims,
        b.dims
    );
    Ok(Some(Factors(Arc::new(LowRank::new(rank, k, n, &av, &bv)))))
}

/// A low-rank term carried by an expansion; the same term is the same op.
#[derive(Debug, Clone)]
struct Factors(Arc<LowRank>);

impl PartialEq for Factors {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Factors {}
impl std::hash::Hash for Factors {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.0.rank, self.0.k, self.0.n).hash(state);
    }
}

/// The term for a `[k, n]` projection, whose shape it must fit.
fn side_for(
    prefix: &str,
    factors: &Option<Factors>,
    (k, n): (usize, usize),
) -> TractResult<Option<Arc<LowRank>>> {
    let Some(Factors(side)) = factors else {
        return Ok(None);
    };
    ensure!(
        side.k == k && side.n == n,
        "{prefix}: a low-rank term of [{}, {}] for a [{k}, {n}] projection",
        side.k,
        side.n
    );
    Ok(Some(side.clone()))
}

/// Input `outlet`'s constant value.
fn konst(prefix: &str, model: &TypedModel, outlet: OutletId) -> TractResult<Arc<Tensor>> {
    model
        .outlet_fact(outlet)?
        .konst
        .clone()
        .with_context(|| format!("{prefix}: the weights of a marked projection must be constants"))
}

/// The isa the kernels run on; the load checked it already.
fn isa() -> TractResult<Isa> {
    Ok(Isa::selected()?)
}

/// Both ops type their output `x`'s shape with the last axis `n` (the weights' second).
fn projection_rules<'r, 'p: 'r, 's: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    weight_type: DatumType,
) -> InferenceResult {
    check_output_arity(outputs, 1)?;
    s.equals(&inputs[0].datum_type, f32::datum_type())?;
    s.equals(&inputs[1].datum_type, weight_type)?;
    s.equals(&outputs[0].datum_type, f32::datum_type())?;
    s.equals(&inputs[1].rank, 2)?;
    s.equals(&outputs[0].rank, &inputs[0].rank)?;
    s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, x, w| {
        let mut y = x;
        y.pop();
        y.push(w[1].clone());
        s.equals(&outputs[0].shape, ShapeFactoid::from(y))
    })
}

/// `x` ends in `k` values.
fn check_input(prefix: &str, model: &TypedModel, x: OutletId, k: usize) -> TractResult<()> {
    let x = model.outlet_fact(x)?;
    ensure!(
        x.rank() >= 1 && x.shape[x.rank() - 1] == k.to_dim(),
        "{prefix}: input {:?} does not end in {k} values",
        x.shape
    );
    Ok(())
}

impl Expansion for Int8MatMul {
    fn name(&self) -> StaticName {
        "Int8MatMul".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3)?;
        s.equals(&inputs[2].datum_type, f32::datum_type())?;
        projection_rules(s, inputs, outputs, i8::datum_type())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let (q, s) = (
            konst(prefix, model, inputs[1])?,
            konst(prefix, model, inputs[2])?,
        );
        let &[k, n] = q.shape() else {
            bail!(
                "{prefix}: int8 weights are {:?}, expected [k, n]",
                q.shape()
            );
        };
        check_input(prefix, model, inputs[0], k)?;
        let q = q.try_as_plain_ram()?;
        let q = q.as_slice::<i8>()?;
        ensure!(
            !q.contains(&i8::MIN),
            "{prefix}: int8 weights hold -128, outside the kernels' ±127"
        );
        let s = s.try_as_plain_ram()?;
        let s = s.as_slice::<f32>()?;
        let scales = match s.len() {
            1 => vec![s[0]; n],
            len if len == n => s.to_vec(),
            len => bail!("{prefix}: {len} scales for {n} output features"),
        };
        let isa = isa()?;
        // 8-bit activations where calibrated and the CPU has a kernel for their outliers; else
        // the 16-bit kernels (more exact than the portable 8-bit loop).
        let weights = match &self.u8_outliers {
            Some(outliers) if Uint8Weights::outliers_run_fast_on(isa) => {
                ensure!(
                    outliers.iter().all(|&c| c < k),
                    "{prefix}: an outlier channel past k = {k}"
                );
                Weights::Uint8(Arc::new(Uint8Weights::with_outliers(
                    q, k, n, scales, outliers,
                )))
            }
            _ => Weights::Int16(Arc::new(Int16Weights::from_int8(q, k, n, scales, isa))),
        };
        let side = side_for(prefix, &self.low_rank, (k, n))?;
        let linear = PackedLinear::new(prefix, weights, (k, n), side, isa);
        model.wire_node(prefix, linear, &inputs[..1])
    }
}

/// The op builder registered for [`INT8_MATMUL`] in the encoder's ONNX parser.
pub(crate) fn parse_int8_matmul(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let low_rank = low_rank(node)?;
    let u8_outliers = node
        .get_attr_opt_vec::<i64>(U8_OUTLIERS)?
        .map(|v| {
            v.iter()
                .map(|&c| usize::try_from(c))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|_| format_err!("{}: a negative outlier channel", node.name))?;
    Ok((
        expand(Int8MatMul {
            low_rank,
            u8_outliers,
        }),
        vec![],
    ))
}

/// `x · W` over the last axis of `x` on the integer kernels, for f32 constant weights `W`
/// (`[k, n]`) that an ONNX-file pass marked: an adapter's target (its factors in attributes),
/// or a `quantize_dynamic` projection, whose attribute `u8_activations` asks for 8-bit
/// activations where the CPU has VNNI.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct IntegerMatMul {
    u8_activations: bool,
    low_rank: Option<Factors>,
    /// Packed at parse from the attribute [`WEIGHTS`]; `None` when they are the second input.
    packed: Option<Packed>,
}

/// A projection's weights packed at parse, with their shape `[k, n]`; the same packing is the
/// same op.
#[derive(Debug, Clone)]
struct Packed {
    weights: Weights,
    k: usize,
    n: usize,
}

impl PartialEq for Packed {
    fn eq(&self, other: &Self) -> bool {
        self.weights.id() == other.weights.id()
    }
}
impl Eq for Packed {}
impl std::hash::Hash for Packed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.k, self.n).hash(state);
    }
}

/// The integer kernels' weights for the f32 `[k, n]` tensor attribute [`WEIGHTS`], if the node
/// has one.
fn packed_weights(node: &NodeProto, u8_activations: bool) -> TractResult<Option<Packed>> {
    let Some(t) = node.get_attr_opt::<&tract_onnx::pb::TensorProto>(WEIGHTS)? else {
        return Ok(None);
    };
    let shape = match t.dims[..] {
        [k, n] => usize::try_from(k).ok().zip(usize::try_from(n).ok()),
        _ => None,
    };
    let (Some((k, n)), Some(values)) = (shape, floats(t)) else {
        bail!(
            "{}: {WEIGHTS} must be a 2-d f32 tensor, found {:?}",
            node.name,
            t.dims
        );
    };
    ensure!(
        k > 0 && n > 0 && values.len() == k * n,
        "{}: {WEIGHTS} holds {} values for its shape {:?}",
        node.name,
        values.len(),
        t.dims
    );
    let weights = pack_integer(&node.name, &values, (k, n), u8_activations, isa()?)?;
    Ok(Some(Packed { weights, k, n }))
}

/// The integer kernels' packing of the f32 `[k, n]` weights of the projection `name`, whose
/// activations are u8 if `u8_activations`, else i16.
fn pack_integer(
    name: &str,
    values: &[f32],
    (k, n): (usize, usize),
    u8_activations: bool,
    isa: Isa,
) -> TractResult<Weights> {
    Weights::integer(values, k, n, u8_activations, isa)
        .with_context(|| format!("{name}: weights hold a non-finite value"))
}

impl Expansion for IntegerMatMul {
    fn name(&self) -> StaticName {
        "IntegerMatMul".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let Some(packed) = &self.packed else {
            check_input_arity(inputs, 2)?;
            return projection_rules(s, inputs, outputs, f32::datum_type());
        };
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        let n = packed.n;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, &inputs[0].rank)?;
        s.given(&inputs[0].shape, move |s, x| {
            let mut y = x;
            y.pop();
            y.push(n.to_dim());
            s.equals(&outputs[0].shape, ShapeFactoid::from(y))
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let isa = isa()?;
        if let Some(Packed { weights, k, n }) = &self.packed {
            check_input(prefix, model, inputs[0], *k)?;
            let side = side_for(prefix, &self.low_rank, (*k, *n))?;
            let linear = PackedLinear::new(prefix, weights.clone(), (*k, *n), side, isa);
            return model.wire_node(prefix, linear, &inputs[..1]);
        }
        let w = konst(prefix, model, inputs[1])?;
        let &[k, n] = w.shape() else {
            bail!("{prefix}: weights are {:?}, expected [k, n]", w.shape());
        };
        check_input(prefix, model, inputs[0], k)?;
        let values = w.try_as_plain_ram()?;
        let values = values.as_slice::<f32>()?;
        let weights = pack_integer(prefix, values, (k, n), self.u8_activations, isa)?;
        let side = side_for(prefix, &self.low_rank, (k, n))?;
        let linear = PackedLinear::new(prefix, weights, (k, n), side, isa);
        model.wire_node(prefix, linear, &inputs[..1])
    }
}

/// The op builder registered for [`INTEGER_MATMUL`] in the encoder's ONNX parser.
pub(crate) fn parse_integer_matmul(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let u8_activations = node.get_attr_opt::<i64>(U8_ACTIVATIONS)?.unwrap_or(0) != 0;
    let low_rank = low_rank(node)?;
    let packed = packed_weights(node, u8_activations)?;
    Ok((
        expand(IntegerMatMul {
            u8_activations,
            low_rank,
            packed,
        }),
        vec![],
    ))
}
