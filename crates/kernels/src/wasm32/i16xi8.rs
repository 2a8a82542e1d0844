//! The integer projections' SIMD128 copy: `i32x4.dot_i16x8_s`, i16 × i16 → i32 pairwise sums,
//! WebAssembly's `vpmaddwd`.
//!
//! The packed panel holds each feature's pair `(q[2p][f], q[2p+1][f])` side by side, the layout
//! this instruction reads: one vector is 4 features' pairs, and its dot with the activations'
//! pair in every lane gives those 4 features' partial sums. The sums are exact i32, the portable
//! loop's to the bit.

use crate::generic::i16xi8::{BLOCK, Operands, Output};
use core::arch::wasm32::*;

/// Features per tile: three vectors of 4 features, three accumulators a row.
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
                let pair = (a.add((row0 + r) * w.k_even + 2 * p) as *const i32).read_unaligned();
                // (x[2p], x[2p+1]) in every pair of lanes, against each feature's pair.
                let x = i32x4_splat(pair);
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
        let mut sums = [0i32; COLS];
        for (j, v) in acc.into_iter().enumerate() {
            // SAFETY: 4 lanes into 4 slots of 12.
            unsafe { v128_store(sums.as_mut_ptr().add(4 * j) as *mut v128, v) };
        }
        // SAFETY: this task's columns of row row0 + r < m.
        unsafe { op.store_portable(row0 + r, first, &sums[..width], out) };
    }
}

/// # Safety
/// No other task writes block `b`'s columns of `out`. (SIMD128 itself is fixed at compile
/// time: a runtime without it refuses the module.)
pub(crate) unsafe fn block_simd128(op: &Operands, b: usize, out: Output) {
    let panel = op.panel(b);
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
