//! The routes of text-embeddings-inference (TEI): `POST /predict`, `POST /embed`,
//! `POST /embed_all`, `POST /tokenize`, `POST /decode`, `GET /info`.

use super::{
    AppState, LongTextRequest, bad_request, blocking, blocking_each, char_limited, embed_texts,
    guarded, input_texts, json_value, normalise_rows, parse_json, ranked_scores, refuse_long_texts,
};
use crate::compat::{
    self, DecodeRequest, EmbedAllRequest, EmbedRequest, FunctionToApply, Info, LabelScore,
    PredictRequest, SimpleToken, TokenizeRequest,
};
use crate::request::RequestError;
use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::Arc;

/// `POST /predict` (TEI): every label's score, highest first; one list for a string, a list
/// of lists for an array.
#[utoipa::path(post, path = "/predict", request_body = PredictRequest,
    responses((status = 200, description = "Scores, highest first", body = Vec<Vec<LabelScore>>),
              (status = 400, description = "Bad request")))]
pub(crate) async fn predict(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/predict", request, |state, body| async move {
        let req: PredictRequest = parse_json(&body)?;
        let one = req.is_one();
        let function = if req.raw_scores {
            FunctionToApply::None
        } else {
            FunctionToApply::Sigmoid
        };
        let long = LongTextRequest::new(req.truncate, req.long_texts);
        let rows = ranked_scores(&state, req.inputs, function, None, long).await?;
        Ok(json_value(&compat::one_or_many(one, rows)))
    })
    .await
}

/// `POST /embed` (TEI): one embedding per input, always a list of lists.
#[utoipa::path(post, path = "/embed", request_body = EmbedRequest,
    responses((status = 200, description = "One embedding per input", body = Vec<Vec<f32>>),
              (status = 400, description = "Bad request")))]
pub(crate) async fn embed(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/embed", request, |state, body| async move {
        embed_body(&state, &body).await
    })
    .await
}

pub(crate) async fn embed_body(state: &AppState, body: &[u8]) -> Result<Response, Response> {
    let req: EmbedRequest = parse_json(body)?;
    let texts = input_texts(state, req.inputs)?;
    let dim = state.backend.dim();
    let long = LongTextRequest::new(req.truncate, req.long_texts);
    let mut embeddings = embed_texts(state, texts, false, long).await?;
    // Rows that are unit-length already stay bit-identical to `emotions embed`.
    if req.normalize && !state.backend.normalizes() {
        normalise_rows(&mut embeddings, dim);
    }
    let rows: Vec<&[f32]> = embeddings.chunks(dim.max(1)).collect();
    Ok(json_value(&rows))
}

/// `GET /info`, as TEI answers it.
#[utoipa::path(get, path = "/info", responses((status = 200, body = Info)))]
pub(crate) async fn info(State(state): State<Arc<AppState>>) -> Response {
    let c = &state.config;
    json_value(&Info {
        model_id: state.backend.model_name(),
        served_model_name: state.backend.model_name(),
        model_sha: None,
        model_dtype: "float32",
        model_type: compat::ModelType {
            classifier: compat::ClassifierInfo::go_emotions(),
        },
        max_concurrent_requests: c.max_concurrent,
        max_input_length: state.backend.max_input_length(),
        max_batch_tokens: c.max_batch * state.backend.max_input_length(),
        max_batch_requests: Some(c.max_batch),
        max_client_batch_size: c.max_inputs,
        auto_truncate: true,
        tokenization_workers: 1,
        version: env!("CARGO_PKG_VERSION"),
        sha: None,
        docker_label: None,
    })
}

/// `POST /tokenize` (TEI): every token of each text, uncut; always a list of lists.
#[utoipa::path(post, path = "/tokenize", request_body = TokenizeRequest,
    responses((status = 200, description = "The tokens of each input", body = Vec<Vec<SimpleToken>>),
              (status = 400, description = "Bad request")))]
pub(crate) async fn tokenize(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/tokenize", request, |state, body| async move {
        let req: TokenizeRequest = parse_json(&body)?;
        no_prompts(req.prompt_name.as_deref())?;
        let texts = char_limited(&state, input_texts(&state, req.inputs)?);
        let add = req.add_special_tokens;
        let tokens = blocking_each(&state, texts, move |b, t| b.tokenize(t, add)).await?;
        Ok(json_value(&tokens))
    })
    .await
}

/// `POST /decode` (TEI): the text of each token-id sequence; always a list.
#[utoipa::path(post, path = "/decode", request_body = DecodeRequest,
    responses((status = 200, description = "The text of each sequence", body = Vec<String>),
              (status = 400, description = "Bad request")))]
pub(crate) async fn decode(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/decode", request, |state, body| async move {
        let req: DecodeRequest = parse_json(&body)?;
        let sequences = req
            .ids
            .into_sequences("ids", state.config.max_inputs)
            .map_err(bad_request)?;
        if sequences.iter().any(Vec::is_empty) {
            return Err(bad_request(RequestError::Empty("ids")));
        }
        let skip = req.skip_special_tokens;
        let texts = blocking_each(&state, sequences, move |b, ids| b.decode(ids, skip)).await?;
        Ok(json_value(&texts))
    })
    .await
}

/// `POST /embed_all` (TEI): every token's vector of each text, before pooling.
#[utoipa::path(post, path = "/embed_all", request_body = EmbedAllRequest,
    responses((status = 200, description = "Per input, one vector per token", body = Vec<Vec<Vec<f32>>>),
              (status = 400, description = "Bad request")))]
pub(crate) async fn embed_all(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/embed_all", request, |state, body| async move {
        let req: EmbedAllRequest = parse_json(&body)?;
        no_prompts(req.prompt_name.as_deref())?;
        let texts = char_limited(&state, input_texts(&state, req.inputs)?);
        if req.truncate == Some(false) {
            refuse_long_texts(&state, &texts)?;
        }
        let dim = state.backend.dim();
        let states = blocking(&state, move |b| b.token_states(&texts)).await?;
        let rows: Vec<Vec<&[f32]>> = states
            .iter()
            .map(|s| s.chunks(dim.max(1)).collect())
            .collect();
        Ok(json_value(&rows))
    })
    .await
}

/// This model has no sentence-transformers prompts: a `prompt_name` cannot be applied.
fn no_prompts(name: Option<&str>) -> Result<(), Response> {
    match name {
        None => Ok(()),
        Some(name) => Err(super::error(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            format!("prompt_name {name:?}: this model has no prompts"),
        )),
    }
}
