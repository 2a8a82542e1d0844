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
//! With `Precision::Int16` they run on the integer kernels instead (`emotions_kernels::i16xi8`):
//! an int8 export's weights (int8 values times a scale per feature) as they are, f32 weights
//! rounded to [`F32_WEIGHT_RANGE`]. Projections the ONNX-file passes marked (int8 exports,
//! `quantize_dynamic` exports, adapter targets) arrive packed already, from the parser
//! ([`super::projection`]); the linear rule then only joins their adds to them.

use emotions_kernels::Isa;
use emotions_kernels::f32_rows::F32Weights;
use emotions_kernels::i16xi8::{Int16Weights, int8_grid};
use emotions_kernels::low_rank::LowRank;
use emotions_kernels::u8xi8::Uint8Weights;
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// f32 weights run in integers as `round(w / s)` with `|round(w / s)| <= 1023`, a scale `s` per
/// output feature. Of 127, 255, 511, 1023 and 2047, measured on the 12-layer bge-small replica
/// (42 texts up to 512 tokens, cosine to onnxruntime f32): 0.999973, 0.999995, 0.999998,
/// **0.9999993**, 0.999999. Past 1023 the activations lose more (their range shrinks so that
/// i32 sums cannot overflow) than the weights gain.
pub(crate) const F32_WEIGHT_RANGE: i16 = 1023;

thread_local! {
    /// Cleared while a plan runs as the plain encoder ([`LowRankOff`]). A flag beside the plan,
    /// not a second graph: tract runs a plan's ops on the thread that runs it.
    static LOW_RANK_ON: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Every projection on this thread skips its adapter's low-rank term until this is dropped
/// (also when a panic unwinds through it).
pub(crate) struct LowRankOff(bool);

impl LowRankOff {
    pub(crate) fn new() -> Self {
        LowRankOff(LOW_RANK_ON.replace(false))
    }
}

impl Drop for LowRankOff {
    fn drop(&mut self) {
        LOW_RANK_ON.set(self.0);
    }
}

/// How the weights are held: packed f32 for tract's kernel, or int8 values for ours.
#[derive(Debug, Clone)]
pub(crate) enum Weights {
    F32(Arc<F32Weights>),
    Int16(Arc<Int16Weights>),
    /// 8-bit activations, where the graph asked for them
    /// ([`crate::graph::passes::dynamic_quant`]) and the CPU has VNNI.
    Uint8(Arc<Uint8Weights>),
}

impl Weights {
    /// Where the packed values are: the same for clones of one packing.
    pub(crate) fn id(&self) -> *const () {
        match self {
            Weights::F32(w) => w.id(),
            Weights::Int16(w) => Arc::as_ptr(w) as *const (),
            Weights::Uint8(w) => Arc::as_ptr(w) as *const (),
        }
    }

    /// Which kernel runs them.
    pub(crate) fn kernel(&self) -> Kernel {
        match self {
            Weights::F32(_) => Kernel::F32,
            Weights::Int16(_) => Kernel::Int16,
            Weights::Uint8(_) => Kernel::Uint8,
        }
    }

    /// The integer kernels' weights for f32 `w` (`k × n`, row-major): its int8 grid when it
    /// has one (on the 8-bit-activation kernel when `u8_activations` asks and `isa` has it),
    /// else rounded to [`F32_WEIGHT_RANGE`]. `None` for non-finite weights.
    pub(crate) fn integer(
        w: &[f32],
        k: usize,
        n: usize,
        u8_activations: bool,
        isa: Isa,
    ) -> Option<Weights> {
        // The grid is searched once; its values serve whichever kernel runs them.
        match int8_grid(w, k, n) {
            Some((scales, q)) if u8_activations && isa.has_u8_dot() => Some(Weights::Uint8(
                Arc::new(Uint8Weights::new(&q, k, n, scales)),
            )),
            Some((scales, q)) => Some(Weights::Int16(Arc::new(Int16Weights::from_int8(
                &q, k, n, scales, isa,
            )))),
            None => Int16Weights::from_f32(w, k, n, F32_WEIGHT_RANGE)
                .map(|w| Weights::Int16(Arc::new(w))),
        }
    }
}

/// How a packed projection multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    F32,
    Int16,
    Uint8,
}

/// `y = x · W (+ bias)` over the last `contracted` axes of `x`, with `W` packed once.
#[derive(Debug, Clone)]
pub(crate) struct PackedLinear {
    pub(crate) name: String,
    pub(crate) weights: Weights,
    pub(crate) bias: Option<Arc<Tensor>>,
    /// A second input of the output's shape is added (a residual connection).
    pub(crate) residual: bool,
    /// An adapter's `x · Aᵀ · Bᵀ`, added in f32.
    pub(crate) low_rank: Option<Arc<LowRank>>,
    pub(crate) contracted: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
    /// The instructions the integer kernels and the low-rank term run on.
    pub(crate) isa: Isa,
}

impl PackedLinear {
    /// `y = x · W` over the last axis of `x`, `W` being `k × n`. Bias and residual adds join
    /// it later ([`crate::graph::rules::linear`]).
    pub(crate) fn new(
        name: &str,
        weights: Weights,
        (k, n): (usize, usize),
        low_rank: Option<Arc<LowRank>>,
        isa: Isa,
    ) -> PackedLinear {
        PackedLinear {
            name: name.to_string(),
            weights,
            bias: None,
            residual: false,
            low_rank,
            contracted: 1,
            k,
            n,
            isa,
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
                Weights::F32(w) => w.kernel_name().to_string(),
                Weights::Int16(_) => format!("i16 x i8 {}", self.isa),
                Weights::Uint8(_) => format!("u8 x i8 {}", self.isa),
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
        if let Some(r) = residual {
            ensure!(r.shape() == &shape[..] && r.datum_type() == f32::datum_type());
        }
        match &self.weights {
            Weights::Int16(_) | Weights::Uint8(_) => {
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
                    Weights::Int16(w) => w.run(self.isa, x, m, bias, residual, out),
                    Weights::Uint8(w) => w.run(self.isa, x, m, bias, residual, out),
                    Weights::F32(_) => unreachable!(),
                }
            }
            Weights::F32(w) => {
                let residual = residual.map(|r| &**r);
                w.run(x, m, self.bias.as_deref(), residual, &mut y)?
            }
        }
        if let Some(side) = &self.low_rank
            && LOW_RANK_ON.get()
        {
            let x = x.try_as_plain_ram()?;
            let mut out = y.try_as_plain_ram_mut()?;
            side.add_to(
                self.isa,
                x.as_slice::<f32>()?,
                m,
                out.as_slice_mut::<f32>()?,
            );
        }
        Ok(tvec!(y.into_tvalue()))
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
