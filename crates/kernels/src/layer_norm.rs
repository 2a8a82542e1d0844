//! Layer norm over the last axis: `(x - mean) / sqrt(var + eps) * scale + bias`, each row in
//! two passes, both moments in f32.

use crate::generic::layer_norm::block_generic;
use crate::isa::{F32Lanes, Isa};
#[cfg(target_arch = "x86_64")]
use crate::x86_64::f32 as x86;

/// Normalises each row of `x` (rows of `scale.len()` values) in place, on the instructions
/// `isa` (a test may force any the CPU runs), rows spread over the thread pool when it
/// has one and there are enough of them.
pub fn normalise_rows(isa: Isa, x: &mut [f32], scale: &[f32], bias: &[f32], eps: f32) {
    let hidden = scale.len();
    if hidden == 0 {
        return;
    }
    // Rows per task: enough work per task to repay the handoff.
    let Ok(()) =
        crate::pool::for_each_block::<std::convert::Infallible>(x, hidden * 64, |_, rows| {
            normalise_block(isa, rows, scale, bias, eps);
            Ok(())
        });
}

fn normalise_block(isa: Isa, rows: &mut [f32], scale: &[f32], bias: &[f32], eps: f32) {
    match isa.f32_lanes() {
        // SAFETY: an `Isa` comes only from detection, so this CPU runs its instructions.
        #[cfg(target_arch = "x86_64")]
        F32Lanes::Avx512 => unsafe { x86::layer_norm_avx512(rows, scale, bias, eps) },
        #[cfg(target_arch = "x86_64")]
        F32Lanes::Avx2 => unsafe { x86::layer_norm_avx2(rows, scale, bias, eps) },
        #[cfg(target_arch = "aarch64")]
        F32Lanes::Neon => unsafe { crate::aarch64::f32::layer_norm_neon(rows, scale, bias, eps) },
        _ => block_generic::<false>(rows, scale, bias, eps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row normalised in f64.
    fn reference(x: &[f32], scale: &[f32], bias: &[f32], eps: f32) -> Vec<f64> {
        let h = scale.len();
        x.chunks(h)
            .flat_map(|row| {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h as f64;
                let inv = 1.0 / (var + eps as f64).sqrt();
                row.iter()
                    .zip(scale)
                    .zip(bias)
                    .map(move |((&v, &s), &b)| (v as f64 - mean) * inv * s as f64 + b as f64)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Rows of `hidden` values with an offset, so that the mean matters.
    fn rows(count: usize, hidden: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..count * hidden)
            .map(|i| ((i * 7919 % 101) as f32 * 0.37).sin() * 3.0 + 5.0)
            .collect();
        let scale = (0..hidden).map(|j| 0.5 + (j % 7) as f32 * 0.1).collect();
        let bias = (0..hidden).map(|j| (j % 5) as f32 * 0.2 - 0.4).collect();
        (x, scale, bias)
    }

    /// f32 sums of up to 384 values, against f64: a few ulps of values up to ~3.
    const KERNEL_TOLERANCE: f64 = 2e-6;

    #[test]
    fn every_isa_matches_f64_on_rows_with_and_without_a_tail() {
        for hidden in [384, 37, 5] {
            let (x, scale, bias) = rows(70, hidden);
            let want = reference(&x, &scale, &bias, 1e-12);
            for isa in Isa::all_available() {
                let mut got = x.clone();
                normalise_rows(isa, &mut got, &scale, &bias, 1e-12);
                let (worst, at) = got
                    .iter()
                    .zip(&want)
                    .map(|(&g, w)| (g as f64 - w).abs())
                    .enumerate()
                    .fold((0f64, 0), |m, (i, d)| if d > m.0 { (d, i) } else { m });
                assert!(
                    worst <= KERNEL_TOLERANCE,
                    "{isa}, hidden {hidden}: worst {worst:e} at {at}"
                );
            }
        }
    }

    #[test]
    fn rows_spread_over_a_thread_pool_give_identical_outputs() {
        use crate::pool::{single_threaded, with_threads};
        let (x, scale, bias) = rows(300, 384);
        let run = || {
            let mut y = x.clone();
            normalise_rows(Isa::widest(), &mut y, &scale, &bias, 1e-5);
            y
        };
        let alone = single_threaded(run);
        let pooled = with_threads(2, run);
        assert!(
            alone
                .iter()
                .zip(&pooled)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn a_nan_spreads_over_its_row_only() {
        let (mut x, scale, bias) = rows(3, 37);
        x[37 + 4] = f32::NAN;
        for isa in Isa::all_available() {
            let mut got = x.clone();
            normalise_rows(isa, &mut got, &scale, &bias, 1e-5);
            assert!(got[37..74].iter().all(|v| v.is_nan()), "{isa}");
            assert!(
                got[..37].iter().chain(&got[74..]).all(|v| v.is_finite()),
                "{isa}"
            );
        }
    }
}
