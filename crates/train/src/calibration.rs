//! Whether scores can be read as probabilities: expected calibration error, the Brier score,
//! a reliability table, and per-label temperature scaling fitted on held-out rows.
//!
//! Each label is a binary problem with score `p` = P(positive). Expected calibration error
//! (ECE) puts a label's scores into [`CALIBRATION_BINS`] equal-width bins over [0, 1] and sums,
//! over bins, the bin's share of rows times |mean score − share of positives|. The Brier score
//! is the mean of (p − y)². "Macro" averages labels; "pooled" treats every (row, label) score
//! as one binary prediction.

use crate::TrainError;
use serde::Serialize;

/// A label's temperature is fitted only with at least this many positive and negative rows.
pub const MIN_ROWS_TO_FIT: usize = 10;

/// Equal-width bins over [0, 1] for ECE and the reliability table.
pub const CALIBRATION_BINS: usize = 10;

/// One label's calibration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LabelCalibration {
    pub ece: f64,
    pub brier: f64,
}

/// One bin of the pooled reliability table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    /// (row, label) scores in `[lower, upper)` (the last bin includes 1).
    pub count: usize,
    pub mean_score: f64,
    /// Share of those that are gold positives.
    pub observed: f64,
}

/// Calibration of a split's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Mean of the labels' ECE.
    pub macro_ece: f64,
    /// Mean of the labels' Brier scores.
    pub macro_brier: f64,
    /// ECE of all (row, label) scores together.
    pub pooled_ece: f64,
    /// Per label, in label order.
    pub per_label: Vec<LabelCalibration>,
    /// Pooled over labels; empty bins included, with count 0.
    pub reliability: Vec<ReliabilityBin>,
}

fn bin_of(p: f32) -> usize {
    ((f64::from(p) * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1)
}

/// Per bin: (count, sum of scores, positives).
fn binned<'a>(pairs: impl Iterator<Item = (&'a f32, &'a bool)>) -> Vec<(usize, f64, usize)> {
    let mut bins = vec![(0usize, 0f64, 0usize); CALIBRATION_BINS];
    for (p, y) in pairs {
        let b = &mut bins[bin_of(*p)];
        b.0 += 1;
        b.1 += f64::from(*p);
        b.2 += usize::from(*y);
    }
    bins
}

fn ece(bins: &[(usize, f64, usize)]) -> f64 {
    let total: usize = bins.iter().map(|b| b.0).sum();
    if total == 0 {
        return 0.0;
    }
    bins.iter()
        .filter(|b| b.0 > 0)
        .map(|&(_, sum, pos)| (sum - pos as f64).abs() / total as f64)
        .sum()
}

fn check(scores: &[f32], gold: &[bool], labels: usize) -> Result<(), TrainError> {
    if labels == 0 || scores.len() != gold.len() || !scores.len().is_multiple_of(labels) {
        return Err(TrainError::Shape(format!(
            "{} scores, {} gold labels and {labels} labels disagree",
            scores.len(),
            gold.len()
        )));
    }
    if let Some(i) = scores
        .iter()
        .position(|p| !(0.0..=1.0).contains(p) || p.is_nan())
    {
        return Err(TrainError::Shape(format!(
            "score {} (row {}, label {}) is not a probability in [0, 1]",
            scores[i],
            i / labels,
            i % labels
        )));
    }
    Ok(())
}

/// ECE, Brier scores and the reliability table of `scores` (`rows * labels`, P(positive))
/// against `gold`.
///
/// ```
/// use emotions_train::calibration;
/// // One label: scores 0.8 twice (one positive: 50% observed) and 0.1 twice (no positive).
/// let c = calibration(&[0.8, 0.8, 0.1, 0.1], &[true, false, false, false], 1)?;
/// assert!((c.macro_ece - (0.5 * 0.3 + 0.5 * 0.1)).abs() < 1e-6);
/// assert!((c.macro_brier - (0.04 + 0.64 + 0.01 + 0.01) / 4.0).abs() < 1e-6);
/// # Ok::<(), emotions_train::TrainError>(())
/// ```
pub fn calibration(
    scores: &[f32],
    gold: &[bool],
    labels: usize,
) -> Result<Calibration, TrainError> {
    check(scores, gold, labels)?;
    let rows = scores.len() / labels;
    let column = |k: usize| {
        scores
            .iter()
            .skip(k)
            .step_by(labels)
            .zip(gold.iter().skip(k).step_by(labels))
    };
    let per_label: Vec<LabelCalibration> = (0..labels)
        .map(|k| LabelCalibration {
            ece: ece(&binned(column(k))),
            brier: if rows == 0 {
                0.0
            } else {
                column(k)
                    .map(|(p, y)| (f64::from(*p) - f64::from(u8::from(*y))).powi(2))
                    .sum::<f64>()
                    / rows as f64
            },
        })
        .collect();
    let pooled = binned(scores.iter().zip(gold));
    let mean =
        |f: fn(&LabelCalibration) -> f64| per_label.iter().map(f).sum::<f64>() / labels as f64;
    Ok(Calibration {
        macro_ece: mean(|c| c.ece),
        macro_brier: mean(|c| c.brier),
        pooled_ece: ece(&pooled),
        reliability: pooled
            .iter()
            .enumerate()
            .map(|(b, &(n, sum, pos))| ReliabilityBin {
                lower: b as f64 / CALIBRATION_BINS as f64,
                upper: (b + 1) as f64 / CALIBRATION_BINS as f64,
                count: n,
                mean_score: if n == 0 { 0.0 } else { sum / n as f64 },
                observed: if n == 0 { 0.0 } else { pos as f64 / n as f64 },
            })
            .collect(),
        per_label,
    })
}

/// The log-odds of a score, clamped to ±ln((1 − 1e-7) / 1e-7) ≈ ±16.1 where f32 saturates.
pub fn logit(p: f32) -> f64 {
    let p = f64::from(p).clamp(1e-7, 1.0 - 1e-7);
    (p / (1.0 - p)).ln()
}

/// `p` scaled by temperature `t`: σ(logit(p) / t). `t` > 1 softens, `t` < 1 sharpens.
pub fn scale_score(p: f32, t: f64) -> f32 {
    (1.0 / (1.0 + (-logit(p) / t).exp())) as f32
}

fn mean_log_loss(logits: &[f64], gold: &[bool], t: f64) -> f64 {
    logits
        .iter()
        .zip(gold)
        .map(|(&z, &y)| {
            let z = z / t;
            // −log σ(z) for a positive, −log σ(−z) for a negative, as softplus.
            let m = if y { -z } else { z };
            m.max(0.0) + (-m.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / logits.len().max(1) as f64
}

/// Per label, the temperature in [0.1, 10] that minimises the mean log loss of
/// σ(logit(p) / t) on these rows (golden-section search on ln t; the loss is unimodal in t).
/// A label with fewer than [`MIN_ROWS_TO_FIT`] positive or negative rows gets 1: with a handful
/// of positives the classes are often separable, and the fit runs to the bound.
pub fn fit_temperatures(
    scores: &[f32],
    gold: &[bool],
    labels: usize,
) -> Result<Vec<f64>, TrainError> {
    check(scores, gold, labels)?;
    Ok((0..labels)
        .map(|k| {
            let z: Vec<f64> = scores
                .iter()
                .skip(k)
                .step_by(labels)
                .map(|&p| logit(p))
                .collect();
            let y: Vec<bool> = gold.iter().skip(k).step_by(labels).copied().collect();
            let positives = y.iter().filter(|&&g| g).count();
            if positives.min(y.len() - positives) < MIN_ROWS_TO_FIT {
                return 1.0;
            }
            let loss = |u: f64| mean_log_loss(&z, &y, u.exp());
            let (mut a, mut b) = (0.1f64.ln(), 10f64.ln());
            let r = (5f64.sqrt() - 1.0) / 2.0;
            let (mut c, mut d) = (b - r * (b - a), a + r * (b - a));
            let (mut fc, mut fd) = (loss(c), loss(d));
            for _ in 0..80 {
                if fc <= fd {
                    (b, d, fd) = (d, c, fc);
                    c = b - r * (b - a);
                    fc = loss(c);
                } else {
                    (a, c, fc) = (c, d, fd);
                    d = a + r * (b - a);
                    fd = loss(d);
                }
            }
            ((a + b) / 2.0).exp()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_calibrated_bins_have_zero_ece() {
        // Eight rows at 0.25 with two positives, eight at 0.75 with six (both exact in f32).
        let mut scores = vec![0.25f32; 8];
        scores.extend([0.75f32; 8]);
        let mut gold = vec![false; 16];
        for i in [0, 1, 8, 9, 10, 11, 12, 13] {
            gold[i] = true;
        }
        let c = calibration(&scores, &gold, 1).unwrap();
        assert!(c.macro_ece < 1e-12, "{}", c.macro_ece);
        // Each row is off by 0.25 or 0.75: (6 · 0.0625 + 2 · 0.5625) / 8 per group.
        assert!((c.macro_brier - 0.1875).abs() < 1e-12, "{}", c.macro_brier);
        assert_eq!(c.reliability.len(), CALIBRATION_BINS);
        assert_eq!((c.reliability[2].count, c.reliability[7].count), (8, 8));
        assert!((c.reliability[7].observed - 0.75).abs() < 1e-12);
        assert_eq!(c.reliability[0].count, 0);
    }

    #[test]
    fn macro_and_pooled_differ_as_defined() {
        // Two labels, two rows. Label 0: 1.0 for a negative and 0.0 for a positive: ECE 1.
        // Label 1: 0.5 for one positive and one negative: ECE 0.
        let scores = [1.0f32, 0.5, 0.0, 0.5];
        let gold = [false, true, true, false];
        let c = calibration(&scores, &gold, 2).unwrap();
        assert!((c.per_label[0].ece - 1.0).abs() < 1e-12);
        assert!(c.per_label[1].ece.abs() < 1e-12);
        assert!((c.macro_ece - 0.5).abs() < 1e-12);
        // Pooled: bin 9 holds 1.0 (negative): |1 − 0| · 1/4; bin 0 holds 0.0 (positive):
        // |0 − 1| · 1/4; bin 5 holds both 0.5s, half positive: 0.
        assert!((c.pooled_ece - 0.5).abs() < 1e-12);
        assert!((c.per_label[0].brier - 1.0).abs() < 1e-12);
        assert!((c.per_label[1].brier - 0.25).abs() < 1e-12);
    }

    #[test]
    fn fitted_temperature_recovers_a_known_one() {
        // Scores drawn calibrated at temperature 1, then sharpened by t = 0.5: the fit should
        // undo it (t ≈ 2).
        let mut rng = crate::SplitMix64::new(3);
        let (mut scores, mut gold) = (vec![], vec![]);
        for _ in 0..20_000 {
            let z = (rng.next_f64() - 0.5) * 8.0;
            let p = 1.0 / (1.0 + (-z).exp());
            gold.push(rng.next_f64() < p);
            scores.push((1.0 / (1.0 + (-z / 0.5).exp())) as f32);
        }
        let t = fit_temperatures(&scores, &gold, 1).unwrap()[0];
        assert!((t - 2.0).abs() < 0.1, "{t}");
        let before = calibration(&scores, &gold, 1).unwrap();
        let scaled: Vec<f32> = scores.iter().map(|&p| scale_score(p, t)).collect();
        let after = calibration(&scaled, &gold, 1).unwrap();
        assert!(
            after.macro_ece < before.macro_ece / 3.0,
            "{after:?} vs {before:?}"
        );
        assert!(after.macro_brier < before.macro_brier);
    }

    #[test]
    fn scaling_keeps_the_order_and_one_label_class_gets_one() {
        let ps = [0.01f32, 0.2, 0.5, 0.7, 0.999];
        for t in [0.5, 1.0, 3.0] {
            let s: Vec<f32> = ps.iter().map(|&p| scale_score(p, t)).collect();
            assert!(s.windows(2).all(|w| w[0] < w[1]), "{t}: {s:?}");
            assert!((scale_score(0.5, t) - 0.5).abs() < 1e-7);
        }
        assert_eq!(
            fit_temperatures(&[0.2, 0.9], &[false, false], 1).unwrap(),
            vec![1.0]
        );
        // Nine positives, separable: too few to fit, so 1 (the fit would run to the bound).
        let scores: Vec<f32> = (0..100).map(|i| if i < 9 { 0.6 } else { 0.4 }).collect();
        let gold: Vec<bool> = (0..100).map(|i| i < 9).collect();
        assert_eq!(fit_temperatures(&scores, &gold, 1).unwrap(), vec![1.0]);
        let mut gold10 = gold.clone();
        gold10[50] = true;
        assert_ne!(fit_temperatures(&scores, &gold10, 1).unwrap(), vec![1.0]);
    }

    #[test]
    fn bad_input_is_an_error_naming_the_row() {
        let err = calibration(&[0.1, 1.5], &[true, false], 1).unwrap_err();
        assert!(err.to_string().contains("row 1"), "{err}");
        assert!(calibration(&[0.1], &[true, false], 1).is_err());
        assert!(fit_temperatures(&[f32::NAN], &[true], 1).is_err());
    }
}
