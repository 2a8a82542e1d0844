//! The integer projections' NEON copy: `SMLAL`/`SMLAL2`, i16 × i16 → i32, on every AArch64 CPU.
//!
//! The packed panel holds each feature's pair `(q[2p][f], q[2p+1][f])` side by side (the
//! layout `vpmaddwd` reads). NEON has no pairwise i16 multiply-add, so each product stays in
//! its own lane, the pair's two lanes are summed once at the end (`ADDP`), and the i32 sums
//! are the portable loop's exactly.

use crate::generic::i16xi8::{BLOCK, Operands, Output};
use std::arch::aarch64::*;

/// Features per tile: three vectors of 8 i16 (4 features × 2 values), six accumulators a row.
const COLS: usize = 12;

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
    // SAFETY: the callers run with NEON.
    let mut acc = [[unsafe { vdupq_n_s32(0) }; 6]; R];
    let a = op.a.as_ptr();
    for p in 0..pairs {
        // SAFETY: p < pairs, rows < m, part < BLOCK / COLS: within the panel and the rows.
        unsafe {
            let b = panel.as_ptr().add(p * BLOCK * 2 + part * COLS * 2);
            let b0 = vld1q_s16(b);
            let b1 = vld1q_s16(b.add(8));
            let b2 = vld1q_s16(b.add(16));
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = (a.add((row0 + r) * w.k_even + 2 * p) as *const i32).read_unaligned();
                // (x[2p], x[2p+1]) in every pair of lanes, against each feature's pair.
                let x = vreinterpretq_s16_s32(vdupq_n_s32(pair));
                let xl = vget_low_s16(x);
                acc[0] = vmlal_s16(acc[0], vget_low_s16(b0), xl);
                acc[1] = vmlal_high_s16(acc[1], b0, x);
                acc[2] = vmlal_s16(acc[2], vget_low_s16(b1), xl);
                acc[3] = vmlal_high_s16(acc[3], b1, x);
                acc[4] = vmlal_s16(acc[4], vget_low_s16(b2), xl);
                acc[5] = vmlal_high_s16(acc[5], b2, x);
            }
        }
    }
    let first = col0 + part * COLS;
    if first >= w.n {
        return;
    }
    let width = COLS.min(w.n - first);
    for (r, acc) in acc.into_iter().enumerate() {
        let mut sums = [0i32; COLS];
        for j in 0..3 {
            // SAFETY: 4 lanes into 4 slots of 12.
            unsafe {
                let s = vpaddq_s32(acc[2 * j], acc[2 * j + 1]);
                vst1q_s32(sums.as_mut_ptr().add(4 * j), s);
            }
        }
        // SAFETY: this task's columns of row row0 + r < m.
        unsafe { op.store_portable(row0 + r, first, &sums[..width], out) };
    }
}

/// # Safety
/// NEON is available, and no other task writes block `b`'s columns of `out`.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn block_neon(op: &Operands, b: usize, out: Output) {
    let mut scratch = Vec::new();
    let panel = op.panel16(b, &mut scratch);
    let col0 = b * BLOCK;
    for part in 0..BLOCK / COLS {
        let mut row = 0;
        // SAFETY: rows stay below m; block b's columns are this task's.
        unsafe {
            while row + 4 <= op.m {
                tile::<4>(op, panel, row, part, col0, out);
                row += 4;
            }
            match op.m - row {
                0 => {}
                1 => tile::<1>(op, panel, row, part, col0, out),
                2 => tile::<2>(op, panel, row, part, col0, out),
                _ => tile::<3>(op, panel, row, part, col0, out),
            }
        }
    }
}
