//! Training, export, threshold tuning and evaluation of go_emotions heads.
//!
//! - [`fit`]: one L2-regularised logistic regression per label (L-BFGS), the model card's design;
//! - [`fit_mlp`]: a one-hidden-layer head for all labels (Adam, early stopping on a dev split);
//! - [`out_of_fold_scores`]: k-fold scores of a training split, for tuning thresholds on rows
//!   the model did not see;
//! - [`HeadMetadata`]: what a trained head records about itself, written and read back here;
//! - [`EmbeddingCache`]: a split's embeddings on disk, keyed by the encoder's model and texts;
//! - [`tune_thresholds`] and [`evaluate`]: per-label thresholds and the card's metrics;
//! - [`calibration`] and [`fit_temperatures`]: whether scores read as probabilities (ECE, Brier),
//!   and per-label temperature scaling.
//!
//! Heads are written as ONNX by `emotions_runtime::export`.

#![forbid(unsafe_code)]

mod cache;
mod calibration;
mod cv;
mod logistic;
mod metadata;
mod metrics;
mod mlp;
mod rng;

pub use cache::EmbeddingCache;
pub use calibration::{
    CALIBRATION_BINS, Calibration, LabelCalibration, MIN_ROWS_TO_FIT, ReliabilityBin, calibration,
    fit_temperatures, logit, scale_score,
};
pub use cv::out_of_fold_scores;
pub use emotions_runtime::export::{Dense, HeadGraph};
pub use logistic::{ClassWeight, Convergence, FitError, LinearModel, TrainOptions, fit};
pub use metadata::{HeadMetadata, utc_date};
pub use metrics::{
    Averages, Evaluation, LabelMetrics, bagged_thresholds, evaluate, label_metrics, threshold_grid,
    tune_thresholds,
};
pub use mlp::{MlpModel, MlpOptions, fit_mlp};
pub use rng::SplitMix64;

/// Everything training, tuning, caching and evaluating can report.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Fit(#[from] FitError),
    /// Inputs whose lengths disagree.
    #[error("{0}")]
    Shape(String),
    #[error("{folds} folds need at least 2 folds and at least {folds} rows, found {rows} rows")]
    Folds { folds: usize, rows: usize },
    #[error("the head's metadata {problem}: was it written by `emotions train`?")]
    Metadata { problem: String },
    #[error(transparent)]
    Io(#[from] emotions_io::IoError),
    #[error("{path}: cannot create the embedding cache folder")]
    CacheDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Export(#[from] emotions_runtime::RuntimeError),
}

impl LinearModel {
    /// This model as the output layer of an ONNX head.
    pub fn to_dense(&self) -> Dense {
        let (dim, k) = (self.dim, self.labels());
        let mut weights = vec![0f32; dim * k];
        for (label, w) in self.weights.iter().enumerate() {
            for (i, wi) in w.iter().enumerate() {
                weights[i * k + label] = *wi as f32;
            }
        }
        Dense {
            inputs: dim,
            outputs: k,
            weights,
            bias: self.bias.iter().map(|b| *b as f32).collect(),
        }
    }
}
