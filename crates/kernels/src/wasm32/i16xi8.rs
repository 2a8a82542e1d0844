//! The integer projections' SIMD128 copy: `i32x4.dot_i16x8_s`, i16 × i16 → i32 pairwise sums,
//! WebAssembly's `vpmaddwd`.
//!
//! The packed panel holds each feature's pair `(q[2p][f], q[2p+1][f])` side by side, the layout
//! this instruction reads: one vector is 4 features' pairs, and its dot with the activations'
//! pair in every lane gives those 4 features' partial sums. The sums are exact i32, the portable
//! loop's to the bit.

use crate::generic::i16xi8::{BLOCK, Operands, Output};
use core::arch::wasm32::*;

/// The largest |x|: NaN if any is NaN (`f32x4.max` propagates it), infinite if any is.
pub(crate) fn abs_max_simd128(x: &[f32]) -> f32 {
    let mut max = f32x4_splat(0.0);
    let mut chunks = x.chunks_exact(4);
    for c in &mut chunks {
        // SAFETY: a chunk is 4 f32.
        let v = unsafe { v128_load(c.as_ptr() as *const v128) };
        max = f32x4_max(max, f32x4_abs(v));
    }
    let lanes = [
        f32x4_extract_lane::<0>(max),
        f32x4_extract_lane::<1>(max),
        f32x4_extract_lane::<2>(max),
        f32x4_extract_lane::<3>(max),
    ];
    let mut m = 0f32;
    for v in lanes
        .into_iter()
        .chain(chunks.remainder().iter().map(|v| v.abs()))
    {
        if v.is_nan() {
            return f32::NAN;
        }
        m = m.max(v);
    }
    m
}

/// `q = round_ties_even(x · inv)`, in range by construction: 8 values a step, rounded
/// (`f32x4.nearest`: ties to even), converted and narrowed to i16.
pub(crate) fn quantise_row_simd128(x: &[f32], inv: f32, q: &mut [i16]) {
    let k = x.len().min(q.len());
    let vinv = f32x4_splat(inv);
    let whole = k / 8 * 8;
    for (x, q) in x[..whole]
        .chunks_exact(8)
        .zip(q[..whole].chunks_exact_mut(8))
    {
        // SAFETY: 8 f32 in, 8 i16 out.
        unsafe {
            let lo = v128_load(x.as_ptr() as *const v128);
            let hi = v128_load(x.as_ptr().add(4) as *const v128);
            let lo = i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(lo, vinv)));
            let hi = i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(hi, vinv)));
            v128_store(q.as_mut_ptr() as *mut v128, i16x8_narrow_i32x4(lo, hi));
        }
    }
    for (q, x) in q[whole..k].iter_mut().zip(&x[whole..k]) {
        *q = (x * inv).round_ties_even() as i16;
    }
}

/// Features per tile: three vectors of 4 features, three accumulators a row.
const COLS: usize = 12;
/// Rows per tile: 9 accumulators, 3 weight vectors and the activations' pair, 13 of the 16 SIMD
/// registers x86-64 gives a JIT. 4 rows (16) measured slower, likely spilled: `embed` of 320
/// texts took 5.45 s against 4.49 s in Node 20 (V8) on a Zen 5.
const ROWS: usize = 3;

/// `R` rows from `row0` against features `col0 + part·COLS ..` of block `b`'s panel.
#[inline(always)]
unsafe fn tile<const R: usize>(
    op: &Operands,
    panel: &[i16],
    row0: usize,
    part: usize,
    col0: usize,
    out: Output,
) {
    let w = op.weights;
    let pairs = w.k_even / 2;
    let mut acc = [[i32x4_splat(0); 3]; R];
    let a = op.a.as_ptr();
    for p in 0..pairs {
        // SAFETY: p < pairs, rows < m, part < BLOCK / COLS: within the panel and the rows.
        unsafe {
            let b = panel.as_ptr().add(p * BLOCK * 2 + part * COLS * 2);
            let b0 = v128_load(b as *const v128);
            let b1 = v128_load(b.add(8) as *const v128);
            let b2 = v128_load(b.add(16) as *const v128);
            for (r, acc) in acc.iter_mut().enumerate() {
                // (x[2p], x[2p+1]) in every pair of lanes, against each feature's pair.
                let x = v128_load32_splat(a.add((row0 + r) * w.k_even + 2 * p) as *const u32);
                acc[0] = i32x4_add(acc[0], i32x4_dot_i16x8(b0, x));
                acc[1] = i32x4_add(acc[1], i32x4_dot_i16x8(b1, x));
                acc[2] = i32x4_add(acc[2], i32x4_dot_i16x8(b2, x));
            }
        }
    }
    let first = col0 + part * COLS;
    if first >= w.n {
        return;
    }
    let width = COLS.min(w.n - first);
    for (r, acc) in acc.into_iter().enumerate() {
        if width == COLS {
            // SAFETY: this task's columns of row row0 + r < m, all COLS of them below n.
            unsafe { store(op, row0 + r, first, acc, out) };
            continue;
        }
        let mut sums = [0i32; COLS];
        for (j, v) in acc.into_iter().enumerate() {
            // SAFETY: 4 lanes into 4 slots of 12.
            unsafe { v128_store(sums.as_mut_ptr().add(4 * j) as *mut v128, v) };
        }
        // SAFETY: this task's columns of row row0 + r < m.
        unsafe { op.store_portable(row0 + r, first, &sums[..width], out) };
    }
}

/// `store_portable` for a whole tile row, four features a step, in its order of operations
/// (`sum · (token scale · feature scale)`, then the bias, then the residual), so the values are
/// the same to the bit.
///
/// # Safety
/// Row `row` < m, features `col0 .. col0 + COLS` < n, and they are this task's.
#[inline(always)]
unsafe fn store(op: &Operands, row: usize, col0: usize, sums: [v128; 3], out: Output) {
    let w = op.weights;
    let ts = f32x4_splat(op.token_scales[row]);
    for (j, sum) in sums.into_iter().enumerate() {
        let col = col0 + 4 * j;
        // SAFETY: col + 4 <= n, as the caller promises, for the scales, bias, residual and y.
        unsafe {
            let scale = f32x4_mul(ts, v128_load(w.scales.as_ptr().add(col) as *const v128));
            let mut v = f32x4_mul(f32x4_convert_i32x4(sum), scale);
            if let Some(bias) = op.bias {
                v = f32x4_add(v, v128_load(bias.as_ptr().add(col) as *const v128));
            }
            if let Some(r) = op.residual {
                v = f32x4_add(v, v128_load(r.as_ptr().add(row * w.n + col) as *const v128));
            }
            v128_store(out.y.add(row * out.n + col) as *mut v128, v);
        }
    }
}

/// # Safety
/// No other task writes block `b`'s columns of `out`. (SIMD128 itself is fixed at compile
/// time: a runtime without it refuses the module.)
pub(crate) unsafe fn block_simd128(op: &Operands, b: usize, out: Output) {
    let mut scratch = Vec::new();
    let panel = op.panel16(b, &mut scratch);
    let col0 = b * BLOCK;
    for part in 0..BLOCK / COLS {
        let mut row = 0;
        // SAFETY: rows stay below m; block b's columns are this task's.
        unsafe {
            while row + ROWS <= op.m {
                tile::<ROWS>(op, panel, row, part, col0, out);
                row += ROWS;
            }
            match op.m - row {
                0 => {}
                1 => tile::<1>(op, panel, row, part, col0, out),
                _ => tile::<2>(op, panel, row, part, col0, out),
            }
        }
    }
}
