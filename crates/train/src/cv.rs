//! Out-of-fold scores: every row of a training split scored by a model that did not see it.

use crate::{TrainError, TrainOptions, fit};

/// Row `i` scored by a model fitted without fold `i % folds`, `rows * labels` values.
/// `fold_done(k)` is called after fold `k` (0-based) is fitted.
///
/// ```
/// use emotions_train::{out_of_fold_scores, TrainOptions};
/// let x: Vec<f32> = (-20..20).map(|i| i as f32 / 20.0).collect();
/// let y: Vec<bool> = x.iter().map(|v| *v > 0.0).collect();
/// let scores = out_of_fold_scores(&x, 40, 1, &y, 1, 4, &TrainOptions::default(), |_| {})?;
/// assert!(scores[39] > 0.5 && scores[0] < 0.5);
/// # Ok::<(), emotions_train::TrainError>(())
/// ```
#[allow(clippy::too_many_arguments)] // the same shape as `fit`, plus folds and progress
pub fn out_of_fold_scores(
    x: &[f32],
    rows: usize,
    dim: usize,
    gold: &[bool],
    labels: usize,
    folds: usize,
    options: &TrainOptions,
    mut fold_done: impl FnMut(usize),
) -> Result<Vec<f32>, TrainError> {
    if folds < 2 || rows < folds {
        return Err(TrainError::Folds { folds, rows });
    }
    if x.len() != rows * dim || gold.len() != rows * labels {
        return Err(TrainError::Shape(format!(
            "{} values and {} gold labels for {rows} rows of {dim} with {labels} labels",
            x.len(),
            gold.len()
        )));
    }
    let mut scores = vec![0f32; rows * labels];
    for k in 0..folds {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for i in (0..rows).filter(|i| i % folds != k) {
            xs.extend_from_slice(&x[i * dim..(i + 1) * dim]);
            ys.extend_from_slice(&gold[i * labels..(i + 1) * labels]);
        }
        let model = fit(&xs, ys.len() / labels, dim, &ys, labels, options)?;
        let held: Vec<usize> = (0..rows).filter(|i| i % folds == k).collect();
        let x_held: Vec<f32> = held
            .iter()
            .flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let s = model.predict(&x_held, held.len());
        for (j, &i) in held.iter().enumerate() {
            scores[i * labels..(i + 1) * labels].copy_from_slice(&s[j * labels..(j + 1) * labels]);
        }
        fold_done(k);
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_is_scored_by_the_model_fitted_without_its_fold() {
        // Two features; label = feature 0 > 0. Refit by hand for fold 1 and compare.
        let rows = 30;
        let x: Vec<f32> = (0..rows)
            .flat_map(|i| [((i * 7) % 11) as f32 / 5.0 - 1.0, (i % 3) as f32])
            .collect();
        let gold: Vec<bool> = x.chunks(2).map(|r| r[0] > 0.0).collect();
        let options = TrainOptions::default();
        let mut done = vec![];
        let scores =
            out_of_fold_scores(&x, rows, 2, &gold, 1, 3, &options, |k| done.push(k)).unwrap();
        assert_eq!(done, [0, 1, 2]);
        let keep: Vec<usize> = (0..rows).filter(|i| i % 3 != 1).collect();
        let xs: Vec<f32> = keep
            .iter()
            .flat_map(|&i| x[2 * i..2 * i + 2].to_vec())
            .collect();
        let ys: Vec<bool> = keep.iter().map(|&i| gold[i]).collect();
        let model = fit(&xs, keep.len(), 2, &ys, 1, &options).unwrap();
        for i in (0..rows).filter(|i| i % 3 == 1) {
            assert_eq!(
                scores[i],
                model.predict(&x[2 * i..2 * i + 2], 1)[0],
                "row {i}"
            );
        }
    }

    #[test]
    fn bad_folds_and_shapes_are_errors() {
        let o = TrainOptions::default();
        let err = out_of_fold_scores(&[0.0; 4], 4, 1, &[true; 4], 1, 1, &o, |_| {}).unwrap_err();
        assert!(
            matches!(err, TrainError::Folds { folds: 1, rows: 4 }),
            "{err}"
        );
        let err = out_of_fold_scores(&[0.0; 2], 2, 1, &[true; 2], 1, 5, &o, |_| {}).unwrap_err();
        assert!(
            matches!(err, TrainError::Folds { folds: 5, rows: 2 }),
            "{err}"
        );
        let err = out_of_fold_scores(&[0.0; 3], 4, 1, &[true; 4], 1, 2, &o, |_| {}).unwrap_err();
        assert!(matches!(err, TrainError::Shape(_)), "{err}");
    }
}
