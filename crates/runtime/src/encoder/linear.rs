//! Dense projections as one op whose weights are packed once, for any number of tokens.
//!
//! tract packs a matmul's constant weights when it optimises a plan, and picks its kernel from
//! the plan's shapes. With the token count symbolic it falls back to a kernel meant for
//! single-token decoding (64x3 here), which made MiniLM's projections a third slower per token
//! than in a plan per shape; and a plan per shape repacks all 42 MB of weights, costing a
//! memory-bound ~40 ms and its own copy each. [`PackedLinear`] asks tract-linalg once for the
//! kernel a concrete plan would use, packs the weights for it at load time, and runs any token
//! count with them, so one symbolic plan does every batch at the speed of a concrete one.
//!
//! With [`Precision::Int16`] they run on [`super::int16`]'s integer kernels instead: an int8
//! export's weights (int8 values times a scale per feature) as they are, f32 weights rounded to
//! [`F32_WEIGHT_RANGE`]. An int8 export's projections arrive packed already, from the parser
//! ([`super::int8_matmul`]); [`pack_linears`] then only joins their adds to them.

use std::sync::Arc;
use tract_linalg::BinOp;
use tract_linalg::mmm::{AsInputValue, FusedSpec, MMMInputValue, MatMatMul, Query};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math::Add;

use super::Precision;
use super::adapter::{LowRankSide, side_of};
use super::dynamic_quant::DYNAMIC_U8_WEIGHTS;
use super::int8::Uint8Weights;
use super::int16::{Int16Weights, Isa, int8_grid};
use super::pattern::sole_successor;

/// f32 weights run in integers as `round(w / s)` with `|round(w / s)| <= 1023`, a scale `s` per
/// output feature. Of 127, 255, 511, 1023 and 2047, measured on the 12-layer bge-small replica
/// (42 texts up to 512 tokens, cosine to onnxruntime f32): 0.999973, 0.999995, 0.999998,
/// **0.9999993**, 0.999999. Past 1023 the activations lose more (their range shrinks so that
/// i32 sums cannot overflow) than the weights gain.
const F32_WEIGHT_RANGE: i16 = 1023;

/// Tokens per matmul the kernel is chosen for: a batch of 32 texts of 24 tokens.
const TYPICAL_TOKENS: usize = 768;

/// How the weights are held: packed f32 for tract's kernel, or int8 values for ours.
#[derive(Debug, Clone)]
enum Weights {
    F32 {
        kernel: Box<dyn MatMatMul>,
        packing: usize,
        packed: Arc<Box<dyn MMMInputValue>>,
    },
    Int16 {
        weights: Arc<Int16Weights>,
        isa: Isa,
    },
    /// 8-bit activations, where the graph asked for them (see [`super::dynamic_quant`]).
    Uint8 { weights: Arc<Uint8Weights> },
}

impl Weights {
    fn id(&self) -> *const () {
        match self {
            Weights::F32 { packed, .. } => Arc::as_ptr(packed) as *const (),
            Weights::Int16 { weights, .. } => Arc::as_ptr(weights) as *const (),
            Weights::Uint8 { weights } => Arc::as_ptr(weights) as *const (),
        }
    }
}

/// `y = x · W (+ bias)` over the last `contracted` axes of `x`, with `W` packed once.
#[derive(Debug, Clone)]
pub(crate) struct PackedLinear {
    name: String,
    weights: Weights,
    bias: Option<Arc<Tensor>>,
    /// A second input of the output's shape is added (a residual connection).
    residual: bool,
    /// An adapter's `x · Aᵀ · Bᵀ`, added in f32.
    low_rank: Option<Arc<LowRankSide>>,
    contracted: usize,
    k: usize,
    n: usize,
}

impl PackedLinear {
    /// `y = x · (q · s)` over the last axis of `x` on the 16-bit kernels: `q` int8 (`k × n`,
    /// row-major, no -128), `scales` one per column. Bias and residual adds join it later, in
    /// [`pack_linears`].
    pub(crate) fn from_int8(
        name: &str,
        q: &[i8],
        k: usize,
        n: usize,
        scales: Vec<f32>,
    ) -> PackedLinear {
        PackedLinear {
            name: name.to_string(),
            weights: Weights::Int16 {
                weights: Arc::new(Int16Weights::from_int8(q, k, n, scales)),
                isa: Isa::detect(),
            },
            bias: None,
            residual: false,
            low_rank: None,
            contracted: 1,
            k,
            n,
        }
    }
}

impl PartialEq for PackedLinear {
    fn eq(&self, other: &Self) -> bool {
        self.weights.id() == other.weights.id()
            && self.bias.as_ref().map(Arc::as_ptr) == other.bias.as_ref().map(Arc::as_ptr)
    }
}
impl Eq for PackedLinear {}

impl std::hash::Hash for PackedLinear {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        (self.k, self.n, self.contracted, self.residual).hash(state);
    }
}

impl Op for PackedLinear {
    fn name(&self) -> StaticName {
        "PackedLinear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "k: {}, n: {}, bias: {}, residual: {}, kernel: {}",
            self.k,
            self.n,
            self.bias.is_some(),
            self.residual,
            match &self.weights {
                Weights::F32 { kernel, .. } => kernel.name().to_string(),
                Weights::Int16 { isa, .. } => format!("int16 {isa:?}"),
                Weights::Uint8 { .. } => "u8 x int8 AVX-512 VNNI".to_string(),
            }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for PackedLinear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        ensure!(x.datum_type() == f32::datum_type() && x.rank() >= self.contracted);
        let lead = x.rank() - self.contracted;
        ensure!(
            x.shape()[lead..].iter().product::<usize>() == self.k,
            "PackedLinear {}: input {:?} does not end in {} values",
            self.name,
            x.shape(),
            self.k
        );
        let m = x.shape()[..lead].iter().product::<usize>();
        let mut shape: TVec<usize> = x.shape()[..lead].into();
        shape.push(self.n);
        // SAFETY: every element is written by the kernel's store below (m * n of them).
        let mut y = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        if m == 0 {
            return Ok(tvec!(y.into_tvalue()));
        }
        let residual = inputs.get(1);
        let pool = crate::pool::current();
        let pool = pool.as_deref();
        if let Some(r) = residual {
            ensure!(r.shape() == &shape[..] && r.datum_type() == f32::datum_type());
        }
        match &self.weights {
            Weights::Int16 { .. } | Weights::Uint8 { .. } => {
                let x = x.try_as_plain_ram()?;
                let bias = self
                    .bias
                    .as_ref()
                    .map(|b| b.try_as_plain_ram())
                    .transpose()?;
                let residual = residual.map(|r| r.try_as_plain_ram()).transpose()?;
                let mut out = y.try_as_plain_ram_mut()?;
                let (x, out) = (x.as_slice::<f32>()?, out.as_slice_mut::<f32>()?);
                let bias = bias.as_ref().map(|b| b.as_slice::<f32>()).transpose()?;
                let residual = residual.as_ref().map(|r| r.as_slice::<f32>()).transpose()?;
                match &self.weights {
                    Weights::Int16 { weights, isa } => {
                        weights.run(*isa, x, m, bias, residual, out, pool)
                    }
                    Weights::Uint8 { weights } => {
                        weights.run(true, x, m, bias, residual, out, pool)
                    }
                    Weights::F32 { .. } => unreachable!(),
                }
            }
            Weights::F32 {
                kernel,
                packing,
                packed,
            } => {
                let residual = residual.map(|r| &**r);
                let rows = |first: usize, len: usize| {
                    // SAFETY: the rows lie inside x, y and the residual, which are contiguous
                    // row-major f32 tensors of m rows (checked above); each call writes its own.
                    unsafe {
                        self.f32_rows(&**kernel, *packing, &***packed, x, &y, residual, first, len)
                    }
                };
                let threads = pool.map_or(1, |p| p.current_num_threads());
                let part_rows = part_rows(m, self.k * self.n, kernel.mr(), threads);
                match pool {
                    Some(pool) if part_rows < m => pool.install(|| {
                        use rayon::prelude::*;
                        (0..m.div_ceil(part_rows))
                            .into_par_iter()
                            .try_for_each(|p| {
                                let first = p * part_rows;
                                rows(first, part_rows.min(m - first))
                            })
                    })?,
                    _ => rows(0, m)?,
                }
            }
        }
        if let Some(side) = &self.low_rank {
            let x = x.try_as_plain_ram()?;
            let mut out = y.try_as_plain_ram_mut()?;
            side.add_to(x.as_slice::<f32>()?, m, out.as_slice_mut::<f32>()?, pool);
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

/// How many rows each thread's part of an `m`-row product takes: whole kernel panels of `mr`
/// rows, one part per thread, once the product is worth splitting (tract's own threshold,
/// 2^21 multiply-adds); `m` when it is not.
fn part_rows(m: usize, macs_per_row: usize, mr: usize, threads: usize) -> usize {
    if threads < 2 || m * macs_per_row < 1 << 21 {
        return m;
    }
    let parts = threads.min(m / mr).max(1);
    m.div_ceil(parts).next_multiple_of(mr).min(m)
}

impl PackedLinear {
    /// Rows `first..first + len` of `y = x · W (+ bias) (+ residual)` on tract-linalg's f32
    /// kernel.
    ///
    /// # Safety
    /// `x`, `y` and `residual` are contiguous row-major f32 tensors of at least
    /// `first + len` rows (`k` values in `x`, `n` in the others), `kernel` and `packing` are the
    /// ones `packed` was packed for, and no other thread writes these rows of `y`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn f32_rows(
        &self,
        kernel: &dyn MatMatMul,
        packing: usize,
        packed: &dyn MMMInputValue,
        x: &Tensor,
        y: &Tensor,
        residual: Option<&Tensor>,
        first: usize,
        len: usize,
    ) -> TractResult<()> {
        let (k, n) = (self.k, self.n);
        let (x_shape, x_strides) = ([len, k], [k as isize, 1]);
        let (y_shape, y_strides) = ([len, n], [n as isize, 1]);
        let (x_at, y_at) = ((first * k * 4) as isize, (first * n * 4) as isize);
        // SAFETY (all three views): in bounds, by the caller's contract.
        let rows = unsafe { TensorView::from_bytes(x, x_at, &x_shape, &x_strides) };
        let a = kernel.packings()[packing].0.prepare_one_view(&rows, 1, 0)?;
        let out = unsafe { TensorView::from_bytes(y, y_at, &y_shape, &y_strides) };
        let residual =
            residual.map(|r| unsafe { TensorView::from_bytes(r, y_at, &y_shape, &y_strides) });
        // SAFETY: the store is y's (and the residual's) row-major f32 layout, and covers
        // exactly these rows of y, which only this call writes.
        unsafe {
            let store = kernel.c_from_data_and_strides(4, n as isize, 1);
            let mut ops: TVec<FusedSpec> = tvec![FusedSpec::AddMatMul {
                a: AsInputValue::Borrowed(&*a),
                b: AsInputValue::Borrowed(packed),
                packing,
            }];
            if let Some(bias) = &self.bias {
                ops.push(FusedSpec::BinPerCol(bias.view(), BinOp::Add));
            }
            if let Some(r) = &residual {
                ops.push(FusedSpec::AddUnicast(store.wrap(r)));
            }
            ops.push(FusedSpec::Store(store.wrap(&out)));
            kernel.run(len, n, &ops)
        }
    }
}

impl TypedOp for PackedLinear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        ensure!(x.datum_type == f32::datum_type() && x.rank() >= self.contracted);
        let mut shape: TVec<TDim> = x.shape[..x.rank() - self.contracted].into();
        shape.push(self.n.to_dim());
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

/// How a packed projection multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    F32,
    Int16,
    Uint8,
}

/// Replaces every f32 matmul by constant weights (and its bias add, if any); returns how many,
/// how many of those run on the 16-bit and on the 8-bit integer kernels, and how many add a
/// low-rank term from `low_rank`.
pub(crate) fn pack_linears(
    model: &mut TypedModel,
    precision: Precision,
    low_rank: &[Arc<LowRankSide>],
) -> TractResult<(usize, usize, usize, usize)> {
    let mut patches = vec![];
    let (mut int16, mut uint8, mut sides) = (0, 0, 0);
    for node in &model.nodes {
        if let Some((patch, kernel, side)) = match_linear(model, node, precision, low_rank)? {
            int16 += (kernel == Kernel::Int16) as usize;
            uint8 += (kernel == Kernel::Uint8) as usize;
            sides += side as usize;
            patches.push(patch);
        }
    }
    let packed = patches.len();
    for patch in patches {
        patch.apply(model)?;
    }
    Ok((packed, int16, uint8, sides))
}

/// How many leading axes of the weights `op` contracts with the trailing axes of `x`, when
/// it is `y[..., n] = Σ x[..., k1, k2] · w[k1, k2, n]` with every axis in that order.
fn contracted_axes(op: &EinSum, x_rank: usize, w_rank: usize) -> Option<usize> {
    if w_rank < 2 || op.axes.rank(InOut::Out(0)) + w_rank - 2 != x_rank {
        return None;
    }
    let c = w_rank - 1;
    let lead = x_rank.checked_sub(c)?;
    for axis in op.axes.iter_all_axes() {
        let (xs, ws, outs) = (&axis.inputs[0], &axis.inputs[1], &axis.outputs[0]);
        let ok = match (&xs[..], &ws[..], &outs[..]) {
            // Batch-like axis of x, kept in place.
            (&[p], [], &[o]) => p < lead && o == p,
            // Contracted: the i-th trailing axis of x with the i-th leading axis of w.
            (&[p], &[q], []) => p >= lead && q < c && p - lead == q,
            // The output features.
            ([], &[q], &[o]) => q == c && o == lead,
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    Some(c)
}

/// The `Add` that is the only consumer of `node`, and the other operand it adds.
fn added_to<'m>(model: &'m TypedModel, node: &TypedNode) -> Option<(&'m TypedNode, OutletId)> {
    let add = sole_successor(model, node)?;
    if !add.op_as::<TypedBinOp>().is_some_and(|op| op.0.is::<Add>()) || add.inputs.len() != 2 {
        return None;
    }
    let other = add.inputs[if add.inputs[0] == node.id.into() {
        1
    } else {
        0
    }];
    Some((add, other))
}

fn match_linear(
    model: &TypedModel,
    node: &TypedNode,
    precision: Precision,
    low_rank: &[Arc<LowRankSide>],
) -> TractResult<Option<(TypedModelPatch, Kernel, bool)>> {
    // Packed already, at parse (an int8 projection, see `super::int8_matmul`): its adds and
    // its low-rank term join it here.
    if let Some(op) = node.op_as::<PackedLinear>() {
        if op.bias.is_some() || op.residual || op.low_rank.is_some() {
            return Ok(None);
        }
        let x_fact = model.outlet_fact(node.inputs[0])?;
        let side = side_of(&node.name, low_rank)
            .filter(|s| s.k == op.k && s.n == op.n)
            .cloned();
        return absorb_adds(
            model,
            node,
            x_fact,
            op.weights.clone(),
            op.contracted,
            op.k,
            op.n,
            side,
        )
        .map(Some);
    }
    let Some(op) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if op.q_params.is_some() || node.inputs.len() != 2 {
        return Ok(None);
    }
    let (x_fact, w_fact) = (
        model.outlet_fact(node.inputs[0])?,
        model.outlet_fact(node.inputs[1])?,
    );
    let Some(w) = w_fact.konst.clone() else {
        return Ok(None);
    };
    if x_fact.datum_type != f32::datum_type()
        || w.datum_type() != f32::datum_type()
        || x_fact.konst.is_some()
        || x_fact.exotic_fact().is_some()
    {
        return Ok(None);
    }
    let Some(contracted) = contracted_axes(op, x_fact.rank(), w.rank()) else {
        return Ok(None);
    };
    let n = *w.shape().last().unwrap();
    let k = w.len() / n.max(1);
    if k == 0 || n == 0 {
        return Ok(None);
    }
    let matrix = w.clone().into_tensor().into_shape(&[k, n])?;
    // Marked on the matmul (tract may fold a reshape into the weight under a new name).
    let side = side_of(&node.name, low_rank)
        .or_else(|| side_of(&model.node(node.inputs[1].node).name, low_rank))
        .filter(|s| s.k == k && s.n == n)
        .cloned();

    let asks_u8 = node.name.contains(DYNAMIC_U8_WEIGHTS)
        || model
            .node(node.inputs[1].node)
            .name
            .contains(DYNAMIC_U8_WEIGHTS);
    let integer = match precision {
        Precision::Int16 => {
            let w = matrix.try_as_plain_ram()?;
            let w = w.as_slice::<f32>()?;
            let int16 = |weights| Weights::Int16 {
                weights: Arc::new(weights),
                isa: Isa::detect(),
            };
            // The grid is searched once; its values serve whichever kernel runs them.
            match int8_grid(w, k, n) {
                Some((scales, q)) if asks_u8 && super::int8::fast_path_available() => {
                    Some(Weights::Uint8 {
                        weights: Arc::new(Uint8Weights::new(&q, k, n, scales)),
                    })
                }
                Some((scales, q)) => Some(int16(Int16Weights::from_int8(&q, k, n, scales))),
                None => Int16Weights::from_f32(w, k, n, F32_WEIGHT_RANGE).map(int16),
            }
        }
        Precision::F32 => None,
    };
    let weights = match integer {
        Some(weights) => weights,
        None => {
            let query = Query {
                weight: f32::datum_type().into(),
                activation: f32::datum_type(),
                accumulators: tvec![f32::datum_type()],
                store: Some(f32::datum_type()),
                allow_extractor: false,
                m: Some(TYPICAL_TOKENS),
                k: Some(k),
                n: Some(n),
            };
            let Some((kernel, packing, None)) = tract_linalg::MmmDispatch::native().pick(&query)
            else {
                return Ok(None);
            };
            let packed = kernel.packings()[packing].1.prepare_one(&matrix, 0, 1)?;
            Weights::F32 {
                kernel,
                packing,
                packed: Arc::new(packed),
            }
        }
    };
    absorb_adds(model, node, x_fact, weights, contracted, k, n, side).map(Some)
}

/// The patch replacing `node` (a projection of `x_fact`, by `weights`) and the `+ bias` and
/// `+ residual` that follow it, if any, by one [`PackedLinear`]; with which kernel it runs and
/// whether it adds a low-rank term.
#[allow(clippy::too_many_arguments)]
fn absorb_adds(
    model: &TypedModel,
    node: &TypedNode,
    x_fact: &TypedFact,
    weights: Weights,
    contracted: usize,
    k: usize,
    n: usize,
    side: Option<Arc<LowRankSide>>,
) -> TractResult<(TypedModelPatch, Kernel, bool)> {
    let kernel = match weights {
        Weights::F32 { .. } => Kernel::F32,
        Weights::Int16 { .. } => Kernel::Int16,
        Weights::Uint8 { .. } => Kernel::Uint8,
    };

    // A following `+ bias` over the features joins the op.
    let mut last = node;
    let mut bias = None;
    if let Some((add, other)) = added_to(model, node) {
        let fact = model.outlet_fact(other)?;
        let out_rank = x_fact.rank() - contracted + 1;
        if let Some(b) = &fact.konst
            && b.datum_type() == f32::datum_type()
            && b.len() == n
            && b.rank() <= out_rank
            && b.shape().last() == Some(&n)
        {
            bias = Some(Arc::new(b.clone().into_tensor().into_shape(&[n])?));
            last = add;
        }
    }
    // Then `+ residual`, of the output's own shape.
    let mut residual = None;
    if let Some((add, other)) = added_to(model, last) {
        let (fact, out) = (
            model.outlet_fact(other)?,
            model.outlet_fact(last.id.into())?,
        );
        if fact.datum_type == f32::datum_type() && fact.konst.is_none() && fact.shape == out.shape {
            residual = Some(other);
            last = add;
        }
    }
    let linear = PackedLinear {
        name: node.name.clone(),
        weights,
        bias,
        residual: residual.is_some(),
        low_rank: side.clone(),
        contracted,
        k,
        n,
    };
    let mut patch = TypedModelPatch::default();
    let mut inputs = vec![patch.tap_model(model, node.inputs[0])?];
    if let Some(r) = residual {
        inputs.push(patch.tap_model(model, r)?);
    }
    let y = patch.wire_node(format!("{}.packed", node.name), linear, &inputs)?;
    patch.shunt_outside(model, last.id.into(), y[0])?;
    Ok((patch, kernel, side.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::math::add;

    /// `x[2, 5, 2, 4] · w[2, 4, 6] + bias + residual`, as a decluttered export has it.
    fn projection() -> TractResult<TypedModel> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([2, 5, 2, 4]))?;
        let r = m.add_source("r", f32::fact([2, 5, 6]))?;
        let w: Vec<f32> = (0..48)
            .map(|i| ((i * 37) % 19) as f32 / 9.0 - 1.0)
            .collect();
        let w = m.add_const("w", tensor1(&w).into_shape(&[2, 4, 6])?)?;
        let y = m.wire_node(
            "mm",
            EinSum::new("abcd,cdn->abn".parse()?, f32::datum_type()),
            &[x, w],
        )?[0];
        let bias: Vec<f32> = (0..6).map(|i| i as f32 * 0.25 - 0.5).collect();
        let bias = m.add_const("bias", tensor1(&bias).into_shape(&[1, 1, 6])?)?;
        let y = m.wire_node("biased", add(), &[y, bias])?[0];
        let y = m.wire_node("residual", add(), &[r, y])?;
        m.select_output_outlets(&y)?;
        Ok(m)
    }

    #[test]
    fn packed_projection_matches_the_graph() -> TractResult<()> {
        let model = projection()?;
        let x: Vec<f32> = (0..80)
            .map(|i| ((i * 53) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let r: Vec<f32> = (0..60)
            .map(|i| ((i * 29) % 13) as f32 / 6.0 - 1.0)
            .collect();
        let inputs = || -> TractResult<TVec<TValue>> {
            Ok(tvec![
                tensor1(&x).into_shape(&[2, 5, 2, 4])?.into_tvalue(),
                tensor1(&r).into_shape(&[2, 5, 6])?.into_tvalue(),
            ])
        };
        let want = model.clone().into_runnable()?.run(inputs()?)?;
        let mut packed = model;
        assert_eq!(
            pack_linears(&mut packed, Precision::F32, &[])?,
            (1, 0, 0, 0)
        );
        let names: Vec<_> = packed
            .clone()
            .into_decluttered()?
            .nodes
            .iter()
            .map(|n| n.op.name())
            .collect();
        assert!(
            !names.iter().any(|n| n == "EinSum" || n == "Add"),
            "{names:?}"
        );
        let got = packed.into_optimized()?.into_runnable()?.run(inputs()?)?;
        let (got, want) = (
            got[0].to_plain_array_view::<f32>()?,
            want[0].to_plain_array_view::<f32>()?,
        );
        assert_eq!(got.shape(), want.shape());
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
        Ok(())
    }

    #[test]
    fn rows_split_in_whole_panels_once_worth_it() {
        // Too few multiply-adds, one thread, or one panel: one part.
        assert_eq!(part_rows(8, 384 * 384, 16, 2), 8);
        assert_eq!(part_rows(1000, 384 * 384, 16, 1), 1000);
        assert_eq!(part_rows(16, 384 * 384, 16, 2), 16);
        // Two threads: two parts of whole panels, the second shorter.
        assert_eq!(part_rows(100, 384 * 384, 16, 2), 64);
        // No more parts than whole panels: one part of 20 rows; two of 32 and 8, not four.
        assert_eq!(part_rows(20, 384 * 1536, 16, 4), 20);
        assert_eq!(part_rows(40, 384 * 1536, 16, 4), 32);
    }

    /// The f32 kernel split over a pool gives the single-threaded result to the bit, and both
    /// the graph's within rounding.
    #[test]
    fn f32_rows_over_a_pool_are_the_rows_alone() -> TractResult<()> {
        let (m, k, n) = (150, 96, 160);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([m, k]))?;
        let r = model.add_source("r", f32::fact([m, n]))?;
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 37) % 19) as f32 / 9.0 - 1.0)
            .collect();
        let w = model.add_const("w", tensor1(&w).into_shape(&[k, n])?)?;
        let y = model.wire_node(
            "mm",
            EinSum::new("mk,kn->mn".parse()?, f32::datum_type()),
            &[x, w],
        )?[0];
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 0.5).collect();
        let bias = model.add_const("bias", tensor1(&bias).into_shape(&[1, n])?)?;
        let y = model.wire_node("biased", add(), &[y, bias])?[0];
        let y = model.wire_node("residual", add(), &[r, y])?;
        model.select_output_outlets(&y)?;
        let inputs = || -> TractResult<TVec<TValue>> {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 53) % 23) as f32 / 11.0 - 1.0)
                .collect();
            let r: Vec<f32> = (0..m * n)
                .map(|i| ((i * 29) % 13) as f32 / 6.0 - 1.0)
                .collect();
            Ok(tvec![
                tensor1(&x).into_shape(&[m, k])?.into_tvalue(),
                tensor1(&r).into_shape(&[m, n])?.into_tvalue(),
            ])
        };
        let want = model.clone().into_runnable()?.run(inputs()?)?;
        let mut packed = model;
        assert_eq!(pack_linears(&mut packed, Precision::F32, &[])?.0, 1);
        let plan = packed.into_optimized()?.into_runnable()?;
        let alone = crate::pool::single_threaded(|| plan.run(inputs()?))?;
        let pooled = crate::pool::with_threads(2, || plan.run(inputs()?))?;
        let (alone, pooled, want) = (
            alone[0].to_plain_array_view::<f32>()?,
            pooled[0].to_plain_array_view::<f32>()?,
            want[0].to_plain_array_view::<f32>()?,
        );
        assert_eq!(alone.shape(), [m, n]);
        let differ = alone
            .iter()
            .zip(pooled.iter())
            .position(|(a, p)| a.to_bits() != p.to_bits());
        assert_eq!(differ, None);
        for (g, w) in alone.iter().zip(want.iter()) {
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
        }
        Ok(())
    }
}
