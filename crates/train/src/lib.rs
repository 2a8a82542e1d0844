//! Training, export, threshold tuning and evaluation of go_emotions heads.
//!
//! - [`fit`]: one L2-regularised logistic regression per label (L-BFGS), the model card's design;
//! - [`HeadGraph`]: writes a head as ONNX in the card's format, loadable by the runtime crate;
//! - [`tune_thresholds`] and [`evaluate`]: per-label thresholds and the card's metrics.

mod logistic;
mod metrics;
mod onnx_export;

pub use logistic::{ClassWeight, Convergence, FitError, LinearModel, TrainOptions, fit};
pub use metrics::{
    Averages, Evaluation, LabelMetrics, evaluate, label_metrics, threshold_grid, tune_thresholds,
};
pub use onnx_export::{Dense, HeadGraph};

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
