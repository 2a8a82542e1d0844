//! `POST /v1/embeddings` and `GET /v1/models`, as OpenAI's API.

use super::{
    AppState, LongTextRequest, bad_request, blocking, char_limited, embed_texts, guarded,
    json_value, parse_json,
};
use crate::compat::{
    self, EncodingFormat, OpenAiEmbeddingsRequest, OpenAiEmbeddingsResponse, OpenAiInputItem,
    OpenAiModel, OpenAiModels,
};
use crate::request::RequestError;
use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::Arc;

/// `POST /v1/embeddings` (OpenAI). `input` may hold texts or token-id arrays (the model's own
/// ids, as TEI takes them), mixed.
#[utoipa::path(post, path = "/v1/embeddings", request_body = OpenAiEmbeddingsRequest,
    responses((status = 200, description = "Embeddings and token usage", body = OpenAiEmbeddingsResponse),
              (status = 400, description = "Bad request")))]
pub(crate) async fn openai_embeddings(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Response {
    guarded(state, "/v1/embeddings", request, |state, body| async move {
        let req: OpenAiEmbeddingsRequest = parse_json(&body)?;
        let dim = state.backend.dim();
        if let Some(d) = req.dimensions.filter(|&d| d != dim) {
            return Err(bad_request(RequestError::FieldType {
                field: "dimensions".into(),
                expected: "the encoder's width",
                found: format!("{d} (the encoder makes {dim})"),
            }));
        }
        let items = req
            .input
            .into_items("input", state.config.max_inputs)
            .map_err(bad_request)?;
        // Texts go through the micro-batcher; token ids straight to the encoder. Each
        // keeps its place in the answer.
        let (mut texts, mut ids, mut order) = (Vec::new(), Vec::new(), Vec::new());
        for item in items {
            match item {
                OpenAiInputItem::Text(t) => {
                    order.push((true, texts.len()));
                    texts.push(t);
                }
                OpenAiInputItem::Ids(i) => {
                    order.push((false, ids.len()));
                    ids.push(compat::ids(i));
                }
            }
        }
        if ids.iter().any(Vec::is_empty) {
            return Err(bad_request(RequestError::Empty("input")));
        }
        let texts = char_limited(&state, texts);
        let mut tokens: usize = ids.iter().map(Vec::len).sum();
        if !texts.is_empty() {
            tokens += state
                .backend
                .count_tokens(&texts)
                .map_err(|e| e.response("tokenizer"))?
                .iter()
                .sum::<usize>();
        }
        let from_texts = if texts.is_empty() {
            Vec::new()
        } else {
            let long = LongTextRequest::new(None, req.long_texts);
            embed_texts(&state, texts, false, long).await?
        };
        let from_ids = if ids.is_empty() {
            Vec::new()
        } else {
            blocking(&state, move |b| b.embed_token_ids(&ids)).await?
        };
        let base64 = req.encoding_format == Some(EncodingFormat::Base64);
        let data = order
            .iter()
            .enumerate()
            .map(|(index, &(text, i))| {
                let rows = if text { &from_texts } else { &from_ids };
                let e = &rows[i * dim..(i + 1) * dim];
                compat::OpenAiEmbedding {
                    object: "embedding",
                    index,
                    embedding: if base64 {
                        compat::EmbeddingValue::Base64(compat::base64_f32(e))
                    } else {
                        compat::EmbeddingValue::Float(e.to_vec())
                    },
                }
            })
            .collect();
        Ok(json_value(&OpenAiEmbeddingsResponse {
            object: "list",
            data,
            model: req.model.unwrap_or_else(|| state.backend.encoder_name()),
            usage: compat::OpenAiUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        }))
    })
    .await
}

/// `GET /v1/models` (OpenAI): the one encoder served.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, body = OpenAiModels)))]
pub(crate) async fn models(State(state): State<Arc<AppState>>) -> Response {
    json_value(&OpenAiModels {
        object: "list",
        data: vec![OpenAiModel {
            id: state.backend.encoder_name(),
            object: "model",
            created: state.started_unix,
            owned_by: "emotions",
        }],
    })
}
