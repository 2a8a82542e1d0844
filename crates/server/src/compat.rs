//! The routes other clients speak, so that `emotions serve` drops in for them:
//!
//! - text-embeddings-inference (TEI): `POST /predict`, `POST /embed`, `POST /embed_all`,
//!   `POST /tokenize`, `POST /decode`, `GET /info`;
//! - the Hugging Face Inference API shape that `huggingface_hub.InferenceClient` sends to a
//!   URL: `POST /` (text classification with `parameters`, feature extraction without);
//! - OpenAI: `POST /v1/embeddings` (texts or token ids), `GET /v1/models`.
//!
//! Scores are the head's own sigmoid probabilities, one per label: go_emotions is multi-label,
//! so the labels are not made to sum to 1 unless a client asks for `softmax`.

use crate::backend::LongTexts;
pub use crate::backend::SimpleToken;
use crate::request::RequestError;
use emotions_labels::LABELS;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One text or several.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TextInputs {
    One(String),
    Many(Vec<String>),
}

impl TextInputs {
    /// The texts, at least one and at most `max`.
    pub(crate) fn into_texts(
        self,
        field: &'static str,
        max: usize,
    ) -> Result<Vec<String>, RequestError> {
        let texts = match self {
            TextInputs::One(t) => vec![t],
            TextInputs::Many(t) => t,
        };
        if texts.is_empty() {
            return Err(RequestError::Empty(field));
        }
        if texts.len() > max {
            return Err(RequestError::TooMany {
                max,
                found: texts.len(),
            });
        }
        Ok(texts)
    }

    fn is_one(&self) -> bool {
        matches!(self, TextInputs::One(_))
    }
}

/// Lists of at least one and at most `max` items.
fn checked<T>(items: Vec<T>, field: &'static str, max: usize) -> Result<Vec<T>, RequestError> {
    if items.is_empty() {
        return Err(RequestError::Empty(field));
    }
    if items.len() > max {
        return Err(RequestError::TooMany {
            max,
            found: items.len(),
        });
    }
    Ok(items)
}

/// `POST /tokenize` (TEI): every token, uncut.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenizeRequest {
    pub inputs: TextInputs,
    #[serde(default = "yes")]
    pub add_special_tokens: bool,
    /// A sentence-transformers prompt's name; this model has none, so only `null`.
    #[serde(default)]
    pub prompt_name: Option<String>,
}

/// A token id: a JSON integer (`7592` or `7592.0`, as JSON Schema's `integer` allows) that
/// fits in 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenId(pub u32);

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        crate::request::whole(&n)
            .and_then(|v| u32::try_from(v).ok())
            .map(TokenId)
            .ok_or_else(|| serde::de::Error::custom(format!("expected a token id, found {n}")))
    }
}

impl utoipa::PartialSchema for TokenId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(0))
            .into()
    }
}

impl ToSchema for TokenId {}

pub(crate) fn ids(tokens: Vec<TokenId>) -> Vec<u32> {
    tokens.into_iter().map(|t| t.0).collect()
}

/// Token ids: one sequence or several.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum InputIds {
    One(Vec<TokenId>),
    Many(Vec<Vec<TokenId>>),
}

impl InputIds {
    pub(crate) fn into_sequences(
        self,
        field: &'static str,
        max: usize,
    ) -> Result<Vec<Vec<u32>>, RequestError> {
        match self {
            InputIds::One(one) => Ok(vec![ids(one)]),
            InputIds::Many(many) => Ok(checked(many, field, max)?.into_iter().map(ids).collect()),
        }
    }
}

/// `POST /decode` (TEI).
#[derive(Debug, Deserialize, ToSchema)]
pub struct DecodeRequest {
    pub ids: InputIds,
    #[serde(default = "yes")]
    pub skip_special_tokens: bool,
}

/// `POST /embed_all` (TEI): every token's vector, before pooling.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbedAllRequest {
    pub inputs: TextInputs,
    /// As on `/embed`; `long_texts` does not apply, since every token is answered.
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: Option<String>,
    #[serde(default)]
    pub prompt_name: Option<String>,
}

/// One OpenAI input: a text, or the model's own token ids (as TEI takes them).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OpenAiInputItem {
    Text(String),
    Ids(Vec<TokenId>),
}

/// OpenAI's `input`: one text or token-id sequence, or a list of them.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OpenAiInput {
    One(OpenAiInputItem),
    Many(Vec<OpenAiInputItem>),
}

impl OpenAiInput {
    pub(crate) fn into_items(
        self,
        field: &'static str,
        max: usize,
    ) -> Result<Vec<OpenAiInputItem>, RequestError> {
        match self {
            OpenAiInput::One(item) => Ok(vec![item]),
            OpenAiInput::Many(items) => checked(items, field, max),
        }
    }
}

/// `GET /v1/models` (OpenAI): the one model served.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiModels {
    /// Always `"list"`.
    pub object: &'static str,
    pub data: Vec<OpenAiModel>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiModel {
    pub id: String,
    /// Always `"model"`.
    pub object: &'static str,
    /// Seconds since the epoch when the server started.
    pub created: u64,
    pub owned_by: &'static str,
}

/// `POST /predict` (TEI). Unknown fields are ignored, as TEI does.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PredictRequest {
    pub inputs: TextInputs,
    /// The logits instead of the probabilities.
    #[serde(default)]
    pub raw_scores: bool,
    /// TEI's: `false` refuses (422) a text longer than the encoder's window instead of
    /// cutting it; the default cuts it (TEI's `--auto-truncate`).
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Accepted for compatibility: truncation keeps the start of a text.
    #[serde(default)]
    pub truncation_direction: Option<String>,
    /// This server's: `"chunk"` reads a long text whole, in overlapping windows (scores: each
    /// label's highest window; embeddings: their token-weighted mean). Default `"truncate"`.
    #[serde(default)]
    pub long_texts: Option<LongTexts>,
}

/// One label's score.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LabelScore {
    pub label: &'static str,
    pub score: f32,
}

/// How the Hugging Face Inference API turns the model's outputs into scores.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum FunctionToApply {
    /// Each label's own probability (the head's output): right for multi-label go_emotions.
    #[default]
    Sigmoid,
    /// A distribution over the 28 labels: they then compete, which a multi-label model's
    /// labels do not.
    Softmax,
    /// The logits.
    None,
}

/// `parameters` of a Hugging Face text-classification request.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ClassificationParameters {
    #[serde(default, deserialize_with = "whole_number")]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub function_to_apply: Option<FunctionToApply>,
}

/// `POST /` with `parameters`: `InferenceClient.text_classification`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TextClassificationRequest {
    pub inputs: TextInputs,
    pub parameters: ClassificationParameters,
    /// The feature-extraction fields, checked as there and unused here, so that `POST /`
    /// takes one shape of body whether `parameters` is there or not.
    #[serde(default = "yes")]
    pub normalize: bool,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: Option<String>,
    /// This server's: `"chunk"` reads a long text whole, in overlapping windows (scores: each
    /// label's highest window; embeddings: their token-weighted mean). Default `"truncate"`.
    #[serde(default)]
    pub long_texts: Option<LongTexts>,
}

/// `POST /embed` (TEI), and `POST /` without `parameters` (`InferenceClient.feature_extraction`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbedRequest {
    pub inputs: TextInputs,
    /// Unit-length rows (default). The encoder's own output either way for models with a
    /// Normalize module (all-MiniLM-L6-v2), whose rows are unit-length already.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// TEI's: `false` refuses (422) a text longer than the encoder's window instead of
    /// cutting it; the default cuts it (TEI's `--auto-truncate`).
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: Option<String>,
    /// This server's: `"chunk"` reads a long text whole, in overlapping windows (scores: each
    /// label's highest window; embeddings: their token-weighted mean). Default `"truncate"`.
    #[serde(default)]
    pub long_texts: Option<LongTexts>,
}

fn yes() -> bool {
    true
}

/// A JSON integer: `3` or `3.0`, as JSON Schema's `integer` (and Python's JSON) allow.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let Some(v) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    crate::request::whole(&v)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, found {v}")))
}

/// How OpenAI embeddings are encoded in the response.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    /// Little-endian f32 bytes, base64: what the OpenAI Python client asks for by default.
    Base64,
}

/// `POST /v1/embeddings` (OpenAI).
#[derive(Debug, Deserialize, ToSchema)]
pub struct OpenAiEmbeddingsRequest {
    pub input: OpenAiInput,
    /// Echoed back; the served encoder answers whatever the name.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// Only the encoder's own width is available.
    #[serde(default, deserialize_with = "whole_number")]
    pub dimensions: Option<usize>,
    #[serde(default)]
    pub user: Option<String>,
    /// As on `/embed`: `"chunk"` reads a long text whole. Default `"truncate"`.
    #[serde(default)]
    pub long_texts: Option<LongTexts>,
}

/// An embedding as a list of numbers or base64 bytes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingValue {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbedding {
    /// Always `"embedding"`.
    pub object: &'static str,
    pub index: usize,
    pub embedding: EmbeddingValue,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbeddingsResponse {
    /// Always `"list"`.
    pub object: &'static str,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiUsage,
}

/// `GET /info`, shaped as TEI answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    pub model_id: String,
    /// The name clients may use for the model (TEI's `--served-model-name`; here the model's).
    pub served_model_name: String,
    pub model_sha: Option<String>,
    pub model_dtype: &'static str,
    pub model_type: ModelType,
    pub max_concurrent_requests: usize,
    pub max_input_length: usize,
    pub max_batch_tokens: usize,
    pub max_batch_requests: Option<usize>,
    pub max_client_batch_size: usize,
    pub auto_truncate: bool,
    pub tokenization_workers: usize,
    pub version: &'static str,
    pub sha: Option<String>,
    pub docker_label: Option<String>,
}

/// TEI's `model_type`: this server is a classifier (it embeds too).
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelType {
    pub classifier: ClassifierInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClassifierInfo {
    pub id2label: std::collections::BTreeMap<String, String>,
    pub label2id: std::collections::BTreeMap<String, usize>,
}

impl ClassifierInfo {
    pub(crate) fn go_emotions() -> Self {
        ClassifierInfo {
            id2label: LABELS
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.to_string()))
                .collect(),
            label2id: LABELS
                .iter()
                .enumerate()
                .map(|(i, l)| (l.to_string(), i))
                .collect(),
        }
    }
}

/// The logit a probability came from, `ln(p / (1 - p))`, exact up to the probability's f32
/// rounding; probabilities that rounded to 0 or 1 give the logit of the nearest f32 inside.
pub(crate) fn logit(p: f32) -> f32 {
    let p = (p as f64).clamp(f32::MIN_POSITIVE as f64, 1.0 - f32::EPSILON as f64 / 2.0);
    (p.ln() - (1.0 - p).ln()) as f32
}

/// One text's 28 probabilities as scores under `function`, sorted by score, highest first
/// (ties: label order), cut to `top_k`.
pub(crate) fn ranked(
    probabilities: &[f32],
    function: FunctionToApply,
    top_k: Option<usize>,
) -> Vec<LabelScore> {
    let values: Vec<f32> = match function {
        FunctionToApply::Sigmoid => probabilities.to_vec(),
        FunctionToApply::None => probabilities.iter().map(|&p| logit(p)).collect(),
        FunctionToApply::Softmax => {
            let logits: Vec<f64> = probabilities.iter().map(|&p| logit(p) as f64).collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|z| (z - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.iter().map(|x| (x / sum) as f32).collect()
        }
    };
    let mut scores: Vec<LabelScore> = LABELS
        .iter()
        .zip(values)
        .map(|(&label, score)| LabelScore { label, score })
        .collect();
    scores.sort_by(|a, b| b.score.total_cmp(&a.score));
    scores.truncate(top_k.unwrap_or(LABELS.len()));
    scores
}

/// One list per text, or the only list itself for a single string (TEI's `/predict`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

pub(crate) fn one_or_many<T>(one: bool, mut rows: Vec<T>) -> OneOrMany<T> {
    if one && rows.len() == 1 {
        OneOrMany::One(rows.remove(0))
    } else {
        OneOrMany::Many(rows)
    }
}

impl PredictRequest {
    pub(crate) fn is_one(&self) -> bool {
        self.inputs.is_one()
    }
}

/// Little-endian f32 bytes, base64 (standard alphabet, padded).
pub(crate) fn base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_invert_the_sigmoid() {
        for z in [-9.0f64, -1.5, 0.0, 0.25, 4.0] {
            let p = (1.0 / (1.0 + (-z).exp())) as f32;
            assert!((logit(p) as f64 - z).abs() < 1e-5 * z.abs().max(1.0), "{z}");
        }
        assert!(logit(1.0).is_finite() && logit(0.0).is_finite());
    }

    #[test]
    fn ranking_sorts_cuts_and_applies_the_function() {
        let mut p = [0.01f32; 28];
        p[3] = 0.9;
        p[17] = 0.5;
        let top = ranked(&p, FunctionToApply::Sigmoid, Some(2));
        assert_eq!(
            top.iter().map(|s| (s.label, s.score)).collect::<Vec<_>>(),
            [(LABELS[3], 0.9), (LABELS[17], 0.5)]
        );
        let soft = ranked(&p, FunctionToApply::Softmax, None);
        assert_eq!(soft.len(), 28);
        let sum: f32 = soft.iter().map(|s| s.score).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        let raw = ranked(&p, FunctionToApply::None, Some(1));
        assert!((raw[0].score - (0.9f32 / 0.1).ln()).abs() < 1e-5);
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        // 1.0f32 = 00 00 80 3f.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(base64_f32(&[]), "");
    }
}
