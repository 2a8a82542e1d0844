//! The integer projections' AVX-512 (VNNI `vpdpwssd`, BW `vpmaddwd`) and AVX2 (`vpmaddwd`)
//! copies. Each computes the same i32 sums and the same f32 epilogue as the portable loop.

use crate::generic::i16xi8::{BLOCK, Operands, Output, Panel, ROWS, lanes_below};
use std::arch::asm;
use std::arch::x86_64::*;

/// `acc + Σ pairs x·b`: one `vpdpwssd`. Written as `asm!` because LLVM's machine combiner
/// turns the intrinsic into `vpmaddwd` + `vpaddd` unless it tunes for a CPU it knows runs it
/// fast (llvm/llvm-project#84182), and we build for generic x86-64: the 768×384×1536 projection
/// bench took 5.57 ms split (as long as AVX-512BW's own two instructions) on a Zen 4.
///
/// # Safety
/// AVX-512F and VNNI are available.
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
pub(crate) unsafe fn dpwssd(mut acc: __m512i, x: __m512i, b: __m512i) -> __m512i {
    // SAFETY: register operands only; the callers run with AVX-512 VNNI.
    unsafe {
        asm!(
            "vpdpwssd {acc}, {x}, {b}",
            acc = inout(zmm_reg) acc,
            x = in(zmm_reg) x,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn abs_max_avx512(x: &[f32]) -> f32 {
    // Four running maxima: one would wait on each `vmaxps` in turn (it ran at a third of the
    // rate of the rounding pass that follows it).
    let mut max = [_mm512_setzero_ps(); 4];
    let mut nan: __mmask16 = 0;
    let p = x.as_ptr();
    let mut i = 0;
    while i + 64 <= x.len() {
        for (j, m) in max.iter_mut().enumerate() {
            // SAFETY: i + 64 <= len.
            let v = unsafe { _mm512_loadu_ps(p.add(i + 16 * j)) };
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            *m = _mm512_max_ps(*m, _mm512_abs_ps(v));
        }
        i += 64;
    }
    while i < x.len() {
        let mask: __mmask16 = lanes_below(i, x.len());
        // SAFETY: the mask keeps the load within x.
        let v = unsafe { _mm512_maskz_loadu_ps(mask, p.add(i)) };
        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        max[0] = _mm512_max_ps(max[0], _mm512_abs_ps(v));
        i += 16;
    }
    if nan != 0 {
        return f32::NAN;
    }
    let max = _mm512_max_ps(_mm512_max_ps(max[0], max[1]), _mm512_max_ps(max[2], max[3]));
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
                    acc[0] = dpwssd(acc[0], x, b0);
                    acc[1] = dpwssd(acc[1], x, b1);
                    acc[2] = dpwssd(acc[2], x, b2);
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
    let mut scratch = Vec::new();
    let panel = op.panel16(b, &mut scratch);
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

#[target_feature(enable = "avx2")]
pub(crate) unsafe fn abs_max_avx2(x: &[f32]) -> f32 {
    // Four running maxima, as in the AVX-512 copy; the tail past whole vectors is scalar.
    let mut max = [_mm256_setzero_ps(); 4];
    let mut nan = _mm256_setzero_ps();
    let sign = _mm256_set1_ps(-0.0);
    let p = x.as_ptr();
    let mut i = 0;
    while i + 32 <= x.len() {
        for (j, m) in max.iter_mut().enumerate() {
            // SAFETY: i + 32 <= len.
            let v = unsafe { _mm256_loadu_ps(p.add(i + 8 * j)) };
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
            *m = _mm256_max_ps(*m, _mm256_andnot_ps(sign, v));
        }
        i += 32;
    }
    while i + 8 <= x.len() {
        // SAFETY: i + 8 <= len.
        let v = unsafe { _mm256_loadu_ps(p.add(i)) };
        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        max[0] = _mm256_max_ps(max[0], _mm256_andnot_ps(sign, v));
        i += 8;
    }
    let tail = &x[i..];
    if _mm256_movemask_ps(nan) != 0 || tail.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    let max = _mm256_max_ps(_mm256_max_ps(max[0], max[1]), _mm256_max_ps(max[2], max[3]));
    let mut lanes = [0f32; 8];
    // SAFETY: 8 lanes into 8 slots.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), max) };
    lanes
        .into_iter()
        .chain(tail.iter().map(|v| v.abs()))
        .fold(0f32, f32::max)
}

#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantise_row_avx2(x: &[f32], inv: f32, q: &mut [i16]) {
    let k = x.len().min(q.len());
    let vinv = _mm256_set1_ps(inv);
    let mut i = 0;
    while i + 16 <= k {
        // SAFETY: i + 16 <= k, within both slices.
        unsafe {
            // Round to nearest even (the default rounding mode), as `round_ties_even`; the
            // values are within i16 by construction, so the saturating pack is exact.
            let lo = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), vinv));
            let hi =
                _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i + 8)), vinv));
            // `packs` interleaves 128-bit halves: put them back in order.
            let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(lo, hi));
            _mm256_storeu_si256(q.as_mut_ptr().add(i) as *mut _, packed);
        }
        i += 16;
    }
    for (q, x) in q[i..k].iter_mut().zip(&x[i..k]) {
        *q = (x * inv).round_ties_even() as i16;
    }
}

/// AVX2 columns per tile: two vectors of 8 features, a third of a block.
const AVX2_COLS: usize = 16;
/// AVX2 rows per tile: 6 rows × 2 vectors = 12 accumulators, 2 weight vectors and a broadcast
/// in the 16 registers. Each weight pair loaded feeds 12 `vpmaddwd`s (the earlier 4 × 3 tile fed
/// 4, and read the whole block's panel from L2 twice per tile).
const AVX2_ROWS: usize = 6;

/// Features `col` .. `col + 16` of one row from two vectors of sums, in the portable epilogue's
/// order of operations (no fused multiply-add, so the bits are the same).
#[inline(always)]
unsafe fn store_avx2(op: &Operands, row: usize, col: usize, sums: [__m256i; 2], out: Output) {
    let w = op.weights;
    if col + AVX2_COLS > w.n {
        let mut lanes = [0i32; AVX2_COLS];
        // SAFETY: 16 lanes into 16 slots; then this task's columns of row < m.
        unsafe {
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, sums[0]);
            _mm256_storeu_si256(lanes.as_mut_ptr().add(8) as *mut _, sums[1]);
            if col < w.n {
                op.store_portable(row, col, &lanes[..w.n - col], out);
            }
        }
        return;
    }
    // SAFETY: the callers run with AVX2; columns col..col + 16 < n of row < m, this task's.
    unsafe {
        let ts = _mm256_set1_ps(op.token_scales[row]);
        for (c, sum) in sums.into_iter().enumerate() {
            let at = col + 8 * c;
            let scale = _mm256_mul_ps(ts, _mm256_loadu_ps(w.scales.as_ptr().add(at)));
            let mut v = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), scale);
            if let Some(bias) = op.bias {
                v = _mm256_add_ps(v, _mm256_loadu_ps(bias.as_ptr().add(at)));
            }
            if let Some(r) = op.residual {
                v = _mm256_add_ps(v, _mm256_loadu_ps(r.as_ptr().add(row * w.n + at)));
            }
            _mm256_storeu_ps(out.y.add(row * out.n + at), v);
        }
    }
}

/// A panel's values as the AVX2 tiles load them: i16, or int8 widened in registers.
trait Avx2Panel: Copy {
    /// 16 features' pairs from `p`, as i16.
    ///
    /// # Safety
    /// AVX2 is available, and 32 values from `p` are readable.
    unsafe fn load_pairs(p: *const Self) -> [__m256i; 2];
}

impl Avx2Panel for i16 {
    #[inline(always)]
    unsafe fn load_pairs(p: *const i16) -> [__m256i; 2] {
        // SAFETY: as the caller promises.
        unsafe {
            [
                _mm256_loadu_si256(p as *const _),
                _mm256_loadu_si256(p.add(16) as *const _),
            ]
        }
    }
}

impl Avx2Panel for i8 {
    #[inline(always)]
    unsafe fn load_pairs(p: *const i8) -> [__m256i; 2] {
        // SAFETY: as the caller promises. `vpmovsxbw` widens 16 values: the same pairs, in the
        // same order, as the i16 panel's.
        unsafe {
            [
                _mm256_cvtepi8_epi16(_mm_loadu_si128(p as *const _)),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(16) as *const _)),
            ]
        }
    }
}

/// `R` rows from `row0` against a third of the panel (16 features from `col0 + 16 · third`).
#[inline(always)]
unsafe fn tile_avx2<const R: usize, T: Avx2Panel>(
    op: &Operands,
    panel: &[T],
    row0: usize,
    third: usize,
    col0: usize,
    out: Output,
) {
    let w = op.weights;
    let pairs = w.k_even / 2;
    // SAFETY: the callers run with AVX2.
    let mut acc = [[unsafe { _mm256_setzero_si256() }; 2]; R];
    // Each row's pairs as i32, found once (the loop then only steps one index).
    // SAFETY: rows row0 .. row0 + R are below m.
    let rows: [*const i32; R] =
        std::array::from_fn(|r| unsafe { op.a.as_ptr().add((row0 + r) * w.k_even) } as *const i32);
    // SAFETY: the third's columns of the panel.
    let mut b = unsafe { panel.as_ptr().add(third * AVX2_COLS * 2) };
    for p in 0..pairs {
        // SAFETY: within the panel (a row of the panel is BLOCK pairs) and the quantised rows.
        unsafe {
            let [b0, b1] = T::load_pairs(b);
            b = b.add(BLOCK * 2);
            for (acc, row) in acc.iter_mut().zip(rows) {
                let x = _mm256_set1_epi32(row.add(p).read_unaligned());
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(x, b0));
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(x, b1));
            }
        }
    }
    let col = col0 + third * AVX2_COLS;
    for (r, sums) in acc.into_iter().enumerate() {
        // SAFETY: row0 + r < m; this task's columns.
        unsafe { store_avx2(op, row0 + r, col, sums, out) };
    }
}

#[target_feature(enable = "avx2")]
pub(crate) unsafe fn block_avx2(op: &Operands, b: usize, out: Output) {
    // SAFETY (both): as the caller promises.
    match op.panel(b) {
        Panel::I8(panel) => unsafe { block_avx2_in(op, panel, b, out) },
        Panel::I16(panel) => unsafe { block_avx2_in(op, panel, b, out) },
    }
}

#[inline(always)]
unsafe fn block_avx2_in<T: Avx2Panel>(op: &Operands, panel: &[T], b: usize, out: Output) {
    let col0 = b * BLOCK;
    let thirds = (op.weights.n - col0)
        .div_ceil(AVX2_COLS)
        .min(BLOCK / AVX2_COLS);
    // Rows outer: a tile's 6 quantised rows stay in L1 for the block's three column thirds,
    // while the block's panel (18-74 KiB as int8, 36-147 KiB as i16) stays in L2 for every row.
    let mut row = 0;
    // SAFETY: rows stay below m; block b's columns are this task's.
    unsafe {
        while row + AVX2_ROWS <= op.m {
            for third in 0..thirds {
                tile_avx2::<AVX2_ROWS, T>(op, panel, row, third, col0, out);
            }
            row += AVX2_ROWS;
        }
        for third in 0..thirds {
            match op.m - row {
                0 => {}
                1 => tile_avx2::<1, T>(op, panel, row, third, col0, out),
                2 => tile_avx2::<2, T>(op, panel, row, third, col0, out),
                3 => tile_avx2::<3, T>(op, panel, row, third, col0, out),
                4 => tile_avx2::<4, T>(op, panel, row, third, col0, out),
                _ => tile_avx2::<5, T>(op, panel, row, third, col0, out),
            }
        }
    }
}
