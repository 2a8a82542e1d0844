//! The attention kernel's types and arithmetic, written once: every ISA copy compiles
//! [`attend_generic`] with its own target features.

// The kernels index lanes, keys and rows explicitly: fixed-size loops over small arrays are
// what the compiler keeps in vector registers.
#![allow(clippy::needless_range_loop)]

use crate::exp::exp;
use crate::madd;

/// The block's sizes: `batch` texts of `seq` query and `kseq` key positions, `heads` heads of
/// `depth` values.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub batch: usize,
    pub seq: usize,
    pub kseq: usize,
    pub heads: usize,
    pub depth: usize,
}

/// The scalars the scores are scaled by (`q` on the queries, `k` on the keys), and whether a
/// row of NaN probabilities becomes zeros (the graph's `IsNaN` guard).
#[derive(Debug, Clone, Copy)]
pub struct Scales {
    pub q: f32,
    pub k: f32,
    pub nan_to_zero: bool,
}

/// The additive score bias (the attention mask) and its strides, 0 along broadcast axes.
pub type Bias<'a> = Option<(&'a [f32], [usize; 4])>;

/// The op's inputs as slices: `q`, `k`, `v` `[batch, seq, heads * depth]`, and the bias with
/// its strides (0 along broadcast axes).
#[derive(Clone, Copy)]
pub(crate) struct Operands<'a> {
    pub(crate) q: &'a [f32],
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) bias: Bias<'a>,
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
pub(crate) fn attend_generic<const FMA: bool>(
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
        // Read across rows and write each depth's row in order: writing down a column of `qt`
        // (a store every `qpad` floats) stalled on the stores, a quarter of this kernel's time.
        let q_head = &q[b * s.seq * width + h * depth..];
        for d in 0..depth {
            let dst = &mut sc.qt[d * qpad..][..s.seq];
            for (i, dst) in dst.iter_mut().enumerate() {
                *dst = q_head[i * width + d] * scales.q;
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
            p[l] = exp(p[l] - max[l]);
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
