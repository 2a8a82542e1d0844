//! Fuses each self-attention block into one op.
//!
//! Exported BERT graphs compute attention as a dozen ops over `[batch, heads, seq, seq]`
//! tensors: reshapes and transposes of K, two batched matmuls with their packing, the mask
//! `Add`, the softmax and an `IsNaN`/`Where` guard. On go_emotions texts (about 20 tokens)
//! those ops did about 1% of MiniLM's arithmetic but took 18% of its time, because every one of
//! them is a pass over memory sized for tiny matrices. [`FusedAttention`] does the whole block
//! per (text, head) in a few kilobytes of scratch.
//!
//! Matching is exact or nothing: every reshape and transpose between the Q/K/V projections and
//! the matmuls is replayed on a symbolic layout (which axis holds batch, position, head or
//! depth), and the fusion happens only when the two matmuls contract depth and key position as
//! attention does. Anything else is left as tract has it.

// The kernels index lanes, keys and rows explicitly: fixed-size loops over small arrays are
// what the compiler keeps in vector registers.
#![allow(clippy::needless_range_loop)]

use crate::pattern::{bin_with_const, const_input, sole_successor};
use crate::softmax::exp_non_positive;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::logic::Iff;
use tract_onnx::tract_core::ops::math::{Add, IsNan, Mul};

use crate::softmax::LastAxisSoftmax;

/// `softmax(q·kᵀ + bias) · v` per head, for `q`, `k`, `v` of shape `[batch, seq, heads * depth]`
/// and an optional additive `bias` broadcastable to `[batch, heads, seq, seq]`. Output
/// `[batch, seq, heads, depth]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FusedAttention {
    heads: usize,
    /// `q` and `k` are multiplied by these before the product, as the graph did.
    q_scale_bits: u32,
    k_scale_bits: u32,
    has_bias: bool,
    /// The graph replaced NaN probabilities by 0 (`Where(IsNaN(p), 0, p)`).
    nan_to_zero: bool,
}

impl Op for FusedAttention {
    fn name(&self) -> StaticName {
        "FusedAttention".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "heads: {}, scales: {} {}, bias: {}, NaN to 0: {}",
            self.heads,
            f32::from_bits(self.q_scale_bits),
            f32::from_bits(self.k_scale_bits),
            self.has_bias,
            self.nan_to_zero
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for FusedAttention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (q, k, v) = (&inputs[0], &inputs[1], &inputs[2]);
        let (&[batch, seq, width], &[kb, kseq, kw], &[vb, vseq, vw]) =
            (q.shape(), k.shape(), v.shape())
        else {
            bail!("FusedAttention: q, k and v must have rank 3");
        };
        ensure!(
            kb == batch && vb == batch && kw == width && vw == width && vseq == kseq,
            "FusedAttention: q {:?}, k {:?} and v {:?} disagree",
            q.shape(),
            k.shape(),
            v.shape()
        );
        ensure!(width % self.heads == 0);
        let bias = if self.has_bias {
            let b = &inputs[3];
            let want = [batch, self.heads, seq, kseq];
            ensure!(
                b.rank() == 4 && b.shape().iter().zip(want).all(|(&d, w)| d == 1 || d == w),
                "FusedAttention: bias {:?} does not broadcast to {want:?}",
                b.shape()
            );
            // Row-major strides, 0 along broadcast axes.
            let mut strides = [0usize; 4];
            let mut step = 1;
            for axis in (0..4).rev() {
                strides[axis] = if b.shape()[axis] == 1 { 0 } else { step };
                step *= b.shape()[axis];
            }
            Some((b.try_as_plain_ram()?.as_slice::<f32>()?, strides))
        } else {
            None
        };
        let shape = Shape {
            batch,
            seq,
            kseq,
            heads: self.heads,
            depth: width / self.heads,
        };
        let mut out = Tensor::zero::<f32>(&[batch, seq, self.heads, width / self.heads])?;
        {
            let mut plain = out.try_as_plain_ram_mut()?;
            attend(
                &shape,
                Scales {
                    q: f32::from_bits(self.q_scale_bits),
                    k: f32::from_bits(self.k_scale_bits),
                    nan_to_zero: self.nan_to_zero,
                },
                q.try_as_plain_ram()?.as_slice::<f32>()?,
                k.try_as_plain_ram()?.as_slice::<f32>()?,
                v.try_as_plain_ram()?.as_slice::<f32>()?,
                bias,
                plain.as_slice_mut::<f32>()?,
            );
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for FusedAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let q = inputs[0];
        ensure!(q.datum_type == f32::datum_type() && q.rank() == 3);
        let depth = q.shape[2].clone() / self.heads as u64;
        Ok(tvec!(f32::fact([
            q.shape[0].clone(),
            q.shape[1].clone(),
            self.heads.to_dim(),
            depth
        ])))
    }

    as_op!();
}

struct Shape {
    batch: usize,
    seq: usize,
    kseq: usize,
    heads: usize,
    depth: usize,
}

#[derive(Clone, Copy)]
struct Scales {
    q: f32,
    k: f32,
    nan_to_zero: bool,
}

type Bias<'a> = Option<(&'a [f32], [usize; 4])>;

/// The op's inputs as slices: `q`, `k`, `v` `[batch, seq, heads * depth]`, and the bias with
/// its strides (0 along broadcast axes).
#[derive(Clone, Copy)]
struct Operands<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    bias: Bias<'a>,
}

/// Runs the fused block, texts spread over tract's thread pool when it has one (a lone batch
/// with `--threads 2`), each with the widest vector instructions the CPU has.
fn attend(
    shape: &Shape,
    scales: Scales,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Bias,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    use tract_linalg::multithread::{Executor, current_tract_executor};
    let per_text = shape.seq * shape.heads * shape.depth;
    if per_text == 0 {
        return;
    }
    let ops = Operands { q, k, v, bias };
    let one = |(b, out): (usize, &mut [f32])| attend_text(shape, scales, ops, b, out);
    match current_tract_executor() {
        Executor::MultiThread(pool) if shape.batch > 1 => {
            pool.install(|| out.par_chunks_mut(per_text).enumerate().for_each(one))
        }
        Executor::RayonGlobal if shape.batch > 1 => {
            out.par_chunks_mut(per_text).enumerate().for_each(one)
        }
        _ => out.chunks_mut(per_text).enumerate().for_each(one),
    }
}

/// Text `b`'s output rows `[seq, heads, depth]`.
fn attend_text(shape: &Shape, scales: Scales, ops: Operands, b: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { attend_avx512(shape, scales, ops, b, out) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { attend_avx2(shape, scales, ops, b, out) };
        }
    }
    attend_generic::<false>(shape, scales, ops, b, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn attend_avx512(shape: &Shape, scales: Scales, ops: Operands, b: usize, out: &mut [f32]) {
    attend_generic::<true>(shape, scales, ops, b, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(shape: &Shape, scales: Scales, ops: Operands, b: usize, out: &mut [f32]) {
    attend_generic::<true>(shape, scales, ops, b, out)
}

/// `a * b + c`, fused where the instruction exists (a software fma would be far slower).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Lanes per vector block: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;
/// Key positions scored together: independent multiply-add chains that hide FMA latency.
const KEYS: usize = 8;
/// Query rows whose outputs are summed together, for the same reason.
const ROWS: usize = 4;

/// Per-head scratch, allocated once per call.
struct Scratch {
    /// Scaled queries, transposed: `[depth][qpad]`, so that a vector holds 16 query rows.
    qt: Vec<f32>,
    /// Scaled keys of one head: `[kseq][depth]`.
    ks: Vec<f32>,
    /// Bias transposed: `[kseq][qpad]`, and which head's it is (0 when shared by all).
    bias_t: Vec<f32>,
    bias_of: Option<usize>,
    /// Probabilities of one block of 16 query rows: `[kseq][LANES]`.
    probs: Vec<f32>,
}

#[inline(always)]
fn attend_generic<const FMA: bool>(
    s: &Shape,
    scales: Scales,
    ops: Operands,
    b: usize,
    out: &mut [f32],
) {
    let Operands { q, k, v, bias } = ops;
    let (depth, width) = (s.depth, s.heads * s.depth);
    let qpad = s.seq.div_ceil(LANES) * LANES;
    let mut sc = Scratch {
        qt: vec![0f32; depth * qpad],
        ks: vec![0f32; s.kseq * depth],
        bias_t: vec![0f32; if bias.is_some() { s.kseq * qpad } else { 0 }],
        bias_of: None,
        probs: vec![0f32; s.kseq * LANES],
    };
    for h in 0..s.heads {
        for i in 0..s.seq {
            let row = &q[(b * s.seq + i) * width + h * depth..][..depth];
            for (d, &x) in row.iter().enumerate() {
                sc.qt[d * qpad + i] = x * scales.q;
            }
        }
        for j in 0..s.kseq {
            let row = &k[(b * s.kseq + j) * width + h * depth..][..depth];
            for (dst, &x) in sc.ks[j * depth..][..depth].iter_mut().zip(row) {
                *dst = x * scales.k;
            }
        }
        if let Some((bias, st)) = bias {
            // A mask bias is usually shared by all heads: transpose it once per text.
            let key = if st[1] == 0 { 0 } else { h };
            if sc.bias_of != Some(key) {
                for i in 0..s.seq {
                    for j in 0..s.kseq {
                        sc.bias_t[j * qpad + i] =
                            bias[b * st[0] + h * st[1] + i * st[2] + j * st[3]];
                    }
                }
                sc.bias_of = Some(key);
            }
        }
        for i0 in (0..s.seq).step_by(LANES) {
            scores_block::<FMA>(s, &mut sc, i0, qpad, bias.is_some(), scales.nan_to_zero);
            let rows = (s.seq - i0).min(LANES);
            let mut r = 0;
            while r + ROWS <= rows {
                values_rows::<FMA, ROWS>(s, &sc.probs, r, b, h, i0 + r, v, out);
                r += ROWS;
            }
            for r in r..rows {
                values_rows::<FMA, 1>(s, &sc.probs, r, b, h, i0 + r, v, out);
            }
        }
    }
}

/// Softmax-ed scores of query rows `i0..i0 + 16` (one per lane) against every key, into
/// `sc.probs[key][lane]`. Lanes past the last query row hold garbage that nobody reads.
#[inline(always)]
fn scores_block<const FMA: bool>(
    s: &Shape,
    sc: &mut Scratch,
    i0: usize,
    qpad: usize,
    has_bias: bool,
    nan_to_zero: bool,
) {
    let mut j = 0;
    while j + KEYS <= s.kseq {
        score_keys::<FMA, KEYS>(s, sc, i0, j, qpad, has_bias);
        j += KEYS;
    }
    for j in j..s.kseq {
        score_keys::<FMA, 1>(s, sc, i0, j, qpad, has_bias);
    }
    // Softmax down each lane (over keys): no horizontal reductions.
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut nan = [false; LANES];
    for p in sc.probs.chunks_exact(LANES) {
        for l in 0..LANES {
            max[l] = if p[l] > max[l] { p[l] } else { max[l] };
            nan[l] |= p[l].is_nan();
        }
    }
    let mut sum = [0f32; LANES];
    for p in sc.probs.chunks_exact_mut(LANES) {
        for l in 0..LANES {
            p[l] = exp_non_positive(p[l] - max[l]);
            sum[l] += p[l];
        }
    }
    // A row with a NaN or no finite maximum: all NaN, as a plain softmax makes it, or all 0
    // when the graph replaced NaN probabilities by 0.
    let fill = if nan_to_zero { 0.0 } else { f32::NAN };
    let mut scale = [0f32; LANES];
    let mut bad = [false; LANES];
    for l in 0..LANES {
        bad[l] = nan[l] || !max[l].is_finite();
        scale[l] = 1.0 / sum[l];
    }
    for p in sc.probs.chunks_exact_mut(LANES) {
        for l in 0..LANES {
            p[l] = if bad[l] { fill } else { p[l] * scale[l] };
        }
    }
}

/// Scores of query rows `i0..i0 + 16` against keys `j..j + K`, plus the bias.
#[inline(always)]
fn score_keys<const FMA: bool, const K: usize>(
    s: &Shape,
    sc: &mut Scratch,
    i0: usize,
    j: usize,
    qpad: usize,
    has_bias: bool,
) {
    let depth = s.depth;
    assert!((j + K) * depth <= sc.ks.len() && (depth - 1) * qpad + i0 + LANES <= sc.qt.len());
    let mut acc = [[0f32; LANES]; K];
    for d in 0..depth {
        // SAFETY: in bounds by the assertion above (d < depth, t < K).
        let qv: &[f32; LANES] =
            unsafe { &*(sc.qt.as_ptr().add(d * qpad + i0) as *const [f32; LANES]) };
        for t in 0..K {
            let kv = unsafe { *sc.ks.get_unchecked((j + t) * depth + d) };
            for l in 0..LANES {
                acc[t][l] = madd::<FMA>(qv[l], kv, acc[t][l]);
            }
        }
    }
    for t in 0..K {
        let dst = &mut sc.probs[(j + t) * LANES..][..LANES];
        dst.copy_from_slice(&acc[t]);
        if has_bias {
            let add = &sc.bias_t[(j + t) * qpad + i0..][..LANES];
            for l in 0..LANES {
                dst[l] += add[l];
            }
        }
    }
}

/// Outputs of `R` query rows (lanes `lane..lane + R` of `probs`): probabilities times V, one
/// block of depths at a time, summed over keys in order.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn values_rows<const FMA: bool, const R: usize>(
    s: &Shape,
    probs: &[f32],
    lane: usize,
    b: usize,
    h: usize,
    i: usize,
    v: &[f32],
    out: &mut [f32],
) {
    let (depth, width) = (s.depth, s.heads * s.depth);
    // `out` holds this text only.
    let out_at = |r: usize| ((i + r) * s.heads + h) * depth;
    let v_at = |j: usize| (b * s.kseq + j) * width + h * depth;
    assert!(v_at(s.kseq - 1) + depth <= v.len() && (s.kseq - 1) * LANES + lane + R <= probs.len());
    let mut db = 0;
    while db + LANES <= depth {
        let mut acc = [[0f32; LANES]; R];
        for j in 0..s.kseq {
            // SAFETY: in bounds by the assertion above (j < kseq, db + LANES <= depth, r < R).
            let vv: &[f32; LANES] =
                unsafe { &*(v.as_ptr().add(v_at(j) + db) as *const [f32; LANES]) };
            for r in 0..R {
                let p = unsafe { *probs.get_unchecked(j * LANES + lane + r) };
                for l in 0..LANES {
                    acc[r][l] = madd::<FMA>(p, vv[l], acc[r][l]);
                }
            }
        }
        for r in 0..R {
            out[out_at(r) + db..][..LANES].copy_from_slice(&acc[r]);
        }
        db += LANES;
    }
    // Depths left over when the head size is not a multiple of the block.
    for d in db..depth {
        for r in 0..R {
            let mut acc = 0f32;
            for j in 0..s.kseq {
                acc = madd::<FMA>(probs[j * LANES + lane + r], v[v_at(j) + d], acc);
            }
            out[out_at(r) + d] = acc;
        }
    }
}

/// What one axis of a tensor derived from a `[batch, seq, heads * depth]` projection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    Batch,
    /// The query position (rows of the score matrix).
    Query,
    /// The key position (columns of the score matrix).
    Key,
    Head,
    Depth,
}

/// A tensor's axes, each a row-major group of atoms with their sizes; a unit axis is empty.
#[derive(Debug, Clone, PartialEq)]
struct Layout(Vec<Vec<(Atom, TDim)>>);

impl Layout {
    /// A projection `[batch, seq, heads * depth]`, its positions being `position`.
    fn projection(fact: &TypedFact, heads: usize, position: Atom) -> Option<Layout> {
        let [batch, seq, width] = &fact.shape.to_tvec()[..] else {
            return None;
        };
        let width = width.as_i64()? as usize;
        if heads == 0 || !width.is_multiple_of(heads) {
            return None;
        }
        Some(Layout(vec![
            vec![(Atom::Batch, batch.clone())],
            vec![(position, seq.clone())],
            vec![
                (Atom::Head, heads.to_dim()),
                (Atom::Depth, (width / heads).to_dim()),
            ],
        ]))
    }

    fn atoms(&self, axis: usize) -> Vec<Atom> {
        self.0[axis].iter().map(|a| a.0).collect()
    }

    /// The layout after `op`, or `None` when `op` would split an atom.
    fn apply(&self, op: &AxisOp) -> Option<Layout> {
        let mut axes = self.0.clone();
        match op {
            AxisOp::Add(at) if *at <= axes.len() => axes.insert(*at, vec![]),
            AxisOp::Rm(at) if axes.get(*at)?.is_empty() => {
                axes.remove(*at);
            }
            AxisOp::Move(from, to) if *from < axes.len() && *to < axes.len() => {
                let axis = axes.remove(*from);
                axes.insert(*to, axis);
            }
            AxisOp::Reshape(at, from, to) if at + from.len() <= axes.len() => {
                let size = |group: &[(Atom, TDim)]| {
                    group
                        .iter()
                        .fold(TDim::Val(1), |p, a| p * a.1.clone())
                        .simplify()
                };
                let merged: Vec<_> = axes.drain(*at..at + from.len()).collect();
                if merged
                    .iter()
                    .zip(from)
                    .any(|(g, f)| size(g) != f.clone().simplify())
                {
                    return None;
                }
                let mut atoms = merged.into_iter().flatten();
                let mut groups = vec![];
                for dim in to {
                    let dim = dim.clone().simplify();
                    let mut group = vec![];
                    while size(&group) != dim {
                        group.push(atoms.next()?);
                    }
                    groups.push(group);
                }
                if atoms.next().is_some() {
                    return None;
                }
                axes.splice(*at..*at, groups);
            }
            _ => return None,
        }
        Some(Layout(axes))
    }
}

/// Walks up from `outlet` through axis changes and scalar multiplications to the projection
/// it comes from: `(projection, its layout at outlet, product of the scalars)`.
fn trace_projection(
    model: &TypedModel,
    mut outlet: OutletId,
    heads: usize,
    position: Atom,
) -> Option<(OutletId, Layout, f32)> {
    let mut ops = vec![];
    let mut scale = 1f32;
    loop {
        let node = model.node(outlet.node);
        if let Some(op) = node.op_as::<AxisOp>() {
            ops.push(op.clone());
            outlet = node.inputs[0];
        } else if let Some((x, c)) = bin_with_const::<Mul>(model, node) {
            // Only a true scalar: a broadcast vector would scale depths differently.
            if model.outlet_fact(x).ok()?.rank() < model.outlet_fact(outlet).ok()?.rank() {
                return None;
            }
            scale *= c;
            outlet = x;
        } else {
            break;
        }
    }
    let mut layout = Layout::projection(model.outlet_fact(outlet).ok()?, heads, position)?;
    for op in ops.iter().rev() {
        layout = layout.apply(op)?;
    }
    Some((outlet, layout, scale))
}

/// The layout of a two-input EinSum's output and the atoms it sums over, or `None` when an
/// axis pairs different atoms (which attention never does).
fn einsum_layout(op: &EinSum, a: &Layout, b: &Layout) -> Option<(Layout, Vec<Atom>)> {
    let out_rank = op.axes.rank(InOut::Out(0));
    let mut out = vec![None; out_rank];
    let mut summed = vec![];
    for axis in op.axes.iter_all_axes() {
        let pos = |slot: &TVec<usize>| -> Option<Option<usize>> {
            match slot[..] {
                [] => Some(None),
                [p] => Some(Some(p)),
                _ => None,
            }
        };
        let (pa, pb, po) = (
            pos(&axis.inputs[0])?,
            pos(&axis.inputs[1])?,
            pos(&axis.outputs[0])?,
        );
        let ga = pa.map(|p| a.0[p].clone());
        let gb = pb.map(|p| b.0[p].clone());
        let group = match (ga, gb) {
            (Some(x), Some(y)) if x == y => x,
            (Some(x), None) | (None, Some(x)) => {
                // Present in one input only: summing over it is not attention unless unit.
                if po.is_none() && !x.is_empty() {
                    return None;
                }
                x
            }
            (None, None) => vec![],
            _ => return None,
        };
        match po {
            Some(p) => out[p] = Some(group),
            None => summed.extend(group.iter().map(|a| a.0)),
        }
    }
    Some((Layout(out.into_iter().collect::<Option<Vec<_>>>()?), summed))
}

/// Replaces every matched attention block; returns how many.
pub(crate) fn fuse_attention(model: &mut TypedModel) -> TractResult<usize> {
    let mut patches = vec![];
    for node in &model.nodes {
        if node.op_is::<LastAxisSoftmax>()
            && let Some(patch) = match_block(model, node)?
        {
            patches.push(patch);
        }
    }
    let fused = patches.len();
    for patch in patches {
        patch.apply(model)?;
    }
    Ok(fused)
}

fn match_block(model: &TypedModel, softmax: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
    let scores_fact = model.outlet_fact(softmax.inputs[0])?;
    if scores_fact.rank() != 4 || scores_fact.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let Some(heads) = scores_fact.shape[1].as_i64().map(|h| h as usize) else {
        return Ok(None);
    };
    // Scores: q·kᵀ, plus a bias or not.
    let mut scores = model.node(softmax.inputs[0].node);
    let mut bias = None;
    if scores
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.is::<Add>())
    {
        let (l, r) = (scores.inputs[0], scores.inputs[1]);
        let (qk, b) = if model.node(l.node).op_is::<EinSum>() {
            (l, r)
        } else {
            (r, l)
        };
        let b_fact = model.outlet_fact(b)?;
        if b_fact.datum_type != f32::datum_type()
            || b_fact.rank() != 4
            || model.outlet_fact(qk)?.shape != scores_fact.shape
            || (0..4).any(|i| !b_fact.shape[i].is_one() && b_fact.shape[i] != scores_fact.shape[i])
        {
            return Ok(None);
        }
        bias = Some(b);
        scores = model.node(qk.node);
    }
    let Some(qk_op) = scores.op_as::<EinSum>() else {
        return Ok(None);
    };
    if qk_op.q_params.is_some() || scores.inputs.len() != 2 {
        return Ok(None);
    }
    // Which input gives the query positions is the EinSum's business: try both.
    let mut qk = None;
    for (qi, ki) in [(0, 1), (1, 0)] {
        let (Some(q), Some(k)) = (
            trace_projection(model, scores.inputs[qi], heads, Atom::Query),
            trace_projection(model, scores.inputs[ki], heads, Atom::Key),
        ) else {
            continue;
        };
        let (a, b) = if qi == 0 { (&q.1, &k.1) } else { (&k.1, &q.1) };
        if let Some((layout, summed)) = einsum_layout(qk_op, a, b)
            && summed == [Atom::Depth]
            && (0..4).map(|i| layout.atoms(i)).collect::<Vec<_>>()
                == [
                    vec![Atom::Batch],
                    vec![Atom::Head],
                    vec![Atom::Query],
                    vec![Atom::Key],
                ]
        {
            qk = Some((q, k, layout));
        }
    }
    let Some(((q, _, q_scale), (k, _, k_scale), probs_layout)) = qk else {
        return Ok(None);
    };
    // Probabilities, maybe through `Where(IsNaN(p), 0, p)`, into the value product.
    let [out] = &softmax.outputs[..] else {
        return Ok(None);
    };
    let users: Vec<&TypedNode> = out.successors.iter().map(|s| model.node(s.node)).collect();
    let (pv, probs, nan_to_zero) = match users[..] {
        [pv] => (pv, OutletId::from(softmax.id), false),
        [a, b] => {
            let (isnan, iff) = if a.op_is::<Iff>() { (b, a) } else { (a, b) };
            if !isnan
                .op_as::<ElementWiseOp>()
                .is_some_and(|op| op.0.is::<IsNan>())
                || !iff.op_is::<Iff>()
                || iff.inputs[..] != [isnan.id.into(), iff.inputs[1], softmax.id.into()]
                || const_input(model, iff, 1) != Some(0.0)
                || sole_successor(model, isnan).map(|n| n.id) != Some(iff.id)
            {
                return Ok(None);
            }
            let Some(pv) = sole_successor(model, iff) else {
                return Ok(None);
            };
            (pv, OutletId::from(iff.id), true)
        }
        _ => return Ok(None),
    };
    if !pv.op_is::<EinSum>() || pv.inputs.len() != 2 {
        return Ok(None);
    }
    let pv_op = pv.op_as::<EinSum>().unwrap();
    if pv_op.q_params.is_some() {
        return Ok(None);
    }
    let (p_ix, v_ix) = if pv.inputs[0] == probs {
        (0, 1)
    } else {
        (1, 0)
    };
    if pv.inputs[p_ix] != probs {
        return Ok(None);
    }
    let Some((v, v_layout, v_scale)) = trace_projection(model, pv.inputs[v_ix], heads, Atom::Key)
    else {
        return Ok(None);
    };
    let (a, b) = if p_ix == 0 {
        (&probs_layout, &v_layout)
    } else {
        (&v_layout, &probs_layout)
    };
    let Some((out_layout, summed)) = einsum_layout(pv_op, a, b) else {
        return Ok(None);
    };
    let want = [Atom::Batch, Atom::Query, Atom::Head, Atom::Depth];
    if v_scale != 1.0
        || summed != [Atom::Key]
        || out_layout.0.len() != 4
        || (0..4).any(|i| out_layout.atoms(i) != [want[i]])
    {
        return Ok(None);
    }
    // Q, K and V must agree on the shapes the op reads them with.
    let (qf, kf, vf) = (
        model.outlet_fact(q)?,
        model.outlet_fact(k)?,
        model.outlet_fact(v)?,
    );
    if qf.shape != kf.shape || kf.shape != vf.shape {
        return Ok(None);
    }
    let op = FusedAttention {
        heads,
        q_scale_bits: q_scale.to_bits(),
        k_scale_bits: k_scale.to_bits(),
        has_bias: bias.is_some(),
        nan_to_zero,
    };
    let mut patch = TypedModelPatch::default();
    let mut inputs = vec![
        patch.tap_model(model, q)?,
        patch.tap_model(model, k)?,
        patch.tap_model(model, v)?,
    ];
    if let Some(b) = bias {
        inputs.push(patch.tap_model(model, b)?);
    }
    let fused_fact = op.output_facts(&[qf])?.remove(0);
    if fused_fact.shape != model.outlet_fact(pv.id.into())?.shape {
        return Ok(None);
    }
    let fused = patch.wire_node(format!("{}.fused_attention", pv.name), op, &inputs)?;
    patch.shunt_outside(model, pv.id.into(), fused[0])?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain f64 attention: `softmax((q·sq)(k·sk)ᵀ + bias) v`, bias `[batch, 1, seq, kseq]`.
    fn reference(
        s: &Shape,
        sq: f32,
        sk: f32,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        bias: &[f32],
    ) -> Vec<f64> {
        let (d, w) = (s.depth, s.heads * s.depth);
        let mut out = vec![0f64; s.batch * s.seq * w];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..s.seq {
                    let scores: Vec<f64> = (0..s.kseq)
                        .map(|j| {
                            let dot: f64 = (0..d)
                                .map(|x| {
                                    (q[(b * s.seq + i) * w + h * d + x] * sq) as f64
                                        * (k[(b * s.kseq + j) * w + h * d + x] * sk) as f64
                                })
                                .sum();
                            dot + bias[(b * s.seq + i) * s.kseq + j] as f64
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for x in 0..d {
                        out[((b * s.seq + i) * s.heads + h) * d + x] = (0..s.kseq)
                            .map(|j| e[j] / sum * v[(b * s.kseq + j) * w + h * d + x] as f64)
                            .sum();
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919) % 211) as f32 / 105.0 - 1.0)
            .collect()
    }

    #[test]
    fn fused_attention_matches_plain_attention() {
        // Odd sizes: rows past a block of 16, keys past a block of 8, depth past a block of 16.
        for (batch, seq, heads, depth) in [(2, 21, 3, 20), (1, 1, 2, 16), (3, 37, 2, 32)] {
            let s = Shape {
                batch,
                seq,
                kseq: seq,
                heads,
                depth,
            };
            let n = batch * seq * heads * depth;
            let (q, k, v) = (values(n, 1), values(n, 2), values(n, 3));
            // Mask the last two keys of text 0, as an attention mask's bias does.
            let mut bias = vec![0f32; batch * seq * seq];
            for i in 0..seq {
                for j in seq.saturating_sub(2).max(1)..seq {
                    bias[i * seq + j] = f32::MIN;
                }
            }
            let mut out = vec![0f32; n];
            let scales = Scales {
                q: 0.42,
                k: 0.42,
                nan_to_zero: true,
            };
            attend(
                &s,
                scales,
                &q,
                &k,
                &v,
                Some((&bias, [seq * seq, 0, seq, 1])),
                &mut out,
            );
            let want = reference(&s, 0.42, 0.42, &q, &k, &v, &bias);
            let worst = out
                .iter()
                .zip(&want)
                .map(|(g, w)| (*g as f64 - w).abs())
                .fold(0f64, f64::max);
            assert!(
                worst < 2e-6,
                "{batch}×{seq}×{heads}×{depth}: worst {worst:e}"
            );
        }
    }

    #[test]
    fn texts_spread_over_a_thread_pool_give_identical_outputs() {
        use tract_linalg::multithread::{Executor, multithread_tract_scope};
        let s = Shape {
            batch: 5,
            seq: 19,
            kseq: 19,
            heads: 2,
            depth: 32,
        };
        let n = 5 * 19 * 64;
        let (q, k, v) = (values(n, 4), values(n, 5), values(n, 6));
        let bias = values(5 * 19 * 19, 7);
        let scales = Scales {
            q: 0.5,
            k: 0.5,
            nan_to_zero: true,
        };
        let run = || {
            let mut out = vec![0f32; n];
            attend(
                &s,
                scales,
                &q,
                &k,
                &v,
                Some((&bias, [361, 0, 19, 1])),
                &mut out,
            );
            out
        };
        let alone = multithread_tract_scope(Executor::SingleThread, run);
        let pooled = multithread_tract_scope(Executor::multithread(2), run);
        assert!(
            alone
                .iter()
                .zip(&pooled)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn a_row_with_an_infinite_score_follows_the_graphs_nan_rule() {
        let s = Shape {
            batch: 1,
            seq: 3,
            kseq: 3,
            heads: 1,
            depth: 16,
        };
        let (q, k, v) = (values(48, 1), values(48, 2), values(48, 3));
        let mut bias = vec![0f32; 9];
        bias[4] = f32::INFINITY; // row 1: softmax is NaN
        for (nan_to_zero, check) in [(true, 0.0f32), (false, f32::NAN)] {
            let mut out = vec![7f32; 48];
            let scales = Scales {
                q: 1.0,
                k: 1.0,
                nan_to_zero,
            };
            attend(
                &s,
                scales,
                &q,
                &k,
                &v,
                Some((&bias, [9, 0, 3, 1])),
                &mut out,
            );
            let row1 = &out[16..32];
            assert!(
                row1.iter().all(|x| x.to_bits() == check.to_bits()),
                "{row1:?}"
            );
            assert!(
                out[..16]
                    .iter()
                    .chain(&out[32..])
                    .all(|x| x.is_finite() && *x != 7.0)
            );
        }
    }

    fn layout(groups: &[&[Atom]]) -> Vec<Vec<Atom>> {
        groups.iter().map(|g| g.to_vec()).collect()
    }

    #[test]
    fn layouts_follow_the_key_transposes_of_a_torch_export() {
        let scope = SymbolScope::default();
        let (b, s) = (scope.sym("batch"), scope.sym("sequence"));
        let fact = f32::fact([b.to_dim(), s.to_dim(), 384.to_dim()]);
        let start = Layout::projection(&fact, 12, Atom::Key).unwrap();
        let dims = |v: &[TDim]| v.iter().cloned().collect::<TVec<_>>();
        let bd = b.to_dim();
        // view → transpose(1, 2) → merge batch and heads → transpose → split again.
        let ops = [
            AxisOp::Reshape(2, dims(&[384.into()]), dims(&[12.into(), 32.into()])),
            AxisOp::Move(2, 1),
            AxisOp::Reshape(0, dims(&[bd.clone(), 12.into()]), dims(&[bd.clone() * 12])),
            AxisOp::Move(2, 1),
            AxisOp::Reshape(0, dims(&[bd.clone() * 12]), dims(&[bd.clone(), 12.into()])),
        ];
        let end = ops.iter().fold(start, |l, op| l.apply(op).unwrap());
        let atoms: Vec<Vec<Atom>> = (0..end.0.len()).map(|i| end.atoms(i)).collect();
        use Atom::*;
        assert_eq!(atoms, layout(&[&[Batch], &[Head], &[Depth], &[Key]]));
        // Splitting 384 as 32 × 12 would mix heads and depths: no layout.
        let start = Layout::projection(&fact, 12, Atom::Key).unwrap();
        let wrong = AxisOp::Reshape(2, dims(&[384.into()]), dims(&[32.into(), 12.into()]));
        assert!(start.apply(&wrong).is_none());
    }
}
