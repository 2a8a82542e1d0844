//! The integer projections' AVX-512 (VNNI `vpdpwssd`, BW `vpmaddwd`) and AVX2 (`vpmaddwd`)
//! copies. Each computes the same i32 sums and the same f32 epilogue as the portable loop.

use crate::generic::i16xi8::{BLOCK, Operands, Output, ROWS, lanes_below};
use std::arch::x86_64::*;

#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn abs_max_avx512(x: &[f32]) -> f32 {
    let mut max = _mm512_setzero_ps();
    let mut nan: __mmask16 = 0;
    let mut i = 0;
    while i < x.len() {
        let mask: __mmask16 = lanes_below(i, x.len());
        // SAFETY: the mask keeps the load within x.
        let v = unsafe { _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i)) };
        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        max = _mm512_max_ps(max, _mm512_abs_ps(v));
        i += 16;
    }
    if nan != 0 {
        return f32::NAN;
    }
    _mm512_reduce_max_ps(max)
}

#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn quantise_row_avx512(x: &[f32], inv: f32, q: &mut [i16]) {
    let k = x.len().min(q.len());
    let vinv = _mm512_set1_ps(inv);
    let mut i = 0;
    while i < k {
        let mask: __mmask16 = lanes_below(i, k);
        // SAFETY: the mask keeps loads and stores within the first k elements.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
            // Round to nearest even (the default rounding mode), as `round_ties_even`.
            let n = _mm512_cvtps_epi32(_mm512_mul_ps(v, vinv));
            _mm512_mask_cvtsepi32_storeu_epi16(q.as_mut_ptr().add(i), mask, n);
        }
        i += 16;
    }
}

/// Features `col0 + 16·c ..` of one row from three vectors of sums.
#[inline(always)]
unsafe fn store_avx512(op: &Operands, row: usize, col0: usize, sums: [__m512i; 3], out: Output) {
    let w = op.weights;
    // SAFETY: the callers run with AVX-512F.
    let ts = unsafe { _mm512_set1_ps(op.token_scales[row]) };
    for (c, sum) in sums.into_iter().enumerate() {
        let col = col0 + 16 * c;
        if col >= w.n {
            break;
        }
        let mask: __mmask16 = lanes_below(col, w.n);
        // SAFETY: masked to columns below n of row < m; this task's columns.
        unsafe {
            let scale = _mm512_mul_ps(ts, _mm512_maskz_loadu_ps(mask, w.scales.as_ptr().add(col)));
            let mut v = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), scale);
            if let Some(bias) = op.bias {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(col)));
            }
            if let Some(r) = op.residual {
                let at = r.as_ptr().add(row * w.n + col);
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, at));
            }
            _mm512_mask_storeu_ps(out.y.add(row * out.n + col), mask, v);
        }
    }
}

/// `R` rows from `row0` against the panel: the sums of each row's pairs with each feature's.
#[inline(always)]
unsafe fn tile_avx512<const R: usize, const VNNI: bool>(
    op: &Operands,
    panel: &[i16],
    row0: usize,
    col0: usize,
    out: Output,
) {
    let k_even = op.weights.k_even;
    let pairs = k_even / 2;
    // SAFETY: the callers run with AVX-512F.
    let mut acc = [[unsafe { _mm512_setzero_si512() }; 3]; R];
    let a = op.a.as_ptr();
    let bp = panel.as_ptr();
    for p in 0..pairs {
        // SAFETY: p < pairs, rows < m: within the panel and the quantised rows.
        unsafe {
            let b = bp.add(p * BLOCK * 2);
            let b0 = _mm512_loadu_si512(b as *const _);
            let b1 = _mm512_loadu_si512(b.add(32) as *const _);
            let b2 = _mm512_loadu_si512(b.add(64) as *const _);
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = (a.add((row0 + r) * k_even + 2 * p) as *const i32).read_unaligned();
                let x = _mm512_set1_epi32(pair);
                if VNNI {
                    acc[0] = _mm512_dpwssd_epi32(acc[0], x, b0);
                    acc[1] = _mm512_dpwssd_epi32(acc[1], x, b1);
                    acc[2] = _mm512_dpwssd_epi32(acc[2], x, b2);
                } else {
                    acc[0] = _mm512_add_epi32(acc[0], _mm512_madd_epi16(x, b0));
                    acc[1] = _mm512_add_epi32(acc[1], _mm512_madd_epi16(x, b1));
                    acc[2] = _mm512_add_epi32(acc[2], _mm512_madd_epi16(x, b2));
                }
            }
        }
    }
    for (r, sums) in acc.into_iter().enumerate() {
        // SAFETY: row0 + r < m; this task's columns.
        unsafe { store_avx512(op, row0 + r, col0, sums, out) };
    }
}

#[inline(always)]
unsafe fn block_avx512<const VNNI: bool>(op: &Operands, b: usize, out: Output) {
    let panel = op.panel(b);
    let col0 = b * BLOCK;
    let mut row = 0;
    // SAFETY (all tiles): rows stay below m; block b's columns are this task's.
    unsafe {
        while row + ROWS <= op.m {
            tile_avx512::<ROWS, VNNI>(op, panel, row, col0, out);
            row += ROWS;
        }
        match op.m - row {
            0 => {}
            1 => tile_avx512::<1, VNNI>(op, panel, row, col0, out),
            2 => tile_avx512::<2, VNNI>(op, panel, row, col0, out),
            3 => tile_avx512::<3, VNNI>(op, panel, row, col0, out),
            4 => tile_avx512::<4, VNNI>(op, panel, row, col0, out),
            5 => tile_avx512::<5, VNNI>(op, panel, row, col0, out),
            6 => tile_avx512::<6, VNNI>(op, panel, row, col0, out),
            _ => tile_avx512::<7, VNNI>(op, panel, row, col0, out),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn block_avx512vnni(op: &Operands, b: usize, out: Output) {
    // SAFETY: as the caller promises.
    unsafe { block_avx512::<true>(op, b, out) }
}

#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn block_avx512bw(op: &Operands, b: usize, out: Output) {
    // SAFETY: as the caller promises.
    unsafe { block_avx512::<false>(op, b, out) }
}

/// AVX2: 4 rows × 3 vectors of 8 features, over each half of the block in turn.
#[inline(always)]
unsafe fn tile_avx2<const R: usize>(
    op: &Operands,
    panel: &[i16],
    row0: usize,
    half: usize,
    col0: usize,
    out: Output,
) {
    let w = op.weights;
    let pairs = w.k_even / 2;
    // SAFETY: the callers run with AVX2.
    let mut acc = [[unsafe { _mm256_setzero_si256() }; 3]; R];
    let a = op.a.as_ptr();
    for p in 0..pairs {
        // SAFETY: within the panel and the quantised rows.
        unsafe {
            let b = panel.as_ptr().add(p * BLOCK * 2 + half * BLOCK);
            let b0 = _mm256_loadu_si256(b as *const _);
            let b1 = _mm256_loadu_si256(b.add(16) as *const _);
            let b2 = _mm256_loadu_si256(b.add(32) as *const _);
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = (a.add((row0 + r) * w.k_even + 2 * p) as *const i32).read_unaligned();
                let x = _mm256_set1_epi32(pair);
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(x, b0));
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(x, b1));
                acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(x, b2));
            }
        }
    }
    let first = col0 + half * (BLOCK / 2);
    for (r, vectors) in acc.into_iter().enumerate() {
        let mut sums = [0i32; BLOCK / 2];
        for (c, v) in vectors.into_iter().enumerate() {
            // SAFETY: 8 lanes into 8 slots.
            unsafe { _mm256_storeu_si256(sums.as_mut_ptr().add(8 * c) as *mut _, v) };
        }
        if first < w.n {
            let width = (BLOCK / 2).min(w.n - first);
            // SAFETY: this task's columns of row row0 + r < m.
            unsafe { op.store_portable(row0 + r, first, &sums[..width], out) };
        }
    }
}

#[target_feature(enable = "avx2")]
pub(crate) unsafe fn block_avx2(op: &Operands, b: usize, out: Output) {
    let panel = op.panel(b);
    let col0 = b * BLOCK;
    for half in 0..2 {
        let mut row = 0;
        // SAFETY: rows stay below m; block b's columns are this task's.
        unsafe {
            while row + 4 <= op.m {
                tile_avx2::<4>(op, panel, row, half, col0, out);
                row += 4;
            }
            match op.m - row {
                0 => {}
                1 => tile_avx2::<1>(op, panel, row, half, col0, out),
                2 => tile_avx2::<2>(op, panel, row, half, col0, out),
                _ => tile_avx2::<3>(op, panel, row, half, col0, out),
            }
        }
    }
}
