//! The one fast `exp` the kernels share: the head's sigmoid, softmax and attention.

/// `exp(x)` within about 1 ulp (Cephes `expf`: Cody-Waite reduction and a degree-7
/// polynomial), written without calls so that a loop over it vectorises.
///
/// The input is clamped to `[-87, 88]`: below -87 the result would be under f32's smallest
/// normal (it becomes ~1e-38, which changes a sigmoid or a softmax weight by less than 1e-37),
/// and the clamp keeps the exponent conversion below defined whatever the caller passes.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by adding and subtracting 1.5 * 2^23 (no SSE4.1 `round` needed).
    const ROUND: f32 = 12_582_912.0;
    #[allow(clippy::manual_clamp)] // `clamp` keeps NaN, which the conversion below must not see
    let x = x.max(-87.0).min(88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // SAFETY: n is a whole number in [-126, 127], as x is clamped to [-87, 88] (`max` turns
    // NaN into -87). An unchecked conversion vectorises; `as i32`, with its saturation and NaN
    // checks, made the loops over this function scalar.
    let n = unsafe { n.to_int_unchecked::<i32>() };
    e * f32::from_bits(((n + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::exp;

    #[test]
    fn exp_is_within_two_ulp_over_the_softmax_and_sigmoid_range() {
        let mut worst = 0f64;
        let mut x = 88f32;
        while x > -87.0 {
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64 - want) / want).abs());
            x -= 0.000_37;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn out_of_range_inputs_clamp() {
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert_eq!(exp(1000.0), exp(88.0));
        assert!(exp(1000.0).is_finite());
        assert_eq!(exp(f32::NAN), exp(-87.0));
    }
}
