//! The optimised plan for a fused head: `sigmoid(x · W + b)` with `W` `[D, 28]`, computed by a
//! register-blocked kernel instead of a general matmul.
//!
//! Why not tract's matmul: with only 28 output columns, a general GEMM spends most of a
//! 1024-row batch packing the input and padding the narrow side. Here `W` is packed once at
//! load into rows of 32 lanes (28 labels + 4 zero lanes), and a block of input rows streams
//! through it while the accumulators stay in registers. The ISA is picked at run time, so the
//! binary stays portable (no `target-cpu` flags).

use crate::generic::head::{run_rows, sigmoid_row};
use crate::isa::F32Lanes;

pub use crate::generic::head::{HeadKernel, NUM_LABELS};

impl HeadKernel {
    /// Scores for `x.len() / dim` rows into `out` (`rows * 28`, label order).
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        if self.dim == 0 {
            // No input columns: every row scores sigmoid(bias).
            for or in out.chunks_exact_mut(NUM_LABELS) {
                sigmoid_row(&self.bias, or);
            }
            return;
        }
        assert_eq!(x.len() % self.dim, 0);
        assert_eq!(out.len() / NUM_LABELS, x.len() / self.dim);
        match self.isa.f32_lanes() {
            // SAFETY: an `Isa` comes only from detection, so this CPU runs its instructions.
            #[cfg(target_arch = "x86_64")]
            F32Lanes::Avx512 => unsafe { crate::x86_64::head::run_avx512(self, x, out) },
            #[cfg(target_arch = "x86_64")]
            F32Lanes::Avx2 => unsafe { crate::x86_64::head::run_avx2_fma(self, x, out) },
            #[cfg(target_arch = "aarch64")]
            F32Lanes::Neon => unsafe { crate::aarch64::f32::head_neon(self, x, out) },
            _ => run_rows::<false>(self, x, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Isa;

    /// f64 reference: `sigmoid(x · W + b)`.
    fn reference(dim: usize, w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        for row in x.chunks_exact(dim) {
            for l in 0..NUM_LABELS {
                let z: f64 = b[l] as f64
                    + (0..dim)
                        .map(|i| row[i] as f64 * w[i * NUM_LABELS + l] as f64)
                        .sum::<f64>();
                out.push((1.0 / (1.0 + (-z).exp())) as f32);
            }
        }
        out
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn zero_width_input_scores_the_bias() {
        let bias: Vec<f32> = (0..NUM_LABELS).map(|i| i as f32 - 14.0).collect();
        let kernel = HeadKernel::new(Isa::widest(), 0, &[], &bias);
        let mut got = vec![f32::NAN; 3 * NUM_LABELS];
        kernel.run(&[], &mut got);
        for row in got.chunks_exact(NUM_LABELS) {
            for (g, b) in row.iter().zip(&bias) {
                assert!((g - 1.0 / (1.0 + (-b).exp())).abs() < 1e-7);
            }
        }
    }

    #[test]
    fn every_isa_and_row_count_matches_f64_math() {
        let dim = 37;
        let mut seed = 7;
        let w: Vec<f32> = (0..dim * NUM_LABELS)
            .map(|_| lcg(&mut seed) * 0.3)
            .collect();
        let b: Vec<f32> = (0..NUM_LABELS).map(|_| lcg(&mut seed)).collect();
        let isas = Isa::all_available();
        // Row counts around every block size, so each remainder path runs.
        for rows in [0, 1, 2, 3, 4, 5, 7, 8, 9, 17, 25] {
            let x: Vec<f32> = (0..rows * dim).map(|_| lcg(&mut seed)).collect();
            let want = reference(dim, &w, &b, &x);
            for &isa in &isas {
                let kernel = HeadKernel::new(isa, dim, &w, &b);
                let mut got = vec![f32::NAN; rows * NUM_LABELS];
                kernel.run(&x, &mut got);
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0f32, f32::max);
                assert!(worst <= 1e-6, "{isa:?}, {rows} rows: worst {worst:e}");
                assert!(got.iter().all(|v| v.is_finite()), "{isa:?}, {rows} rows");
            }
        }
    }
}
