//! Layer norm's arithmetic, written once: every ISA copy compiles [`block_generic`] with its
//! own target features.

use crate::madd;

/// Lanes of the partial sums: sixteen independent sums the compiler keeps in vector registers
/// (a single running sum would be a serial chain it may not reorder).
const LANES: usize = 16;

#[inline(always)]
pub(crate) fn block_generic<const FMA: bool>(
    rows: &mut [f32],
    scale: &[f32],
    bias: &[f32],
    eps: f32,
) {
    let hidden = scale.len();
    let n = hidden as f32;
    for row in rows.chunks_exact_mut(hidden) {
        let mut lanes = [0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                lanes[l] += c[l];
            }
        }
        let sum = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
        let mean = sum / n;
        let mut lanes = [0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                let d = c[l] - mean;
                lanes[l] = madd::<FMA>(d, d, lanes[l]);
            }
        }
        let tail = chunks
            .remainder()
            .iter()
            .fold(0f32, |s, &x| madd::<FMA>(x - mean, x - mean, s));
        let var = (lanes.iter().sum::<f32>() + tail) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((x, &s), &b) in row.iter_mut().zip(scale).zip(bias) {
            *x = madd::<FMA>((*x - mean) * inv, s, b);
        }
    }
}
