//! An adapter's low-rank term `x · Aᵀ · Bᵀ`, added in f32 beside a projection's integer
//! weights.

use crate::generic::low_rank::{MIN_SIDE_ROWS, SIDE_ROWS};
use crate::isa::{F32Lanes, Isa};
#[cfg(target_arch = "x86_64")]
use crate::x86_64::f32 as x86;
use rayon::prelude::*;

pub use crate::generic::low_rank::LowRank;

impl LowRank {
    /// `out[i] += (x[i] · Aᵀ) · Bᵀ` for `m` rows on `isa`, spread over the current pool.
    pub fn add_to(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) {
        let (x, out) = (&x[..m * self.k], &mut out[..m * self.n]);
        match crate::pool::current() {
            Some(pool) if m > MIN_SIDE_ROWS => {
                // A few tokens still go to every thread, as the projection beside this term
                // spreads them: one thread alone here cost a single 16-token text 11-30% of its
                // time (three alternated criterion runs, AVX2). Each row's sums are the same
                // however rows are grouped.
                let threads = pool.current_num_threads();
                let rows = m
                    .div_ceil(threads)
                    .next_multiple_of(MIN_SIDE_ROWS)
                    .clamp(MIN_SIDE_ROWS, SIDE_ROWS);
                pool.install(|| {
                    x.par_chunks(rows * self.k)
                        .zip(out.par_chunks_mut(rows * self.n))
                        .for_each(|(xs, os)| self.rows(isa, xs, os))
                })
            }
            _ => self.rows(isa, x, out),
        }
    }

    fn rows(&self, isa: Isa, x: &[f32], out: &mut [f32]) {
        match isa.f32_lanes() {
            // SAFETY: an `Isa` comes only from detection, so this CPU runs its instructions;
            // the bodies only index slices.
            #[cfg(target_arch = "x86_64")]
            F32Lanes::Avx512 => unsafe { x86::low_rank_avx512(self, x, out) },
            #[cfg(target_arch = "x86_64")]
            F32Lanes::Avx2 => unsafe { x86::low_rank_avx2(self, x, out) },
            #[cfg(target_arch = "aarch64")]
            F32Lanes::Neon => unsafe { crate::aarch64::f32::low_rank_neon(self, x, out) },
            _ => self.rows_generic::<false>(x, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(B·A)ᵀ` as `[k, n]`.
    fn dense_transposed(rank: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; k * n];
        for i in 0..k {
            for j in 0..n {
                out[i * n + j] = (0..rank).map(|t| b[j * rank + t] * a[t * k + i]).sum();
            }
        }
        out
    }

    #[test]
    fn the_term_is_the_dense_delta() {
        let (a, b) = ([1., 2., 3., 4., 5., 6.], [0.5, -1., 2., 0.25]);
        let side = LowRank::new(2, 3, 2, &a, &b);
        let dense = dense_transposed(2, 3, 2, &a, &b);
        let x = [0.5f32, -1.0, 2.0, 3.0, 0.25, -0.75];
        let mut out = vec![1f32; 4];
        side.add_to(Isa::widest(), &x, 2, &mut out);
        for i in 0..2 {
            for j in 0..2 {
                let want: f32 = 1.0 + (0..3).map(|k| x[i * 3 + k] * dense[k * 2 + j]).sum::<f32>();
                assert!(
                    (out[i * 2 + j] - want).abs() < 1e-5,
                    "{i},{j}: {} {want}",
                    out[i * 2 + j]
                );
            }
        }
    }

    /// Every ISA the CPU has, forced, with and without a pool, against the portable loops.
    #[test]
    fn every_isa_path_agrees() {
        // 45 columns: 16-column blocks and a tail; 150: 64-column blocks, then both.
        for n in [45, 150] {
            isa_paths_agree(19, 37, n);
        }
    }

    fn isa_paths_agree(rank: usize, k: usize, n: usize) {
        let a: Vec<f32> = (0..rank * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.05)
            .collect();
        let b: Vec<f32> = (0..n * rank)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.03)
            .collect();
        let side = LowRank::new(rank, k, n, &a, &b);
        let m = 150;
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 3 % 17) as f32 - 8.0) * 0.1)
            .collect();
        let mut want = vec![0.5f32; m * n];
        crate::pool::single_threaded(|| side.add_to(Isa::portable(), &x, m, &mut want));
        let dense = dense_transposed(rank, k, n, &a, &b);
        for i in [0, 77, m - 1] {
            for j in [0, n - 1] {
                let exact: f32 = 0.5 + (0..k).map(|c| x[i * k + c] * dense[c * n + j]).sum::<f32>();
                assert!((want[i * n + j] - exact).abs() < 1e-4);
            }
        }
        for isa in Isa::all_available() {
            for threads in [1, 3] {
                let mut got = vec![0.5f32; m * n];
                crate::pool::with_threads(threads, || side.add_to(isa, &x, m, &mut got));
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-5, "{isa} at {threads} threads: {worst}");
            }
        }
    }
}
