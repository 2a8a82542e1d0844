//! `POST /classify`, this server's own route.

use super::{AppState, LongTextRequest, ScoresOnly, bad_request, guarded, json_value, score_texts};
use crate::batcher::no_panic;
use crate::request::{Inputs, parse_request};
use axum::extract::{Request, State};
use axum::response::Response;
use emotions_labels::DecisionPolicy;
use std::sync::Arc;

/// `POST /classify`, this server's own route: decisions and scores per input.
#[utoipa::path(post, path = "/classify",
    request_body(content = Object, description = "`{\"inputs\": text | [texts]}` or `{\"embeddings\": [[f32; dim], ...]}`; optional `threshold`, `top_k`, `raw_scores`"),
    responses((status = 200, description = "One `{labels, scores}` per input", body = Vec<Object>),
              (status = 400, description = "Bad request")))]
pub(crate) async fn classify(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/classify", request, |state, body| async move {
        classify_body(&state, &body).await
    })
    .await
}

async fn classify_body(state: &AppState, body: &[u8]) -> Result<Response, Response> {
    let req =
        parse_request(body, state.config.max_inputs, state.backend.dim()).map_err(bad_request)?;
    let policy = match (req.threshold, req.top_k) {
        (Some(t), _) => DecisionPolicy::Fixed(t),
        (None, Some(k)) => DecisionPolicy::TopK(k),
        (None, None) => state.backend.policy().clone(),
    };
    let scores = match req.inputs {
        Inputs::Embeddings { rows, data } => {
            no_panic(|| state.backend.scores(&data, rows)).map_err(|e| e.response("model"))?
        }
        Inputs::Texts(texts) => {
            let long = LongTextRequest::new(req.truncate, req.long_texts);
            score_texts(state, texts, long).await?
        }
    };
    let predictions = policy.decide_rows(&scores);
    Ok(if req.raw_scores {
        json_value(&predictions.iter().map(ScoresOnly).collect::<Vec<_>>())
    } else {
        json_value(&predictions)
    })
}
