//! The 8-bit-activation projections' AArch64 copies: `SDOT` (dotprod) and `USMMLA` (i8mm).
//!
//! Rust's stable `std::arch` has NEON but not yet these two instructions' intrinsics, so each
//! is one `asm!` instruction on registers (no memory, no flags), which LLVM schedules like an
//! intrinsic.
//! - `SDOT` multiplies signed bytes: the activations' zero point comes off first
//!   (`xq ^ 0x80 = xq - 128`), so its sums are `Σ (xq - 128)·w`; the token's own zero point
//!   is corrected for after.
//! - `USMMLA` multiplies unsigned by signed bytes, as `vpdpbusd`: its sums are `Σ xq·w`, the
//!   portable loop's. It takes 2 rows × 8 values against 2 features × 8 values and adds the
//!   2 × 2 dot products into four lanes.

use crate::generic::i16xi8::Output;
use crate::generic::u8xi8::{BLOCK, Operands};
use std::arch::aarch64::*;
use std::arch::asm;

/// `acc[f] += Σ_j x[4f + j] · w[4f + j]` over signed bytes.
#[inline(always)]
unsafe fn sdot(mut acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    // SAFETY: register operands only; the callers run with dotprod.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.16b",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// `acc += [a0·b0, a0·b1, a1·b0, a1·b1]`, rows `a0, a1` (u8) and features `b0, b1` (i8) of 8
/// values each.
#[inline(always)]
unsafe fn usmmla(mut acc: int32x4_t, a: uint8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: register operands only; the callers run with i8mm.
    unsafe {
        asm!(
            "usmmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// SDOT: features per tile, four vectors of four (with 4 rows, 16 accumulators: six vectors
/// spilled registers, 82 instructions a step for 24 `SDOT`s).
const DOT_COLS: usize = 16;

/// `R` rows from `row0` against features `col0 + part·DOT_COLS ..`.
#[inline(always)]
unsafe fn tile_dot<const R: usize>(
    op: &Operands,
    panel: &[i8],
    row0: usize,
    part: usize,
    col0: usize,
    out: Output,
) {
    let w = op.w;
    // SAFETY: the callers run with NEON.
    let mut acc = [[unsafe { vdupq_n_s32(0) }; DOT_COLS / 4]; R];
    let a = op.a.as_ptr();
    for p in 0..w.k4 / 4 {
        // SAFETY: p < k4 / 4, rows < m: within the panel and the quantised rows.
        unsafe {
            let b = panel.as_ptr().add(p * BLOCK * 4 + part * DOT_COLS * 4);
            let bv = [0, 16, 32, 48].map(|o| vld1q_s8(b.add(o)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let quad = (a.add((row0 + r) * w.k4 + 4 * p) as *const u32).read_unaligned();
                let x = vreinterpretq_s8_u32(vdupq_n_u32(quad ^ 0x8080_8080));
                for (acc, &bv) in acc.iter_mut().zip(&bv) {
                    *acc = sdot(*acc, bv, x);
                }
            }
        }
    }
    let first = col0 + part * DOT_COLS;
    if first >= w.n {
        return;
    }
    let width = DOT_COLS.min(w.n - first);
    for (r, acc) in acc.into_iter().enumerate() {
        let mut sums = [0i32; DOT_COLS];
        for (j, v) in acc.into_iter().enumerate() {
            // SAFETY: 4 lanes into 4 slots of 16.
            unsafe { vst1q_s32(sums.as_mut_ptr().add(4 * j), v) };
        }
        for (f, &signed) in sums[..width].iter().enumerate() {
            let (row, col) = (row0 + r, first + f);
            let v = op.value_signed(row, col, signed);
            // SAFETY: row < m, col < n, and this task's column.
            unsafe { *out.y.add(row * out.n + col) = v };
        }
    }
}

/// # Safety
/// NEON and dotprod are available, and no other task writes block `b`'s columns of `out`.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn block_dotprod(op: &Operands, b: usize, out: Output) {
    let panel = op.panel(b);
    let col0 = b * BLOCK;
    for part in 0..BLOCK / DOT_COLS {
        let mut row = 0;
        // SAFETY: rows stay below m; block b's columns are this task's.
        unsafe {
            while row + 4 <= op.m {
                tile_dot::<4>(op, panel, row, part, col0, out);
                row += 4;
            }
            match op.m - row {
                0 => {}
                1 => tile_dot::<1>(op, panel, row, part, col0, out),
                2 => tile_dot::<2>(op, panel, row, part, col0, out),
                _ => tile_dot::<3>(op, panel, row, part, col0, out),
            }
        }
    }
}

/// USMMLA: rows per tile (two pairs) and features (eight pairs).
const MM_ROWS: usize = 4;
const MM_COLS: usize = 16;

/// Rows `row0 .. row0 + 4` (those past `m` repeat the last row, and are not stored) against
/// features `col0 + part·MM_COLS ..`.
#[inline(always)]
unsafe fn tile_mm(op: &Operands, panel: &[i8], row0: usize, part: usize, col0: usize, out: Output) {
    let w = op.w;
    let groups = w.k4 / 4;
    let rows = [0, 1, 2, 3].map(|r| (row0 + r).min(op.m - 1));
    // SAFETY: the callers run with NEON.
    let mut acc = [[unsafe { vdupq_n_s32(0) }; MM_COLS / 2]; MM_ROWS / 2];
    let a = op.a.as_ptr();
    let mut g = 0;
    while g < groups {
        // Eight values of k, or the last four (then the other four are zero weights, and
        // the activations there zero too: nothing past the row is read).
        let whole = g + 1 < groups;
        // SAFETY: groups g (and g + 1 when whole) lie within the panel and every row.
        unsafe {
            let b = panel.as_ptr().add(g * BLOCK * 4 + part * MM_COLS * 4);
            let mut bv = [vdupq_n_s8(0); MM_COLS / 2];
            for q in 0..MM_COLS / 4 {
                // Four features' four values at g, and at g + 1: zipped by 32-bit lanes,
                // each feature's eight values side by side, two features a vector.
                let lo = vreinterpretq_s32_s8(vld1q_s8(b.add(16 * q)));
                let hi = if whole {
                    vreinterpretq_s32_s8(vld1q_s8(b.add(BLOCK * 4 + 16 * q)))
                } else {
                    vdupq_n_s32(0)
                };
                bv[2 * q] = vreinterpretq_s8_s32(vzip1q_s32(lo, hi));
                bv[2 * q + 1] = vreinterpretq_s8_s32(vzip2q_s32(lo, hi));
            }
            let eight = |row: usize| -> uint8x8_t {
                let at = a.add(row * w.k4 + 4 * g);
                if whole {
                    vld1_u8(at)
                } else {
                    vcreate_u8((at as *const u32).read_unaligned() as u64)
                }
            };
            for (pair, acc) in acc.iter_mut().enumerate() {
                let x = vcombine_u8(eight(rows[2 * pair]), eight(rows[2 * pair + 1]));
                for (acc, &bv) in acc.iter_mut().zip(&bv) {
                    *acc = usmmla(*acc, x, bv);
                }
            }
        }
        g += 2;
    }
    let first = col0 + part * MM_COLS;
    if first >= w.n {
        return;
    }
    let width = MM_COLS.min(w.n - first);
    for (pair, acc) in acc.into_iter().enumerate() {
        let mut sums = [[0i32; 4]; MM_COLS / 2];
        for (s, v) in sums.iter_mut().zip(acc) {
            // SAFETY: 4 lanes into 4 slots.
            unsafe { vst1q_s32(s.as_mut_ptr(), v) };
        }
        for half in 0..2 {
            let row = row0 + 2 * pair + half;
            if row >= op.m {
                break;
            }
            for f in 0..width {
                // Lanes: [row 0 · feature 0, row 0 · feature 1, row 1 · feature 0, ...].
                let sum = sums[f / 2][2 * half + f % 2];
                let col = first + f;
                let v = op.value(row, col, sum);
                // SAFETY: row < m, col < n, and this task's column.
                unsafe { *out.y.add(row * out.n + col) = v };
            }
        }
    }
}

/// # Safety
/// NEON and i8mm are available, and no other task writes block `b`'s columns of `out`.
#[target_feature(enable = "neon,i8mm")]
pub(crate) unsafe fn block_i8mm(op: &Operands, b: usize, out: Output) {
    let panel = op.panel(b);
    let col0 = b * BLOCK;
    for part in 0..BLOCK / MM_COLS {
        let mut row = 0;
        while row < op.m {
            // SAFETY: rows read are below m; block b's columns are this task's.
            unsafe { tile_mm(op, panel, row, part, col0, out) };
            row += MM_ROWS;
        }
    }
}
