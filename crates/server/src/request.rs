//! Parsing and validating `POST /classify` bodies, with errors that say what is wrong.

use serde_json::Value;

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyRequest {
    pub inputs: Inputs,
    pub threshold: Option<f32>,
    pub top_k: Option<usize>,
    pub raw_scores: bool,
    /// `false`: refuse a text longer than the encoder's window rather than cut it.
    pub truncate: Option<bool>,
    /// How a text longer than the encoder's window is read.
    pub long_texts: Option<crate::backend::LongTexts>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    Texts(Vec<String>),
    /// Row-major `rows * dim`.
    Embeddings {
        rows: usize,
        data: Vec<f32>,
    },
}

/// Why a request was refused (always a 4xx).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("field '{field}': expected {expected}, found {found}")]
    FieldType {
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error(
        "unknown field '{0}'; expected inputs or embeddings, and optionally threshold, top_k, raw_scores, truncate, long_texts"
    )]
    UnknownField(String),
    #[error("give exactly one of 'inputs' (texts) or 'embeddings'")]
    InputChoice,
    #[error("'{0}' is empty: nothing to classify")]
    Empty(&'static str),
    #[error("{found} inputs in one request; the limit is {max}")]
    TooMany { max: usize, found: usize },
    #[error("embeddings[{row}]: expected {expected} numbers, found {found}")]
    Width {
        row: usize,
        expected: usize,
        found: usize,
    },
    #[error("embeddings[{row}][{column}]: expected a finite number, found {found}")]
    NotFinite {
        row: usize,
        column: usize,
        found: String,
    },
    #[error("'threshold' must be in [0, 1], found {0}")]
    Threshold(f64),
    #[error("give 'threshold' or 'top_k', not both")]
    ThresholdAndTopK,
}

impl RequestError {
    /// The machine-readable `error_type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            RequestError::MalformedJson(_) => "malformed_json",
            RequestError::FieldType { .. }
            | RequestError::UnknownField(_)
            | RequestError::InputChoice
            | RequestError::ThresholdAndTopK => "invalid_request",
            RequestError::Empty(_) => "empty_input",
            RequestError::TooMany { .. } => "too_many_inputs",
            RequestError::Width { .. } => "wrong_embedding_width",
            RequestError::NotFinite { .. } => "non_finite_value",
            RequestError::Threshold(_) => "invalid_threshold",
        }
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn field_type(field: impl Into<String>, expected: &'static str, found: &Value) -> RequestError {
    RequestError::FieldType {
        field: field.into(),
        expected,
        found: kind(found),
    }
}

/// Parses a body: `max_inputs` texts or rows at most, each embedding `dim` wide.
///
/// ```
/// use emotions_server::{parse_request, Inputs};
/// let r = parse_request(br#"{"inputs": "so happy", "top_k": 2}"#, 64, 384).unwrap();
/// assert_eq!(r.inputs, Inputs::Texts(vec!["so happy".into()]));
/// let e = parse_request(br#"{"inputs": []}"#, 64, 384).unwrap_err();
/// assert_eq!(e.error_type(), "empty_input");
/// ```
pub fn parse_request(
    body: &[u8],
    max_inputs: usize,
    dim: usize,
) -> Result<ClassifyRequest, RequestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| RequestError::MalformedJson(e.to_string()))?;
    let Value::Object(map) = &value else {
        return Err(field_type("(body)", "a JSON object", &value));
    };
    if let Some(k) = map.keys().find(|k| {
        ![
            "inputs",
            "embeddings",
            "threshold",
            "top_k",
            "raw_scores",
            "truncate",
            "long_texts",
        ]
        .contains(&k.as_str())
    }) {
        return Err(RequestError::UnknownField(k.clone()));
    }
    let inputs = match (map.get("inputs"), map.get("embeddings")) {
        (Some(v), None) => Inputs::Texts(texts(v, max_inputs)?),
        (None, Some(v)) => embeddings(v, max_inputs, dim)?,
        _ => return Err(RequestError::InputChoice),
    };
    let threshold = match map.get("threshold") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let t = v
                .as_f64()
                .ok_or_else(|| field_type("threshold", "a number in [0, 1]", v))?;
            if !valid_threshold(t) {
                return Err(RequestError::Threshold(t));
            }
            Some(t as f32)
        }
    };
    let top_k = match map.get("top_k") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_number()
                .and_then(whole)
                .filter(|k| (1..=emotions_labels::LABELS.len()).contains(k))
                .ok_or_else(|| field_type("top_k", "a whole number from 1 to 28", v))?,
        ),
    };
    if threshold.is_some() && top_k.is_some() {
        return Err(RequestError::ThresholdAndTopK);
    }
    let raw_scores = match map.get("raw_scores") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(field_type("raw_scores", "a boolean", v)),
    };
    let truncate = match map.get("truncate") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => return Err(field_type("truncate", "a boolean", v)),
    };
    let long_texts = match map.get("long_texts") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(
                serde_json::from_value(v.clone()).map_err(|_| RequestError::FieldType {
                    field: "long_texts".into(),
                    expected: "\"truncate\" or \"chunk\"",
                    found: v.to_string().chars().take(40).collect(),
                })?,
            )
        }
    };
    Ok(ClassifyRequest {
        inputs,
        threshold,
        top_k,
        raw_scores,
        truncate,
        long_texts,
    })
}

/// `n` as a whole number, if it is one (`3.0` is; `3.5` and `-1` are not).
pub(crate) fn whole(n: &serde_json::Number) -> Option<usize> {
    if let Some(u) = n.as_u64() {
        return usize::try_from(u).ok();
    }
    // Past 2^53 a JSON number is a float whose every value is whole: it means "very large",
    // which saturates (a `top_k` past 28 is all 28 labels; ids and widths have their maximum).
    let f = n.as_f64()?;
    (f >= 0.0 && f.fract() == 0.0).then_some(if f < 2f64.powi(53) {
        f as usize
    } else {
        usize::MAX
    })
}

fn texts(v: &Value, max: usize) -> Result<Vec<String>, RequestError> {
    let texts = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| field_type(format!("inputs[{i}]"), "a string", t))
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(field_type(
                "inputs",
                "a string or an array of strings",
                other,
            ));
        }
    };
    if texts.is_empty() {
        return Err(RequestError::Empty("inputs"));
    }
    if texts.len() > max {
        return Err(RequestError::TooMany {
            max,
            found: texts.len(),
        });
    }
    Ok(texts)
}

fn embeddings(v: &Value, max: usize, dim: usize) -> Result<Inputs, RequestError> {
    let Value::Array(rows) = v else {
        return Err(field_type("embeddings", "an array of arrays of numbers", v));
    };
    if rows.is_empty() {
        return Err(RequestError::Empty("embeddings"));
    }
    if rows.len() > max {
        return Err(RequestError::TooMany {
            max,
            found: rows.len(),
        });
    }
    let mut data = Vec::with_capacity(rows.len() * dim);
    for (r, row) in rows.iter().enumerate() {
        let Value::Array(items) = row else {
            return Err(field_type(
                format!("embeddings[{r}]"),
                "an array of numbers",
                row,
            ));
        };
        if items.len() != dim {
            return Err(RequestError::Width {
                row: r,
                expected: dim,
                found: items.len(),
            });
        }
        for (c, item) in items.iter().enumerate() {
            let x = item
                .as_f64()
                .ok_or_else(|| field_type(format!("embeddings[{r}][{c}]"), "a number", item))?;
            let x32 = x as f32;
            // As /openapi.json says: within f32's range, not just rounding into it.
            if !x32.is_finite() || x.abs() > f64::from(f32::MAX) {
                return Err(RequestError::NotFinite {
                    row: r,
                    column: c,
                    found: format!("{item} (beyond f32's range)"),
                });
            }
            data.push(x32);
        }
    }
    Ok(Inputs::Embeddings {
        rows: rows.len(),
        data,
    })
}

/// A threshold is a finite number in [0, 1] (NaN is not in the range).
pub(crate) fn valid_threshold(t: f64) -> bool {
    (0.0..=1.0).contains(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> RequestError {
        parse_request(body.as_bytes(), 3, 2).unwrap_err()
    }

    #[test]
    fn every_bad_request_has_a_reason() {
        assert_eq!(err("{").error_type(), "malformed_json");
        assert_eq!(
            err(r#"{"embeddings": [[1, NaN]]}"#).error_type(),
            "malformed_json"
        );
        assert_eq!(
            err("[1]").to_string(),
            "field '(body)': expected a JSON object, found an array"
        );
        assert_eq!(
            err(r#"{"inputs": 5}"#).to_string(),
            "field 'inputs': expected a string or an array of strings, found the number 5"
        );
        assert_eq!(
            err(r#"{"inputs": ["a", 1]}"#).to_string(),
            "field 'inputs[1]': expected a string, found the number 1"
        );
        assert_eq!(
            err(r#"{"inputs": []}"#).to_string(),
            "'inputs' is empty: nothing to classify"
        );
        assert_eq!(err(r#"{"embeddings": []}"#).error_type(), "empty_input");
        assert_eq!(
            err(r#"{"inputs": ["a","b","c","d"]}"#).to_string(),
            "4 inputs in one request; the limit is 3"
        );
        assert_eq!(
            err(r#"{"embeddings": [[1, 2], [1]]}"#).to_string(),
            "embeddings[1]: expected 2 numbers, found 1"
        );
        assert_eq!(
            err(r#"{"embeddings": [[1, 1e39]]}"#).error_type(),
            "non_finite_value"
        );
        assert_eq!(
            err(r#"{"embeddings": [[1, "x"]]}"#).error_type(),
            "invalid_request"
        );
        assert_eq!(
            err(r#"{"inputs": "a", "embeddings": [[1, 2]]}"#).error_type(),
            "invalid_request"
        );
        assert_eq!(err(r#"{}"#).error_type(), "invalid_request");
        assert_eq!(
            err(r#"{"inputs": "a", "threshold": 2}"#).error_type(),
            "invalid_threshold"
        );
        assert_eq!(
            err(r#"{"inputs": "a", "threshold": 0.5, "top_k": 2}"#).error_type(),
            "invalid_request"
        );
        assert_eq!(
            err(r#"{"inputs": "a", "top_k": -1}"#).error_type(),
            "invalid_request"
        );
        assert_eq!(
            err(r#"{"inputs": "a", "raw_scores": "yes"}"#).error_type(),
            "invalid_request"
        );
        assert_eq!(
            err(r#"{"inputs": "a", "extra": 1}"#)
                .to_string()
                .split(';')
                .next()
                .unwrap(),
            "unknown field 'extra'"
        );
    }

    #[test]
    fn good_requests_parse() {
        let r = parse_request(
            br#"{"embeddings": [[1, 2.5]], "threshold": 0.25, "raw_scores": true}"#,
            3,
            2,
        )
        .unwrap();
        assert_eq!(
            r.inputs,
            Inputs::Embeddings {
                rows: 1,
                data: vec![1.0, 2.5]
            }
        );
        assert_eq!(
            (r.threshold, r.top_k, r.raw_scores),
            (Some(0.25), None, true)
        );
        // JSON Schema's integers: 3.0 is one. A top_k of 0 would predict nothing, and more
        // than 28 labels there are not: both refused, as the CLI's --top-k.
        let r = parse_request(br#"{"inputs": ["", "x"], "top_k": 3.0}"#, 3, 2).unwrap();
        assert_eq!(r.inputs, Inputs::Texts(vec![String::new(), "x".into()]));
        assert_eq!(r.top_k, Some(3));
        for bad in ["0", "29", "2.5", "-1"] {
            let body = format!(r#"{{"inputs": "x", "top_k": {bad}}}"#);
            let err = parse_request(body.as_bytes(), 3, 2).unwrap_err();
            assert_eq!(err.error_type(), "invalid_request", "{bad}");
        }
    }
}
