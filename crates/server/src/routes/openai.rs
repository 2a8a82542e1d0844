//! `POST /v1/embeddings`, as OpenAI's embeddings API.

use super::{
    AppState, LongTextRequest, bad_request, embed_texts, guarded, json_value, parse_json,
    truncate_chars,
};
use crate::compat::{self, EncodingFormat, OpenAiEmbeddingsRequest, OpenAiEmbeddingsResponse};
use crate::request::RequestError;
use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::Arc;

/// `POST /v1/embeddings` (OpenAI).
#[utoipa::path(post, path = "/v1/embeddings", request_body = OpenAiEmbeddingsRequest,
    responses((status = 200, description = "Embeddings and token usage", body = OpenAiEmbeddingsResponse),
              (status = 400, description = "Bad request")))]
pub(crate) async fn openai_embeddings(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Response {
    guarded(state, "/v1/embeddings", request, |state, body| async move {
        let run = async {
            let req: OpenAiEmbeddingsRequest = parse_json(&body)?;
            let dim = state.backend.dim();
            if let Some(d) = req.dimensions.filter(|&d| d != dim) {
                return Err(bad_request(RequestError::FieldType {
                    field: "dimensions".into(),
                    expected: "the encoder's width",
                    found: format!("{d} (the encoder makes {dim})"),
                }));
            }
            let texts = req
                .input
                .into_texts("input", state.config.max_inputs)
                .map_err(bad_request)?;
            let texts: Vec<String> = texts
                .into_iter()
                .map(|t| truncate_chars(t, state.config.max_text_chars))
                .collect();
            let tokens: usize = state
                .backend
                .count_tokens(&texts)
                .map_err(|e| e.response("tokenizer"))?
                .iter()
                .sum();
            let long = LongTextRequest::new(None, req.long_texts);
            let embeddings = embed_texts(&state, texts, false, long).await?;
            let base64 = req.encoding_format == Some(EncodingFormat::Base64);
            let data = embeddings
                .chunks(dim.max(1))
                .enumerate()
                .map(|(index, e)| compat::OpenAiEmbedding {
                    object: "embedding",
                    index,
                    embedding: if base64 {
                        compat::EmbeddingValue::Base64(compat::base64_f32(e))
                    } else {
                        compat::EmbeddingValue::Float(e.to_vec())
                    },
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
        };
        run.await.unwrap_or_else(|r: Response| r)
    })
    .await
}
