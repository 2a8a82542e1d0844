//! The OpenAPI document of every route, generated from the handlers' annotations and the
//! request and response types.

use super::{AppState, json};
use crate::compat::{
    ClassificationParameters, ClassifierInfo, DecodeRequest, EmbedAllRequest, EmbedRequest,
    EmbeddingValue, EncodingFormat, FunctionToApply, Info, InputIds, LabelScore, ModelType,
    OpenAiEmbedding, OpenAiEmbeddingsRequest, OpenAiEmbeddingsResponse, OpenAiInput,
    OpenAiInputItem, OpenAiModel, OpenAiModels, OpenAiUsage, PredictRequest, SimpleToken,
    TextClassificationRequest, TextInputs, TokenizeRequest,
};
use crate::config::ServerConfig;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use emotions_labels::LABELS;
use serde_json::{Value, json};
use std::sync::Arc;

/// `GET /openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "emotions",
        description = "go_emotions classification and sentence embeddings; TEI, Hugging Face Inference and OpenAI compatible routes."
    ),
    paths(
        super::native::classify,
        super::tei::predict,
        super::hf::hf_inference,
        super::tei::embed,
        super::openai::openai_embeddings,
        super::openai::models,
        super::tei::tokenize,
        super::tei::decode,
        super::tei::embed_all,
        super::tei::info,
        super::health,
        super::labels,
        super::metrics_handler,
        openapi_json,
    ),
    components(schemas(
        TextInputs,
        PredictRequest,
        LabelScore,
        FunctionToApply,
        ClassificationParameters,
        TextClassificationRequest,
        EmbedRequest,
        EncodingFormat,
        OpenAiEmbeddingsRequest,
        EmbeddingValue,
        OpenAiEmbedding,
        OpenAiUsage,
        OpenAiEmbeddingsResponse,
        OpenAiInput,
        OpenAiInputItem,
        OpenAiModels,
        OpenAiModel,
        TokenizeRequest,
        SimpleToken,
        DecodeRequest,
        InputIds,
        EmbedAllRequest,
        Info,
        ModelType,
        ClassifierInfo,
    ))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This document")))]
pub(crate) async fn openapi_json(State(state): State<Arc<AppState>>) -> Response {
    let ids = TokenLimits {
        vocabulary: state.backend.vocabulary_size(),
        window: state.backend.max_input_length(),
    };
    let doc = document(&state.config, state.backend.dim(), ids);
    json(StatusCode::OK, doc.to_string())
}

/// What token-id inputs must be: below `vocabulary` (when known), and at most `window` long
/// where they are embedded.
#[derive(Debug, Clone, Copy)]
pub struct TokenLimits {
    pub vocabulary: Option<usize>,
    pub window: usize,
}

/// The OpenAPI document as this server keeps it: the derived one, with what the derive cannot
/// say written in. Requests: `minItems` and this server's `maxItems`, exactly one of
/// `inputs` and `embeddings` on `/classify`, each embedding exactly `dim` wide, `dimensions`
/// only the encoder's width, `top_k` from 1. Responses: one list or a list of lists as the
/// input was one text or several, and every error status a route can answer, with its JSON
/// body. schemathesis checks the server against it in `.ci/run`.
pub fn document(config: &ServerConfig, dim: usize, limits: TokenLimits) -> Value {
    use utoipa::OpenApi;
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    let max = config.max_inputs;
    let texts = json!({"oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": max},
    ]});
    let schemas = &mut doc["components"]["schemas"];
    schemas["TextInputs"] = texts.clone();
    schemas["ClassificationParameters"]["properties"]["top_k"] =
        json!({"type": ["integer", "null"], "minimum": 1});
    schemas["OpenAiEmbeddingsRequest"]["properties"]["dimensions"] =
        json!({"type": ["integer", "null"], "minimum": dim, "maximum": dim});
    // Token ids: the model's own (below its vocabulary), at least one per sequence, and no more
    // than its window where they are embedded. This model has no prompts.
    let mut id = json!({"type": "integer", "minimum": 0});
    if let Some(v) = limits.vocabulary {
        id["maximum"] = json!(v.saturating_sub(1));
    }
    let sequence = json!({"type": "array", "items": id, "minItems": 1});
    let mut embedded = sequence.clone();
    embedded["maxItems"] = json!(limits.window);
    schemas["InputIds"] = json!({"oneOf": [
        sequence,
        {"type": "array", "items": sequence, "minItems": 1, "maxItems": max},
    ]});
    schemas["OpenAiInputItem"] = json!({"oneOf": [{"type": "string"}, embedded]});
    schemas["OpenAiInput"] = json!({"oneOf": [
        {"$ref": "#/components/schemas/OpenAiInputItem"},
        {"type": "array", "items": {"$ref": "#/components/schemas/OpenAiInputItem"}, "minItems": 1, "maxItems": max},
    ]});
    for request in ["TokenizeRequest", "EmbedAllRequest"] {
        schemas[request]["properties"]["prompt_name"] = json!({"type": "null"});
    }
    schemas["ErrorBody"] = json!({
        "type": "object",
        "required": ["error", "error_type"],
        "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}},
    });
    let ranked = json!({"type": "array", "items": {"$ref": "#/components/schemas/LabelScore"}});
    // An embedding's numbers are f32: finite, and within its range.
    let f32_max = f64::from(f32::MAX);
    let embedding = json!({
        "type": "array",
        "items": {"type": "number", "minimum": -f32_max, "maximum": f32_max},
        "minItems": dim,
        "maxItems": dim,
    });
    let paths = &mut doc["paths"];

    let long_texts = json!({"enum": ["truncate", "chunk", null]});
    let classify_options = json!({
        "threshold": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "top_k": {"type": ["integer", "null"], "minimum": 1, "maximum": LABELS.len()},
        "raw_scores": {"type": ["boolean", "null"]},
        "truncate": {"type": ["boolean", "null"]},
        "long_texts": long_texts.clone(),
    });
    let with = |required: &str, value: Value| {
        let mut properties = classify_options.clone();
        properties[required] = value;
        json!({
            "type": "object",
            "required": [required],
            "properties": properties,
            "additionalProperties": false,
            // `threshold` and `top_k` are two ways to decide: one at a time.
            "not": {"required": ["threshold", "top_k"],
                    "properties": {"threshold": {"type": "number"}, "top_k": {"type": "integer"}}},
        })
    };
    paths["/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"] = json!({
        "oneOf": [
            with("inputs", texts),
            with("embeddings", json!({
                "type": "array", "items": embedding, "minItems": 1, "maxItems": max,
            })),
        ]
    });
    paths["/classify"]["post"]["responses"]["200"]["content"]["application/json"]["schema"] = json!({
        "type": "array",
        "items": {"type": "object", "properties": {
            "labels": {"type": "array", "items": {"type": "string"}},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}},
        }},
    });
    paths["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"] =
        json!({"oneOf": [ranked.clone(), {"type": "array", "items": ranked.clone()}]});
    // `POST /` is text classification with `parameters`, feature extraction without.
    paths["/"]["post"]["requestBody"]["content"]["application/json"]["schema"] = json!({
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {"$ref": "#/components/schemas/TextInputs"},
            "parameters": {"$ref": "#/components/schemas/ClassificationParameters"},
            "normalize": {"type": "boolean"},
            "truncate": {"type": ["boolean", "null"]},
            "truncation_direction": {"type": ["string", "null"]},
            "long_texts": long_texts,
        },
    });
    paths["/"]["post"]["responses"]["200"]["content"]["application/json"]["schema"] = json!({
        "anyOf": [
            {"type": "array", "items": ranked},
            {"type": "array", "items": embedding},
        ]
    });
    let errors = [
        (
            400,
            "A request the server cannot use: bad JSON, a missing or wrong field",
        ),
        (
            408,
            "The body took longer than --body-timeout-secs to arrive",
        ),
        (413, "A body over --max-body-bytes"),
        (415, "A Content-Type other than application/json"),
        (
            422,
            "A text the encoder cannot use (no tokens), or one longer than the encoder's window with `truncate: false`",
        ),
        (
            429,
            "Over --max-concurrent requests in flight, or the encoder's queue full",
        ),
        (500, "The model failed"),
        (503, "Over --request-timeout-secs, or shutting down"),
    ];
    if let Some(paths) = paths.as_object_mut() {
        for item in paths.values_mut() {
            let Some(responses) = item.get_mut("post").and_then(|p| p.get_mut("responses")) else {
                continue;
            };
            for (status, description) in errors {
                responses[status.to_string()] = json!({
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                });
            }
        }
    }
    doc
}
