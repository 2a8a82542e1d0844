//! What a trained head records about itself in its ONNX `metadata_props`: written by
//! `emotions train`, read back by `emotions tune --cv-split` to refit the head the same way.

use crate::{ClassWeight, TrainError, TrainOptions};
use std::collections::BTreeMap;

/// A trained head's metadata. [`HeadMetadata::to_map`] writes it; [`HeadMetadata::options`]
/// reads the training options back from a loaded head's map.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadMetadata {
    /// The encoder's name, e.g. `all-MiniLM-L6-v2`.
    pub encoder: String,
    /// What identifies the encoder's model whatever its name (`Encoder::fingerprint`), when
    /// the embeddings came from an encoder rather than a file.
    pub encoder_fingerprint: Option<String>,
    pub encoder_dim: usize,
    pub labels: Vec<String>,
    /// The split trained on, e.g. `train.tsv (43410 rows)`.
    pub training_data: String,
    pub options: TrainOptions,
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    pub all_converged: bool,
}

impl HeadMetadata {
    /// The key/value pairs stored in the ONNX file.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::from([
            ("encoder".to_string(), self.encoder.clone()),
            ("encoder_dim".to_string(), self.encoder_dim.to_string()),
            ("labels".to_string(), json(&self.labels)),
            ("training_data".to_string(), self.training_data.clone()),
            ("c".to_string(), json(&self.options.c)),
            (
                "class_weight".to_string(),
                self.options.class_weight.name().to_string(),
            ),
            ("max_iter".to_string(), self.options.max_iter.to_string()),
            ("tol".to_string(), self.options.tol.to_string()),
            (
                "trained_by".to_string(),
                format!("emotions {} train", env!("CARGO_PKG_VERSION")),
            ),
            ("date".to_string(), self.date.clone()),
            ("all_converged".to_string(), self.all_converged.to_string()),
        ]);
        if let Some(f) = &self.encoder_fingerprint {
            map.insert("encoder_fingerprint".to_string(), f.clone());
        }
        map
    }

    /// The training options recorded in a head's metadata, with `jobs` threads, to refit it the
    /// same way.
    pub fn options(
        meta: &BTreeMap<String, String>,
        jobs: usize,
    ) -> Result<TrainOptions, TrainError> {
        let get = |k: &str| {
            meta.get(k).ok_or_else(|| TrainError::Metadata {
                problem: format!("has no '{k}'"),
            })
        };
        let bad = |k: &str, v: &str| TrainError::Metadata {
            problem: format!("has '{k}' = '{v}', which is not valid"),
        };
        let c_text = get("c")?;
        let c: Vec<f64> = serde_json::from_str(c_text).map_err(|_| bad("c", c_text))?;
        let class_weight = get("class_weight")?;
        let max_iter = get("max_iter")?;
        let tol = get("tol")?;
        Ok(TrainOptions {
            c,
            class_weight: ClassWeight::from_name(class_weight)
                .ok_or_else(|| bad("class_weight", class_weight))?,
            max_iter: max_iter.parse().map_err(|_| bad("max_iter", max_iter))?,
            tol: tol.parse().map_err(|_| bad("tol", tol))?,
            jobs,
            ..Default::default()
        })
    }
}

/// A list-valued entry as JSON (lists of strings and numbers always serialise).
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Today's UTC date as `YYYY-MM-DD`, from the system clock.
pub fn utc_date() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    civil_from_days(days)
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (Howard Hinnant's civil-from-days).
fn civil_from_days(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), "1970-01-01");
        assert_eq!(civil_from_days(-1), "1969-12-31");
        assert_eq!(civil_from_days(11_016), "2000-02-29");
        assert_eq!(civil_from_days(11_017), "2000-03-01");
        assert_eq!(civil_from_days(19_782), "2024-02-29");
        assert_eq!(civil_from_days(20_784), "2026-11-27");
        assert!(utc_date().as_str() >= "2026-01-01", "{}", utc_date());
    }

    fn metadata() -> HeadMetadata {
        HeadMetadata {
            encoder: "all-MiniLM-L6-v2".into(),
            encoder_fingerprint: Some("0123456789abcdef".into()),
            encoder_dim: 384,
            labels: vec!["a".into(), "b".into()],
            training_data: "train.tsv (10 rows)".into(),
            options: TrainOptions {
                c: vec![0.5, 2.0],
                class_weight: ClassWeight::Balanced,
                max_iter: 77,
                tol: 1e-5,
                ..Default::default()
            },
            date: "2026-11-27".into(),
            all_converged: true,
        }
    }

    #[test]
    fn options_round_trip_through_the_map() {
        let m = metadata();
        let map = m.to_map();
        assert_eq!(map["labels"], r#"["a","b"]"#);
        assert_eq!(map["encoder_fingerprint"], "0123456789abcdef");
        let back = HeadMetadata::options(&map, 3).unwrap();
        assert_eq!(
            back,
            TrainOptions {
                jobs: 3,
                ..m.options
            }
        );
    }

    #[test]
    fn missing_or_bad_entries_are_named() {
        let mut map = metadata().to_map();
        map.insert("class_weight".into(), "heavy".into());
        let err = HeadMetadata::options(&map, 1).unwrap_err();
        assert!(
            err.to_string().contains("'class_weight' = 'heavy'"),
            "{err}"
        );
        map.remove("tol");
        map.insert("class_weight".into(), "none".into());
        let err = HeadMetadata::options(&map, 1).unwrap_err();
        assert!(err.to_string().contains("has no 'tol'"), "{err}");
    }
}
