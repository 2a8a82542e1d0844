//! The HTTP routes, one module per API they follow: [`native`] (`/classify`), [`tei`] (text
//! embeddings inference: `/predict`, `/embed`, `/info`), [`hf`] (`POST /` for
//! `huggingface_hub`), [`openai`] (`/v1/embeddings`); the rest (`/health`, `/labels`,
//! `/metrics`, `/openapi.json`) and what every route shares are here.

pub(crate) mod hf;
pub(crate) mod native;
pub(crate) mod openai;
pub(crate) mod openapi;
pub(crate) mod tei;

use crate::backend::{Backend, BackendError, LongTexts};
use crate::batcher::{Batcher, JobKind, Refused};
use crate::compat::{self, FunctionToApply, LabelScore, TextInputs};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::request::RequestError;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emotions_labels::{DecisionPolicy, LABELS, LabelScores, Prediction};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// What every handler reads.
pub(crate) struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) config: ServerConfig,
    pub(crate) permits: Semaphore,
    pub(crate) batcher: Batcher,
    pub(crate) metrics: Arc<Metrics>,
    /// When the server started, in seconds since the epoch (`/v1/models`' `created`).
    pub(crate) started_unix: u64,
}

/// The router, with its batcher running on a thread of its own. Fails only when that thread
/// cannot be started.
pub fn router(backend: Arc<dyn Backend>, config: ServerConfig) -> std::io::Result<Router> {
    let metrics = Arc::new(Metrics::default());
    let batcher = Batcher::start(backend.clone(), &config, metrics.clone())?;
    let state = Arc::new(AppState {
        backend,
        permits: Semaphore::new(config.max_concurrent),
        config,
        batcher,
        metrics,
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    Ok(Router::new()
        .route("/classify", post(native::classify))
        .route("/predict", post(tei::predict))
        .route("/", post(hf::hf_inference))
        .route("/embed", post(tei::embed))
        .route("/embed_all", post(tei::embed_all))
        .route("/tokenize", post(tei::tokenize))
        .route("/decode", post(tei::decode))
        .route("/v1/embeddings", post(openai::openai_embeddings))
        .route("/v1/models", get(openai::models))
        .route("/info", get(tei::info))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/health", get(health))
        .route("/labels", get(labels))
        .route("/metrics", get(metrics_handler))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state))
}

impl BackendError {
    /// The status, `error_type` and message (the error and its causes) of the JSON answer.
    pub(crate) fn response(&self, stage: &str) -> Response {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            message += &format!(": {e}");
            source = e.source();
        }
        match self {
            BackendError::Input(_) => {
                error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
            }
            BackendError::Model(_) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("{stage}_error"),
                message,
            ),
        }
    }
}

/// A JSON error response.
pub(crate) fn error(status: StatusCode, error_type: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": message.into(), "error_type": error_type});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(crate) async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /classify, /predict, /embed, /embed_all, /tokenize, /decode, /v1/embeddings, /v1/models, / (POST), /info, /labels, /health, /metrics, /openapi.json",
    )
}

#[utoipa::path(get, path = "/health", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.batcher.is_alive() {
        json(StatusCode::OK, r#"{"status":"ok"}"#.into())
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy",
            "the encoder's batcher has stopped",
        )
    }
}

pub(crate) async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; scoring and embedding routes take POST with a JSON body",
    )
}

#[utoipa::path(get, path = "/labels", responses((status = 200, description = "Labels, thresholds, model and encoder", body = Object)))]
pub(crate) async fn labels(State(state): State<Arc<AppState>>) -> Response {
    let thresholds = match state.backend.policy() {
        DecisionPolicy::PerLabel(t) => serde_json::json!(
            LABELS
                .iter()
                .zip(t.as_array())
                .map(|(l, t)| (l.to_string(), short_f32(*t)))
                .collect::<serde_json::Map<_, _>>()
        ),
        DecisionPolicy::Fixed(t) => short_f32(*t),
        DecisionPolicy::TopK(k) => serde_json::json!({ "top_k": k }),
    };
    let body = serde_json::json!({
        "labels": LABELS,
        "thresholds": thresholds,
        "model": state.backend.model_name(),
        "encoder": state.backend.encoder_name(),
    });
    json(StatusCode::OK, body.to_string())
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Runs a POST handler under the shared limits (a concurrency slot, else 429; the body size,
/// else 413) and counts it in the metrics under `route`. The handler answers `Ok` or, having
/// stopped early, `Err` with its error response; either is the answer.
pub(crate) async fn guarded<F, Fut>(
    state: Arc<AppState>,
    route: &'static str,
    request: Request,
    handle: F,
) -> Response
where
    F: FnOnce(Arc<AppState>, axum::body::Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<Response, Response>>,
{
    let started = Instant::now();
    let response = guarded_inner(&state, request, handle).await;
    state
        .metrics
        .observe_request(route, response.status().as_u16(), started.elapsed());
    response
}

async fn guarded_inner<F, Fut>(state: &Arc<AppState>, request: Request, handle: F) -> Response
where
    F: FnOnce(Arc<AppState>, axum::body::Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<Response, Response>>,
{
    let c = &state.config;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body over {} bytes", c.max_body_bytes),
        )
    };
    let headers = request.headers();
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > c.max_body_bytes as u64) {
        return too_large();
    }
    if let Some(kind) = headers.get(header::CONTENT_TYPE)
        && !kind.to_str().is_ok_and(|k| {
            k.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "expected Content-Type application/json, found {}",
                String::from_utf8_lossy(kind.as_bytes())
            ),
        );
    }
    // The body is read before a concurrency slot is taken, so that slow uploads hold none.
    let body = Body::new(request.into_body());
    let body =
        match tokio::time::timeout(c.body_timeout, axum::body::to_bytes(body, c.max_body_bytes))
            .await
        {
            Ok(Ok(body)) => body,
            // Over the limit is 413; a body cut short or badly chunked is the client's 400.
            Ok(Err(e)) if is_length_limit(&e) => return too_large(),
            Ok(Err(e)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("the request body could not be read: {}", error_chain(&e)),
                );
            }
            Err(_) => {
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("the request body took over {:?} to arrive", c.body_timeout),
                );
            }
        };
    let Ok(_permit) = state.permits.try_acquire() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!(
                "more than {} requests in flight; retry later",
                c.max_concurrent
            ),
        );
    };
    match tokio::time::timeout(c.request_timeout, handle(state.clone(), body)).await {
        Ok(Ok(response) | Err(response)) => response,
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "deadline_exceeded",
            format!("the request took over {:?}", c.request_timeout),
        ),
    }
}

/// Whether a body read failed on the size limit (not on the client's framing).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// An error and its sources, as one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = err.source();
    }
    out
}

/// What a request asks of texts longer than the encoder's window: TEI's `truncate` (`false`:
/// refuse them) and this server's `long_texts` (`chunk`: read them whole).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LongTextRequest {
    pub(crate) long: LongTexts,
    /// Answer 422 for a text longer than the window instead of cutting it.
    pub(crate) refuse: bool,
}

impl LongTextRequest {
    /// `truncate: false` refuses long texts unless `long_texts` is `chunk`, which reads them
    /// whole; `truncate: false` wins over `long_texts: "truncate"`, since nothing is then cut.
    pub(crate) fn new(truncate: Option<bool>, long: Option<LongTexts>) -> Self {
        let long = long.unwrap_or_default();
        LongTextRequest {
            long,
            refuse: truncate == Some(false) && long == LongTexts::Truncate,
        }
    }
}

/// Embeds or scores texts through the micro-batcher, each cut to `max_text_chars` first:
/// scores ([`Backend::score_texts`]) or embeddings ([`Backend::embed_texts`]), `width` values
/// per text. A text longer than the window is read as `long` says, or refused.
pub(crate) async fn embed_texts(
    state: &AppState,
    texts: Vec<String>,
    scores: bool,
    long: LongTextRequest,
) -> Result<Vec<f32>, Response> {
    let texts = char_limited(state, texts);
    if long.refuse {
        refuse_long_texts(state, &texts)?;
    }
    let kind = JobKind {
        scores,
        long: long.long,
    };
    let shutting_down = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        )
    };
    match state.batcher.submit(texts, kind).await {
        Ok(Ok(e)) => Ok(e),
        Ok(Err(e)) => Err(e.response("encoder")),
        Err(Refused::Full(depth)) => Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            format!("{depth} requests are waiting for the encoder; retry later"),
        )),
        Err(Refused::Closed) => Err(shutting_down()),
    }
}

/// A request's texts, at least one and at most `--max-inputs`; a 400 otherwise.
pub(crate) fn input_texts(state: &AppState, inputs: TextInputs) -> Result<Vec<String>, Response> {
    inputs
        .into_texts("inputs", state.config.max_inputs)
        .map_err(bad_request)
}

/// Texts cut to `--max-text-chars`.
pub(crate) fn char_limited(state: &AppState, texts: Vec<String>) -> Vec<String> {
    texts
        .into_iter()
        .map(|t| truncate_chars(t, state.config.max_text_chars))
        .collect()
}

/// A 422 for the first text longer than the encoder's window, as TEI answers `truncate:
/// false` (its message; 422 since its #818, 413 before).
pub(crate) fn refuse_long_texts(state: &AppState, texts: &[String]) -> Result<(), Response> {
    let first = state
        .backend
        .first_long_text(texts)
        .map_err(|e| e.response("tokenizer"))?;
    match first {
        None => Ok(()),
        Some((index, tokens)) => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            format!(
                "`inputs` must have less than {} tokens. Given: {tokens} (input {index}; send \"truncate\": true to cut it, or \"long_texts\": \"chunk\" to read it whole)",
                state.backend.max_input_length()
            ),
        )),
    }
}

/// Runs `f` on the backend on tokio's blocking pool, so the server's threads go on answering;
/// a panic in it is a 500, as in the batcher.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn Backend) -> Result<T, BackendError> + Send + 'static,
) -> Result<T, Response> {
    let backend = state.backend.clone();
    match tokio::task::spawn_blocking(move || crate::batcher::no_panic(|| f(&*backend))).await {
        Ok(result) => result.map_err(|e| e.response("encoder")),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoder_error",
            format!("the encoder's task failed: {e}"),
        )),
    }
}

/// `f(backend, item)` for each item, in order, on the blocking pool ([`blocking`]); the first
/// error answers.
pub(crate) async fn blocking_each<I: Send + 'static, T: Send + 'static>(
    state: &AppState,
    items: Vec<I>,
    f: impl Fn(&dyn Backend, &I) -> Result<T, BackendError> + Send + 'static,
) -> Result<Vec<T>, Response> {
    blocking(state, move |b| {
        items.iter().map(|item| f(b, item)).collect()
    })
    .await
}

/// The 28 positive scores of each text, `texts.len() * 28`.
pub(crate) async fn score_texts(
    state: &AppState,
    texts: Vec<String>,
    long: LongTextRequest,
) -> Result<Vec<f32>, Response> {
    embed_texts(state, texts, true, long).await
}

/// Each text's labels and scores under `function`, highest first, cut at `top_k`.
pub(crate) async fn ranked_scores(
    state: &AppState,
    inputs: TextInputs,
    function: FunctionToApply,
    top_k: Option<usize>,
    long: LongTextRequest,
) -> Result<Vec<Vec<LabelScore>>, Response> {
    let texts = input_texts(state, inputs)?;
    let scores = score_texts(state, texts, long).await?;
    Ok(scores
        .chunks(LABELS.len())
        .map(|p| compat::ranked(p, function, top_k))
        .collect())
}

pub(crate) fn bad_request(e: RequestError) -> Response {
    error(StatusCode::BAD_REQUEST, e.error_type(), e.to_string())
}

/// A typed body, or a 400 that says what is wrong with it.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let error_type = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => "malformed_json",
            Category::Data => "invalid_request",
        };
        error(StatusCode::BAD_REQUEST, error_type, e.to_string())
    })
}

pub(crate) fn json_value(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "serialisation_error",
            e.to_string(),
        ),
    }
}

/// Rows of `dim` values, each scaled to unit length.
pub(crate) fn normalise_rows(values: &mut [f32], dim: usize) {
    for row in values.chunks_mut(dim.max(1)) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
}

/// `{"scores": {...}}` without decisions.
pub(crate) struct ScoresOnly<'a>(&'a Prediction);

impl serde::Serialize for ScoresOnly<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("scores", &LabelScores(self.0.scores()))?;
        m.end()
    }
}

pub(crate) fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
    }
    s
}

/// An f32 as the JSON number it prints as ("0.3", not 0.30000001192092896).
pub(crate) fn short_f32(x: f32) -> serde_json::Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(super::truncate_chars("héllo wörld".into(), 4), "héll");
        assert_eq!(super::truncate_chars("abc".into(), 10), "abc");
    }
}
