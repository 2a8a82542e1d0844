//! The 8-bit-activation projections' AVX-512 VNNI copy (`vpdpbusd`).

use crate::generic::i16xi8::{Output, lanes_below};
use crate::generic::u8xi8::{BLOCK, Operands, ROWS};
use std::arch::x86_64::*;

/// `q = clamp(round_ties_even(x · inv) + zero, 0, 255)` for the first `x.len()` values of `q`.
///
/// # Safety
/// AVX-512F and BW are available.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn quantise_row(x: &[f32], inv: f32, zero: i32, q: &mut [u8]) {
    let k = x.len().min(q.len());
    let vinv = _mm512_set1_ps(inv);
    let zero = _mm512_set1_epi32(zero);
    let floor = _mm512_setzero_si512();
    let mut i = 0;
    while i < k {
        let mask: __mmask16 = lanes_below(i, k);
        // SAFETY: the mask keeps loads and stores within the first k elements.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
            // Round to nearest even (the default rounding mode), as `round_ties_even`; the
            // unsigned saturating store clamps at 255, the max at 0.
            let n = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, vinv)), zero);
            let n = _mm512_max_epi32(n, floor);
            _mm512_mask_cvtusepi32_storeu_epi8(q.as_mut_ptr().add(i) as *mut i8, mask, n);
        }
        i += 16;
    }
}

/// The least and the largest of `x`, both NaN if any is NaN.
///
/// # Safety
/// AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn min_max(x: &[f32]) -> (f32, f32) {
    let mut lo = _mm512_set1_ps(f32::INFINITY);
    let mut hi = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut nan: __mmask16 = 0;
    let mut i = 0;
    while i < x.len() {
        let mask: __mmask16 = lanes_below(i, x.len());
        // SAFETY: the mask keeps loads within x.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
            nan |= _mm512_mask_cmp_ps_mask(mask, v, v, _CMP_UNORD_Q);
            lo = _mm512_mask_min_ps(lo, mask, lo, v);
            hi = _mm512_mask_max_ps(hi, mask, hi, v);
        }
        i += 16;
    }
    match nan {
        0 => (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi)),
        _ => (f32::NAN, f32::NAN),
    }
}

/// `R` rows from `row0` against block `b`'s panel.
#[inline(always)]
unsafe fn tile<const R: usize>(op: &Operands, panel: &[i8], row0: usize, col0: usize, out: Output) {
    let w = op.w;
    // SAFETY: the callers run with AVX-512F.
    let mut acc = [[unsafe { _mm512_setzero_si512() }; 3]; R];
    let a = op.a.as_ptr();
    let bp = panel.as_ptr();
    for p in 0..w.k4 / 4 {
        // SAFETY: p < k4 / 4, rows < m: within the panel and the quantised rows.
        unsafe {
            let b = bp.add(p * BLOCK * 4);
            let b0 = _mm512_loadu_si512(b as *const _);
            let b1 = _mm512_loadu_si512(b.add(64) as *const _);
            let b2 = _mm512_loadu_si512(b.add(128) as *const _);
            for (r, acc) in acc.iter_mut().enumerate() {
                let quad = (a.add((row0 + r) * w.k4 + 4 * p) as *const i32).read_unaligned();
                let x = _mm512_set1_epi32(quad);
                acc[0] = _mm512_dpbusd_epi32(acc[0], x, b0);
                acc[1] = _mm512_dpbusd_epi32(acc[1], x, b1);
                acc[2] = _mm512_dpbusd_epi32(acc[2], x, b2);
            }
        }
    }
    // The outlier channels, in i16 pairs at the same step, into the same sums.
    let a16 = op.a16.as_ptr();
    let bp16 = op.panel16(col0 / BLOCK).as_ptr();
    for p in 0..w.o_even / 2 {
        // SAFETY: p < o_even / 2, rows < m: within the panel and the outlier rows.
        unsafe {
            let b = bp16.add(p * BLOCK * 2);
            let b0 = _mm512_loadu_si512(b as *const _);
            let b1 = _mm512_loadu_si512(b.add(32) as *const _);
            let b2 = _mm512_loadu_si512(b.add(64) as *const _);
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = (a16.add((row0 + r) * w.o_even + 2 * p) as *const i32).read_unaligned();
                let x = _mm512_set1_epi32(pair);
                acc[0] = _mm512_dpwssd_epi32(acc[0], x, b0);
                acc[1] = _mm512_dpwssd_epi32(acc[1], x, b1);
                acc[2] = _mm512_dpwssd_epi32(acc[2], x, b2);
            }
        }
    }
    for (r, sums) in acc.into_iter().enumerate() {
        let row = row0 + r;
        // SAFETY: the callers run with AVX-512F.
        let ts = unsafe { _mm512_set1_ps(op.token_scales[row]) };
        for (c, sum) in sums.into_iter().enumerate() {
            let col = col0 + 16 * c;
            if col >= w.n {
                break;
            }
            let mask: __mmask16 = lanes_below(col, w.n);
            // SAFETY: masked to columns below n of row < m; this task's columns. The same
            // operations in the same order as `Operands::value`.
            unsafe {
                let zero = _mm512_mullo_epi32(
                    _mm512_set1_epi32(op.zeros[row]),
                    _mm512_maskz_loadu_epi32(mask, w.col_sums.as_ptr().add(col)),
                );
                let corrected = _mm512_sub_epi32(sum, zero);
                let scale =
                    _mm512_mul_ps(ts, _mm512_maskz_loadu_ps(mask, w.scales.as_ptr().add(col)));
                let mut v = _mm512_mul_ps(_mm512_cvtepi32_ps(corrected), scale);
                if let Some(bias) = op.bias {
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(col)));
                }
                if let Some(res) = op.residual {
                    let at = res.as_ptr().add(row * w.n + col);
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, at));
                }
                _mm512_mask_storeu_ps(out.y.add(row * out.n + col), mask, v);
            }
        }
    }
}

/// # Safety
/// AVX-512 VNNI is available, and no other task writes block `b`'s columns of `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn block_vnni(op: &Operands, b: usize, out: Output) {
    let panel = op.panel(b);
    let col0 = b * BLOCK;
    let mut row = 0;
    // SAFETY (all tiles): rows stay below m; block b's columns are this task's.
    unsafe {
        while row + ROWS <= op.m {
            tile::<ROWS>(op, panel, row, col0, out);
            row += ROWS;
        }
        match op.m - row {
            0 => {}
            1 => tile::<1>(op, panel, row, col0, out),
            2 => tile::<2>(op, panel, row, col0, out),
            3 => tile::<3>(op, panel, row, col0, out),
            4 => tile::<4>(op, panel, row, col0, out),
            5 => tile::<5>(op, panel, row, col0, out),
            6 => tile::<6>(op, panel, row, col0, out),
            _ => tile::<7>(op, panel, row, col0, out),
        }
    }
}
