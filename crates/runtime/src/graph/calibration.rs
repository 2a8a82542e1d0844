//! An int8 calibration: which int8 projections of one encoder file take 8-bit activations
//! ([`Precision::Int8`](super::Precision::Int8)), and each one's outlier channels, found on
//! training texts by `scripts/calibrate_int8.py`. Each entry records its weights' shape and
//! `Σ q`, so a calibration made for another file is refused, not applied.

use crate::error::{ErrorKind, RuntimeError};
use std::collections::BTreeMap;

/// One calibrated projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Calibrated {
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) q_sum: i64,
    pub(crate) outliers: Vec<usize>,
}

/// A parsed `calibration.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Int8Calibration {
    pub(crate) origin: String,
    /// By the projection's ONNX node name.
    pub(crate) projections: BTreeMap<String, Calibrated>,
}

impl Int8Calibration {
    /// Parses `{"projections": {"<node>": {"k", "n", "q_sum", "outliers": [..]}, ..}}`;
    /// `origin` names the file in errors.
    pub fn parse(json: &str, origin: &str) -> Result<Self, RuntimeError> {
        let bad = |message: String| RuntimeError::new(origin, ErrorKind::Calibration { message });
        let doc: serde_json::Value =
            serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let table = doc
            .get("projections")
            .and_then(|p| p.as_object())
            .ok_or_else(|| bad("expected an object \"projections\"".into()))?;
        let mut projections = BTreeMap::new();
        for (name, entry) in table {
            let field = |key: &str| {
                entry
                    .get(key)
                    .ok_or_else(|| bad(format!("projection {name}: no \"{key}\"")))
            };
            let count = |key: &str| {
                field(key)?
                    .as_u64()
                    .and_then(|v| usize::try_from(v).ok())
                    .filter(|&v| v > 0)
                    .ok_or_else(|| {
                        bad(format!(
                            "projection {name}: \"{key}\" must be a positive integer"
                        ))
                    })
            };
            let (k, n) = (count("k")?, count("n")?);
            let q_sum = field("q_sum")?
                .as_i64()
                .ok_or_else(|| bad(format!("projection {name}: \"q_sum\" must be an integer")))?;
            let list = field("outliers")?
                .as_array()
                .ok_or_else(|| bad(format!("projection {name}: \"outliers\" must be a list")))?;
            let mut outliers = Vec::with_capacity(list.len());
            for v in list {
                let c = v
                    .as_u64()
                    .and_then(|c| usize::try_from(c).ok())
                    .filter(|&c| c < k);
                let Some(c) = c else {
                    return Err(bad(format!(
                        "projection {name}: outlier channel {v} is not an index below k = {k}"
                    )));
                };
                if outliers.contains(&c) {
                    return Err(bad(format!(
                        "projection {name}: outlier channel {c} repeats"
                    )));
                }
                outliers.push(c);
            }
            projections.insert(
                name.clone(),
                Calibrated {
                    k,
                    n,
                    q_sum,
                    outliers,
                },
            );
        }
        Ok(Int8Calibration {
            origin: origin.to_string(),
            projections,
        })
    }

    /// How many projections it lists.
    pub fn len(&self) -> usize {
        self.projections.len()
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.projections.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_what_is_wrong() {
        let ok = r#"{"projections": {"a": {"k": 4, "n": 2, "q_sum": -3, "outliers": [3, 0]}}}"#;
        let c = Int8Calibration::parse(ok, "c.json").unwrap();
        assert_eq!(c.projections["a"].outliers, vec![3, 0]);
        assert_eq!(c.projections["a"].q_sum, -3);
        for (json, says) in [
            ("{", "not JSON"),
            ("{}", "\"projections\""),
            (
                r#"{"projections": {"a": {"n": 2, "q_sum": 0, "outliers": []}}}"#,
                "a: no \"k\"",
            ),
            (
                r#"{"projections": {"a": {"k": 4, "n": 2, "q_sum": 0, "outliers": [4]}}}"#,
                "outlier channel 4",
            ),
            (
                r#"{"projections": {"a": {"k": 4, "n": 2, "q_sum": 0, "outliers": [1, 1]}}}"#,
                "1 repeats",
            ),
            (
                r#"{"projections": {"a": {"k": 0, "n": 2, "q_sum": 0, "outliers": []}}}"#,
                "positive",
            ),
        ] {
            let e = Int8Calibration::parse(json, "c.json")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("c.json: int8 calibration: ") && e.contains(says),
                "{e}"
            );
        }
    }
}
