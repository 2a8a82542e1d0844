//! Softmax over rows, in place, with an `exp` the compiler vectorises.

use crate::exp::exp;

/// Each `row`-value row of `xs` in place (`row > 0`).
pub fn softmax_rows(xs: &mut [f32], row: usize) {
    xs.chunks_exact_mut(row).for_each(softmax_row);
}

/// In place: `r[i] = exp(r[i] - max) / sum`.
pub fn softmax_row(r: &mut [f32]) {
    let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() || r.iter().any(|x| x.is_nan()) {
        // What IEEE arithmetic gives a plain softmax here (e.g. a row masked with -inf);
        // exported graphs test for it with IsNaN.
        r.fill(f32::NAN);
        return;
    }
    for x in r.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / r.iter().sum::<f32>();
    r.iter_mut().for_each(|x| *x *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one_and_match_f64() {
        let mut row: Vec<f32> = (0..23)
            .map(|i| ((i * 7919) % 31) as f32 * 0.7 - 9.0)
            .collect();
        row[3] = -1e9; // a masked position
        let want: Vec<f64> = {
            let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
            let e: Vec<f64> = row.iter().map(|&x| (x as f64 - max).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|x| x / s).collect()
        };
        softmax_row(&mut row);
        for (g, w) in row.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-7, "{g} vs {w}");
        }
        let mut masked = vec![f32::NEG_INFINITY; 4];
        softmax_row(&mut masked);
        assert!(masked.iter().all(|x| x.is_nan()), "{masked:?}");
    }
}
