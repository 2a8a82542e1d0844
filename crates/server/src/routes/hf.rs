//! `POST /`, what `huggingface_hub.InferenceClient` sends to a URL.

use super::tei::embed_body;
use super::{
    AppState, LongTextRequest, bad_request, guarded, json_value, parse_json, ranked_scores,
};
use crate::compat::{LabelScore, TextClassificationRequest};
use crate::request::RequestError;
use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::Arc;

/// `POST /`: what `huggingface_hub.InferenceClient` sends to a URL. With `parameters`, text
/// classification (`[[{label, score}, ...]]`, one list per input); without, feature extraction
/// (`[[f32; dim], ...]`).
#[utoipa::path(post, path = "/", request_body = TextClassificationRequest,
    responses((status = 200, description = "Text classification: one list per input; feature extraction (a body without `parameters`, as EmbedRequest): one embedding per input", body = Vec<Vec<LabelScore>>),
              (status = 400, description = "Bad request")))]
pub(crate) async fn hf_inference(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/", request, |state, body| async move {
        let value: serde_json::Value = parse_json(&body)?;
        match value.get("parameters") {
            None => return embed_body(&state, &body).await,
            Some(p) if !p.is_object() => {
                return Err(bad_request(RequestError::FieldType {
                    field: "parameters".into(),
                    expected: "an object",
                    found: p.to_string().chars().take(40).collect(),
                }));
            }
            Some(_) => {}
        }
        let req: TextClassificationRequest = parse_json(&body)?;
        let function = req.parameters.function_to_apply.unwrap_or_default();
        let top_k = req.parameters.top_k;
        if top_k == Some(0) {
            return Err(bad_request(RequestError::FieldType {
                field: "parameters.top_k".into(),
                expected: "a whole number of at least 1",
                found: "0".into(),
            }));
        }
        let long = LongTextRequest::new(req.truncate, req.long_texts);
        let rows = ranked_scores(&state, req.inputs, function, top_k, long).await?;
        Ok(json_value(&rows))
    })
    .await
}
