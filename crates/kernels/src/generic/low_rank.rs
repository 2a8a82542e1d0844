//! The low-rank term's type and arithmetic, written once: every ISA copy compiles
//! [`LowRank::rows_generic`] with its own target features.

use crate::madd;

/// A projection's low-rank term `x · Aᵀ · Bᵀ`, computed in f32 beside integer weights.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRank {
    pub rank: usize,
    pub k: usize,
    pub n: usize,
    /// `Aᵀ`, `[k, padded]`, each row zero-padded to `padded` lanes so the inner loop is whole
    /// vectors.
    pub(crate) at: Vec<f32>,
    pub(crate) padded: usize,
    /// `Bᵀ`, `[rank, n]`.
    pub(crate) bt: Vec<f32>,
}

/// Rows per parallel task, at most.
pub(crate) const SIDE_ROWS: usize = 64;
/// Rows per parallel task, at least: four rows share each load of `Aᵀ`.
pub(crate) const MIN_SIDE_ROWS: usize = 4;

impl LowRank {
    /// `a` is `A`, `[rank, k]`, and `b` is `B`, `[n, rank]`, both row-major (PEFT's layout),
    /// the scale already in `B`.
    ///
    /// # Panics
    /// When the lengths are not those.
    pub fn new(rank: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Self {
        assert_eq!(a.len(), rank * k);
        assert_eq!(b.len(), n * rank);
        let padded = rank.div_ceil(16) * 16;
        let mut at = vec![0f32; k * padded];
        for t in 0..rank {
            for j in 0..k {
                at[j * padded + t] = a[t * k + j];
            }
        }
        let mut bt = vec![0f32; rank * n];
        for j in 0..n {
            for t in 0..rank {
                bt[t * n + j] = b[j * rank + t];
            }
        }
        LowRank {
            rank,
            k,
            n,
            at,
            padded,
            bt,
        }
    }

    /// Four rows at a time share each load of `Aᵀ`, with the sums for `x · Aᵀ` and each
    /// 16-column block of the output held in registers (a sum kept in memory made every step
    /// wait on the store before it).
    #[inline(always)]
    pub(crate) fn rows_generic<const FMA: bool>(&self, x: &[f32], out: &mut [f32]) {
        const ROWS: usize = 4;
        let (k, n, p) = (self.k, self.n, self.padded);
        let rows = x.len() / k;
        let mut u = vec![0f32; ROWS * p];
        let mut i = 0;
        while i < rows {
            let take = ROWS.min(rows - i);
            u.iter_mut().for_each(|v| *v = 0.0);
            for lane in (0..p).step_by(16) {
                let mut acc = [[0f32; 16]; ROWS];
                for (j, a) in self.at.chunks_exact(p).enumerate() {
                    let a: &[f32; 16] = a[lane..lane + 16].try_into().expect("16 lanes");
                    for (r, acc) in acc.iter_mut().enumerate().take(take) {
                        let xv = x[(i + r) * k + j];
                        for t in 0..16 {
                            acc[t] = madd::<FMA>(xv, a[t], acc[t]);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate().take(take) {
                    u[r * p + lane..r * p + lane + 16].copy_from_slice(acc);
                }
            }
            for r in 0..take {
                let (ur, orow) = (
                    &u[r * p..r * p + self.rank],
                    &mut out[(i + r) * n..(i + r + 1) * n],
                );
                let mut c = 0;
                // Four 16-column blocks at once: each block's sum waits on its previous
                // multiply-add, so one block alone ran at the latency of its chain.
                while c + 64 <= n {
                    self.add_blocks::<4, FMA>(ur, orow, c);
                    c += 64;
                }
                while c + 16 <= n {
                    self.add_blocks::<1, FMA>(ur, orow, c);
                    c += 16;
                }
                for (cc, o) in orow.iter_mut().enumerate().skip(c) {
                    for (t, &ut) in ur.iter().enumerate() {
                        *o = madd::<FMA>(ut, self.bt[t * n + cc], *o);
                    }
                }
            }
            i += take;
        }
    }

    /// `orow[c .. c + 16·Q] += u · Bᵀ` for those columns, each column's sum over the rank in
    /// order (so any `Q` gives the same bits).
    #[inline(always)]
    fn add_blocks<const Q: usize, const FMA: bool>(&self, ur: &[f32], orow: &mut [f32], c: usize) {
        let n = self.n;
        let mut acc = [[0f32; 16]; Q];
        for (q, acc) in acc.iter_mut().enumerate() {
            acc.copy_from_slice(&orow[c + 16 * q..c + 16 * (q + 1)]);
        }
        for (t, &ut) in ur.iter().enumerate() {
            let b = &self.bt[t * n + c..t * n + c + 16 * Q];
            for (q, acc) in acc.iter_mut().enumerate() {
                for l in 0..16 {
                    acc[l] = madd::<FMA>(ut, b[16 * q + l], acc[l]);
                }
            }
        }
        for (q, acc) in acc.iter().enumerate() {
            orow[c + 16 * q..c + 16 * (q + 1)].copy_from_slice(acc);
        }
    }
}
