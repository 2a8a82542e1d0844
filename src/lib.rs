//! `emotions`: a pure-Rust go_emotions classifier. Sentence embeddings in, 28 emotion labels
//! out, with no onnxruntime.
//!
//! [`Classifier`] is the front door: a head (ONNX, run by tract) plus a decision policy.
//!
//! ```
//! use emotions::Classifier;
//!
//! let classifier = Classifier::from_defaults()?;
//! let rows = vec![0.05f32; 2 * classifier.input_dim()];
//! let predictions = classifier.classify_embeddings(&rows, 2)?;
//! assert_eq!(predictions.len(), 2);
//! assert_eq!(predictions[0].scores().len(), emotions::LABELS.len());
//! # Ok::<(), emotions::Error>(())
//! ```

use std::path::{Path, PathBuf};

pub use emotions_labels::{DecisionPolicy, LABELS, NUM_LABELS, Prediction, Thresholds};
pub use emotions_runtime::{Head, HeadInfo};

/// The models compiled into the binary.
pub mod defaults {
    /// The default head: see `models/head/README.md`.
    pub const HEAD_ONNX: &[u8] = include_bytes!("../models/head/head.onnx");
    /// The default head's thresholds.
    pub const HEAD_THRESHOLDS_JSON: &str = include_str!("../models/head/thresholds.json");
    /// What the default head is, for `--help` and `/labels`.
    pub const HEAD_DESCRIPTION: &str = "placeholder head with random weights (crates/conformance/fixtures/heads/linear_classifier_shuffled.onnx); not a trained model";
    /// The model card's thresholds (the top-level `thresholds.json`), used with heads that ship
    /// none of their own.
    pub const CARD_THRESHOLDS_JSON: &str = include_str!("../thresholds.json");
}

/// Everything the library front door can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Head(#[from] emotions_runtime::RuntimeError),
    #[error(transparent)]
    Labels(#[from] emotions_labels::LabelsError),
    #[error(transparent)]
    Io(#[from] emotions_io::IoError),
}

/// Where the head comes from.
#[derive(Debug, Clone)]
enum HeadSource {
    Default,
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// Where the thresholds come from, when the policy is per-label.
#[derive(Debug, Clone)]
enum ThresholdsSource {
    /// The head's own: the embedded default's, or `thresholds.json` beside a head file, else
    /// the model card's.
    Head,
    Given(Thresholds),
}

/// The decision policy asked for.
#[derive(Debug, Clone, Copy)]
enum PolicyChoice {
    PerLabel,
    Fixed(f32),
    TopK(usize),
}

/// Builds a [`Classifier`]; validation happens in [`ClassifierBuilder::build`].
#[derive(Debug, Clone)]
pub struct ClassifierBuilder {
    head: HeadSource,
    thresholds: ThresholdsSource,
    policy: PolicyChoice,
}

impl Default for ClassifierBuilder {
    fn default() -> Self {
        ClassifierBuilder {
            head: HeadSource::Default,
            thresholds: ThresholdsSource::Head,
            policy: PolicyChoice::PerLabel,
        }
    }
}

impl ClassifierBuilder {
    /// Uses the head in this ONNX file. Its thresholds are `thresholds.json` in the same folder
    /// when there is one, else the model card's.
    pub fn head_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.head = HeadSource::Path(path.into());
        self
    }

    /// Uses the head in these ONNX bytes, with the model card's thresholds unless given.
    pub fn head_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.head = HeadSource::Bytes(bytes.into());
        self
    }

    /// Per-label thresholds to decide with (the default policy).
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = ThresholdsSource::Given(thresholds);
        self
    }

    /// One threshold for every label instead of per-label thresholds.
    pub fn fixed_threshold(mut self, threshold: f32) -> Self {
        self.policy = PolicyChoice::Fixed(threshold);
        self
    }

    /// The `k` highest-scoring labels instead of thresholds.
    pub fn top_k(mut self, k: usize) -> Self {
        self.policy = PolicyChoice::TopK(k);
        self
    }

    /// Loads the head, reads thresholds, and validates the policy.
    pub fn build(self) -> Result<Classifier, Error> {
        let (head, beside) = match &self.head {
            HeadSource::Default => (
                Head::builder_from_bytes(defaults::HEAD_ONNX, "<embedded default head>").build()?,
                Some(Thresholds::from_json_str(
                    defaults::HEAD_THRESHOLDS_JSON,
                    "<embedded default thresholds>",
                )?),
            ),
            HeadSource::Path(path) => (
                Head::builder_from_path(path).build()?,
                thresholds_beside(path)?,
            ),
            HeadSource::Bytes(bytes) => (
                Head::builder_from_bytes(bytes.clone(), "<head bytes>").build()?,
                None,
            ),
        };
        let policy = match self.policy {
            PolicyChoice::Fixed(t) => {
                Thresholds::uniform(t)?;
                DecisionPolicy::Fixed(t)
            }
            PolicyChoice::TopK(k) => DecisionPolicy::TopK(k),
            PolicyChoice::PerLabel => DecisionPolicy::PerLabel(match self.thresholds {
                ThresholdsSource::Given(t) => t,
                ThresholdsSource::Head => match beside {
                    Some(t) => t,
                    None => Thresholds::from_json_str(
                        defaults::CARD_THRESHOLDS_JSON,
                        "<model card thresholds>",
                    )?,
                },
            }),
        };
        Ok(Classifier { head, policy })
    }
}

/// `thresholds.json` in the head file's folder, if there is one.
fn thresholds_beside(head: &Path) -> Result<Option<Thresholds>, Error> {
    let path = head
        .parent()
        .unwrap_or(Path::new("."))
        .join("thresholds.json");
    if path.is_file() {
        Ok(Some(Thresholds::from_path(&path)?))
    } else {
        Ok(None)
    }
}

/// A head plus a decision policy. `Send + Sync`: share one across threads.
#[derive(Debug)]
pub struct Classifier {
    head: Head,
    policy: DecisionPolicy,
}

impl Classifier {
    /// The embedded default head with its own thresholds.
    pub fn from_defaults() -> Result<Self, Error> {
        Self::builder().build()
    }

    pub fn builder() -> ClassifierBuilder {
        ClassifierBuilder::default()
    }

    /// The embedding width the head takes.
    pub fn input_dim(&self) -> usize {
        self.head.input_dim()
    }

    pub fn head_info(&self) -> &HeadInfo {
        self.head.info()
    }

    pub fn policy(&self) -> &DecisionPolicy {
        &self.policy
    }

    /// Positive scores, `rows * 28` in label order.
    pub fn scores(&self, embeddings: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        Ok(self.head.predict(embeddings, rows)?)
    }

    /// One prediction per embedding row.
    pub fn classify_embeddings(
        &self,
        embeddings: &[f32],
        rows: usize,
    ) -> Result<Vec<Prediction>, Error> {
        Ok(self.policy.decide_rows(&self.scores(embeddings, rows)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_beside_a_head_file_win_over_the_card() {
        let dir = std::env::temp_dir().join(format!("emotions-beside-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("head.onnx"), defaults::HEAD_ONNX).unwrap();
        let head = dir.join("head.onnx");
        let card = Classifier::builder().head_path(&head).build().unwrap();
        assert_eq!(
            card.policy(),
            &DecisionPolicy::PerLabel(Thresholds::card_defaults())
        );
        std::fs::write(
            dir.join("thresholds.json"),
            serde_json::to_string(&[0.5f32; NUM_LABELS]).unwrap(),
        )
        .unwrap();
        let beside = Classifier::builder().head_path(&head).build().unwrap();
        assert_eq!(
            beside.policy(),
            &DecisionPolicy::PerLabel(Thresholds::uniform(0.5).unwrap())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fixed_threshold_is_validated_in_build() {
        let err = Classifier::builder()
            .fixed_threshold(1.5)
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("must be finite and in [0, 1], found 1.5"),
            "{err}"
        );
    }
}
