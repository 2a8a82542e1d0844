//! The 28 go_emotions labels, `thresholds.json`, and the policies that turn scores into labels.
//!
//! ```
//! use emotions_labels::{DecisionPolicy, Thresholds, LABELS};
//!
//! let thresholds = Thresholds::card_defaults();
//! assert_eq!(thresholds.get("grief"), Some(0.85));
//!
//! let mut scores = [0.0f32; LABELS.len()];
//! scores[15] = 0.9; // gratitude
//! scores[27] = 0.31; // neutral
//! let prediction = DecisionPolicy::PerLabel(thresholds).decide(&scores);
//! assert_eq!(prediction.labels(), ["gratitude", "neutral"]);
//! ```

#![forbid(unsafe_code)]

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};
use std::path::Path;

/// The go_emotions labels in canonical order: label id `i` is `LABELS[i]`.
pub const LABELS: [&str; 28] = [
    "admiration",
    "amusement",
    "anger",
    "annoyance",
    "approval",
    "caring",
    "confusion",
    "curiosity",
    "desire",
    "disappointment",
    "disapproval",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "gratitude",
    "grief",
    "joy",
    "love",
    "nervousness",
    "optimism",
    "pride",
    "realization",
    "relief",
    "remorse",
    "sadness",
    "surprise",
    "neutral",
];

/// Number of labels.
pub const NUM_LABELS: usize = LABELS.len();

/// The canonical id of a label name, if it is one of [`LABELS`].
///
/// ```
/// assert_eq!(emotions_labels::label_id("neutral"), Some(27));
/// assert_eq!(emotions_labels::label_id("Neutral"), None);
/// ```
pub fn label_id(name: &str) -> Option<usize> {
    LABELS.iter().position(|l| *l == name)
}

/// Per-label thresholds from the model card.
const CARD_THRESHOLDS: [f32; NUM_LABELS] = [
    0.30, 0.25, 0.15, 0.20, 0.15, 0.20, 0.15, 0.20, 0.20, 0.10, 0.15, 0.20, 0.30, 0.25, 0.40, 0.25,
    0.85, 0.20, 0.30, 0.60, 0.20, 0.70, 0.10, 0.50, 0.20, 0.20, 0.15, 0.30,
];

/// Everything that can go wrong reading thresholds: the file (or what stands for it) and what
/// went wrong. Displays as `origin: kind`.
#[derive(Debug)]
pub struct LabelsError {
    pub origin: String,
    pub kind: LabelsErrorKind,
}

impl LabelsError {
    pub fn new(origin: impl Into<String>, kind: LabelsErrorKind) -> Self {
        LabelsError {
            origin: origin.into(),
            kind,
        }
    }
}

impl std::fmt::Display for LabelsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin, self.kind)
    }
}

// The kind's text already says what the OS said: no source, so a printed chain says it once.
impl std::error::Error for LabelsError {}

/// The kinds of [`LabelsError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelsErrorKind {
    #[error("cannot read: {source}")]
    Io { source: std::io::Error },
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "expected an object {{label: threshold}} or an array of {NUM_LABELS} thresholds, found {found}"
    )]
    WrongShape { found: String },
    #[error("expected {expected} thresholds in label order, found {found}")]
    WrongLength { expected: usize, found: usize },
    #[error("label '{label}' is missing")]
    MissingLabel { label: &'static str },
    #[error("'{label}' is not a go_emotions label")]
    UnknownLabel { label: String },
    #[error("threshold for '{label}' must be a number, found {found}")]
    NotANumber { label: String, found: String },
    #[error("threshold for '{label}' must be finite and in [0, 1], found {value}")]
    OutOfRange { label: String, value: f64 },
}

/// One threshold per label, in [`LABELS`] order, each finite and in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds([f32; NUM_LABELS]);

impl Thresholds {
    /// The per-label thresholds published with the model card.
    pub fn card_defaults() -> Self {
        Thresholds(CARD_THRESHOLDS)
    }

    /// The same threshold for every label.
    pub fn uniform(threshold: f32) -> Result<Self, LabelsError> {
        check_range("argument", "all labels", threshold as f64)?;
        Ok(Thresholds([threshold; NUM_LABELS]))
    }

    /// Thresholds in label order; every value must be finite and in `[0, 1]`.
    pub fn from_array(values: [f32; NUM_LABELS]) -> Result<Self, LabelsError> {
        for (label, value) in LABELS.iter().zip(values) {
            check_range("argument", label, value as f64)?;
        }
        Ok(Thresholds(values))
    }

    /// Reads `thresholds.json`: either `{label: t}` with every label, or an array in label order.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, LabelsError> {
        let path = path.as_ref();
        // 28 labels and their thresholds are under 2 KB.
        let text = emotions_io::read_capped(path, 1 << 20, "a thresholds file")
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })
            .map_err(|source| {
                LabelsError::new(path.display().to_string(), LabelsErrorKind::Io { source })
            })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Parses thresholds JSON; `origin` names the source in errors.
    ///
    /// ```
    /// use emotions_labels::{Thresholds, LabelsError};
    /// let err = Thresholds::from_json_str(r#"{"admiration": 0.3}"#, "t.json").unwrap_err();
    /// assert_eq!(err.to_string(), "t.json: label 'amusement' is missing");
    /// ```
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self, LabelsError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            LabelsError::new(
                origin,
                LabelsErrorKind::Json {
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                },
            )
        })?;
        let mut out = [0f32; NUM_LABELS];
        match &value {
            serde_json::Value::Object(map) => {
                if let Some(unknown) = map.keys().find(|k| label_id(k).is_none()) {
                    return Err(LabelsError::new(
                        origin,
                        LabelsErrorKind::UnknownLabel {
                            label: unknown.clone(),
                        },
                    ));
                }
                for (id, label) in LABELS.iter().enumerate() {
                    let v = map.get(*label).ok_or(LabelsError::new(
                        origin,
                        LabelsErrorKind::MissingLabel { label },
                    ))?;
                    out[id] = number(origin, label, v)?;
                }
            }
            serde_json::Value::Array(items) => {
                if items.len() != NUM_LABELS {
                    return Err(LabelsError::new(
                        origin,
                        LabelsErrorKind::WrongLength {
                            expected: NUM_LABELS,
                            found: items.len(),
                        },
                    ));
                }
                for (id, v) in items.iter().enumerate() {
                    out[id] = number(origin, LABELS[id], v)?;
                }
            }
            other => {
                return Err(LabelsError::new(
                    origin,
                    LabelsErrorKind::WrongShape {
                        found: json_kind(other).to_string(),
                    },
                ));
            }
        }
        Ok(Thresholds(out))
    }

    /// The threshold of a label by name.
    pub fn get(&self, label: &str) -> Option<f32> {
        label_id(label).map(|i| self.0[i])
    }

    /// All thresholds in label order.
    pub fn as_array(&self) -> &[f32; NUM_LABELS] {
        &self.0
    }

    /// `{label: t}` in label order, pretty-printed, as written to `thresholds.json`.
    pub fn to_json_pretty(&self) -> String {
        let mut s = String::from("{\n");
        for (i, (label, t)) in LABELS.iter().zip(self.0).enumerate() {
            let sep = if i + 1 < NUM_LABELS { "," } else { "" };
            // f32 through serde_json prints the shortest round-tripping form ("0.3", not 0.30000001).
            let t = serde_json::to_string(&t).expect("finite f32 serialises");
            s.push_str(&format!("  \"{label}\": {t}{sep}\n"));
        }
        s.push_str("}\n");
        s
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn number(origin: &str, label: &str, v: &serde_json::Value) -> Result<f32, LabelsError> {
    let x = v.as_f64().ok_or_else(|| {
        LabelsError::new(
            origin,
            LabelsErrorKind::NotANumber {
                label: label.to_string(),
                found: v.to_string(),
            },
        )
    })?;
    check_range(origin, label, x)?;
    Ok(x as f32)
}

fn check_range(origin: &str, label: &str, x: f64) -> Result<(), LabelsError> {
    if x.is_finite() && (0.0..=1.0).contains(&x) {
        Ok(())
    } else {
        Err(LabelsError::new(
            origin,
            LabelsErrorKind::OutOfRange {
                label: label.to_string(),
                value: x,
            },
        ))
    }
}

/// How scores become predicted labels.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionPolicy {
    /// A label is predicted when its score `>=` its own threshold (the default).
    PerLabel(Thresholds),
    /// A label is predicted when its score `>=` this one threshold.
    Fixed(f32),
    /// The `k` highest-scoring labels, whatever their scores; ties go to the lower label id.
    TopK(usize),
}

impl DecisionPolicy {
    /// Applies the policy to one row of scores in label order.
    pub fn decide(&self, scores: &[f32; NUM_LABELS]) -> Prediction {
        let mut ids: Vec<usize> = match self {
            DecisionPolicy::PerLabel(t) => {
                (0..NUM_LABELS).filter(|&i| scores[i] >= t.0[i]).collect()
            }
            DecisionPolicy::Fixed(t) => (0..NUM_LABELS).filter(|&i| scores[i] >= *t).collect(),
            DecisionPolicy::TopK(_) => (0..NUM_LABELS).collect(),
        };
        // Stable sort: equal scores keep label order.
        ids.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        if let DecisionPolicy::TopK(k) = self {
            ids.truncate(*k);
        }
        Prediction {
            scores: *scores,
            predicted: ids,
        }
    }

    /// Applies the policy to `n` rows of scores, `scores.len() == n * NUM_LABELS`.
    ///
    /// # Panics
    /// If `scores.len()` is not a multiple of [`NUM_LABELS`]; callers produce it from a head.
    pub fn decide_rows(&self, scores: &[f32]) -> Vec<Prediction> {
        assert_eq!(
            scores.len() % NUM_LABELS,
            0,
            "scores must be rows of {NUM_LABELS}"
        );
        scores
            .chunks_exact(NUM_LABELS)
            .map(|row| self.decide(row.try_into().expect("chunk of NUM_LABELS")))
            .collect()
    }
}

/// Every label's positive score and the predicted labels, highest score first.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    scores: [f32; NUM_LABELS],
    predicted: Vec<usize>,
}

impl Prediction {
    /// Predicted label names, by descending score.
    pub fn labels(&self) -> Vec<&'static str> {
        self.predicted.iter().map(|&i| LABELS[i]).collect()
    }

    /// Predicted label ids, by descending score.
    pub fn label_ids(&self) -> &[usize] {
        &self.predicted
    }

    /// Every label's positive score, in label order.
    pub fn scores(&self) -> &[f32; NUM_LABELS] {
        &self.scores
    }

    /// Whether a label id is predicted.
    pub fn is_predicted(&self, id: usize) -> bool {
        self.predicted.contains(&id)
    }
}

/// Serialises as `{"admiration": 0.01, ...}`: every label's score, in label order.
pub struct LabelScores<'a>(pub &'a [f32; NUM_LABELS]);

impl Serialize for LabelScores<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(NUM_LABELS))?;
        for (label, score) in LABELS.iter().zip(self.0) {
            map.serialize_entry(label, score)?;
        }
        map.end()
    }
}

/// Serialises as `{"labels": [...], "scores": {"admiration": ..., ...every label...}}`.
impl Serialize for Prediction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Prediction", 2)?;
        s.serialize_field("labels", &self.labels())?;
        s.serialize_field("scores", &LabelScores(&self.scores))?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_json_object() -> String {
        Thresholds::card_defaults().to_json_pretty()
    }

    #[test]
    fn object_and_array_layouts_read_the_same() {
        let from_object = Thresholds::from_json_str(&card_json_object(), "o").unwrap();
        let array = serde_json::to_string(&CARD_THRESHOLDS.to_vec()).unwrap();
        let from_array = Thresholds::from_json_str(&array, "a").unwrap();
        assert_eq!(from_object, from_array);
        assert_eq!(from_object, Thresholds::card_defaults());
    }

    #[test]
    fn top_level_thresholds_json_matches_the_card() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../thresholds.json");
        assert_eq!(
            Thresholds::from_path(path).unwrap(),
            Thresholds::card_defaults()
        );
    }

    #[test]
    fn errors_name_the_label() {
        let mut v: serde_json::Value = serde_json::from_str(&card_json_object()).unwrap();
        v["fear"] = serde_json::json!(1.5);
        let err = Thresholds::from_json_str(&v.to_string(), "t.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.json: threshold for 'fear' must be finite and in [0, 1], found 1.5"
        );
        v["fear"] = serde_json::json!("high");
        let err = Thresholds::from_json_str(&v.to_string(), "t.json").unwrap_err();
        assert!(
            matches!(err.kind, LabelsErrorKind::NotANumber { ref label, .. } if label == "fear")
        );
        v["fear"] = serde_json::json!(0.4);
        v["fearr"] = serde_json::json!(0.4);
        let err = Thresholds::from_json_str(&v.to_string(), "t.json").unwrap_err();
        assert!(
            matches!(err.kind, LabelsErrorKind::UnknownLabel { ref label, .. } if label == "fearr")
        );
        let err = Thresholds::from_json_str("[0.5, 0.5]", "t.json").unwrap_err();
        assert!(matches!(
            err.kind,
            LabelsErrorKind::WrongLength { found: 2, .. }
        ));
        let err = Thresholds::from_json_str("{\"a\": ", "t.json").unwrap_err();
        assert!(
            matches!(err.kind, LabelsErrorKind::Json { line: 1, .. }),
            "{err}"
        );
        let err = Thresholds::from_json_str("0.5", "t.json").unwrap_err();
        assert!(err.to_string().contains("found a number"), "{err}");
        let mut negative = CARD_THRESHOLDS.map(|x| x as f64).to_vec();
        negative[3] = -0.1;
        let err =
            Thresholds::from_json_str(&serde_json::to_string(&negative).unwrap(), "t").unwrap_err();
        assert!(
            matches!(err.kind, LabelsErrorKind::OutOfRange { ref label, .. } if label == "annoyance")
        );
    }

    #[test]
    fn threshold_is_inclusive_and_labels_sort_by_score() {
        let mut scores = [0f32; NUM_LABELS];
        scores[0] = 0.30; // admiration, exactly at its threshold
        scores[2] = 0.90; // anger
        scores[16] = 0.84; // grief, below .85
        let p = DecisionPolicy::PerLabel(Thresholds::card_defaults()).decide(&scores);
        assert_eq!(p.labels(), ["anger", "admiration"]);
        let p = DecisionPolicy::Fixed(0.5).decide(&scores);
        assert_eq!(p.labels(), ["anger", "grief"]);
    }

    #[test]
    fn top_k_breaks_ties_by_label_order() {
        let mut scores = [0.1f32; NUM_LABELS];
        scores[5] = 0.7;
        let p = DecisionPolicy::TopK(3).decide(&scores);
        assert_eq!(p.label_ids(), [5, 0, 1]);
        assert_eq!(DecisionPolicy::TopK(0).decide(&scores).labels().len(), 0);
        assert_eq!(
            DecisionPolicy::TopK(99).decide(&scores).labels().len(),
            NUM_LABELS
        );
    }

    #[test]
    fn prediction_serialises_every_label_in_order() {
        let mut scores = [0f32; NUM_LABELS];
        scores[27] = 0.5;
        let p = DecisionPolicy::Fixed(0.5).decide(&scores);
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            json.starts_with(r#"{"labels":["neutral"],"scores":{"admiration":0.0,"#),
            "{json}"
        );
        assert!(json.ends_with(r#""neutral":0.5}}"#), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["scores"].as_object().unwrap().len(), NUM_LABELS);
    }

    #[test]
    fn uniform_rejects_out_of_range() {
        assert!(Thresholds::uniform(f32::NAN).is_err());
        assert!(Thresholds::uniform(1.01).is_err());
        assert_eq!(Thresholds::uniform(1.0).unwrap().get("joy"), Some(1.0));
    }
}
