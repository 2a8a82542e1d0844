//! The `emotions serve` HTTP server.
//!
//! - `POST /classify` with `{"inputs": "text" | ["text", ...]}` or `{"embeddings": [[...], ...]}`,
//!   optional `"threshold"`, `"top_k"` and `"raw_scores"`; answers a JSON array with one
//!   `{"labels": [...], "scores": {...}}` per input (with `"raw_scores": true`, `scores` only);
//! - `GET /health`, `GET /labels`, `GET /metrics` (Prometheus text format).
//!
//! Bad requests get a 4xx JSON `{"error": "...", "error_type": "..."}`. Concurrent text requests
//! are micro-batched: the batcher waits at most `batch_wait` for more texts, then embeds them in
//! one call.

#![forbid(unsafe_code)]
// Handlers short-circuit with a ready error `Response`; it is built once per failed request.
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emotions_labels::{DecisionPolicy, LABELS, LabelScores, Prediction};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, oneshot};

mod compat;
mod metrics;
mod openapi;
mod request;
pub use compat::{
    ClassificationParameters, EmbedRequest, EncodingFormat, FunctionToApply, Info, LabelScore,
    OpenAiEmbeddingsRequest, OpenAiEmbeddingsResponse, PredictRequest, TextClassificationRequest,
    TextInputs,
};
pub use openapi::ApiDoc;
pub use request::{ClassifyRequest, Inputs, RequestError, parse_request};

/// Why a [`Backend`] call failed, with the backend's own error as the source.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The input cannot be processed (a text the tokenizer rejects, a non-finite number): the
    /// client's fault, answered with a 422.
    #[error("the input cannot be processed")]
    Input(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The encoder or the head failed: the server's fault, answered with a 500.
    #[error("the model failed")]
    Model(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BackendError {
    /// The status, `error_type` and message (the error and its causes) of the JSON answer.
    fn response(&self, stage: &str) -> Response {
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

/// What the server needs from a classifier; the `emotions` crate implements it.
pub trait Backend: Send + Sync + 'static {
    /// Embedding width the head takes.
    fn dim(&self) -> usize;
    /// Sentence embeddings of texts, `texts.len() * dim()` values: what the embedding
    /// endpoints return.
    fn embed(&self, texts: &[String]) -> Result<Vec<f32>, BackendError>;
    /// What the head scores for texts, `texts.len() * dim()` values: the embeddings of an
    /// encoder adapted to the head, where the head has one.
    fn features(&self, texts: &[String]) -> Result<Vec<f32>, BackendError> {
        self.embed(texts)
    }
    /// Positive scores, `rows * 28`.
    fn scores(&self, embeddings: &[f32], rows: usize) -> Result<Vec<f32>, BackendError>;
    /// Tokens per text after truncation, special tokens included (OpenAI's `usage`).
    fn count_tokens(&self, texts: &[String]) -> Result<Vec<usize>, BackendError>;
    /// Whether [`Backend::embed`] already returns unit-length rows.
    fn normalizes(&self) -> bool;
    /// Tokens per text the encoder keeps (TEI's `max_input_length`).
    fn max_input_length(&self) -> usize;
    /// The default decision policy.
    fn policy(&self) -> &DecisionPolicy;
    /// Names shown by `/labels`.
    fn model_name(&self) -> String;
    fn encoder_name(&self) -> String;
}

/// Limits and tunables, each with a flag in `emotions serve`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_inputs: usize,
    /// Texts longer than this many characters are cut here before tokenising (the encoder
    /// truncates to its max_seq_length tokens anyway).
    pub max_text_chars: usize,
    pub max_body_bytes: usize,
    /// Requests in flight at once; more get 429.
    pub max_concurrent: usize,
    /// Texts per encoder call when batching requests together.
    pub max_batch: usize,
    /// How long the batcher waits for more texts.
    pub batch_wait: Duration,
    /// How long a client may take to send a request's headers; then the connection is closed.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body; then 408.
    pub body_timeout: Duration,
    /// How long a request may take once its body is in; then 503.
    pub request_timeout: Duration,
    /// After a shutdown signal, how long in-flight connections may take before they are cut.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_inputs: 64,
            max_text_chars: 10_000,
            max_body_bytes: 1 << 20,
            max_concurrent: 64,
            max_batch: 64,
            batch_wait: Duration::from_millis(2),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

struct Job {
    texts: Vec<String>,
    /// For the head ([`Backend::features`]) rather than an embedding endpoint.
    for_head: bool,
    /// Shared by every job of a failed batch.
    reply: oneshot::Sender<Result<Vec<f32>, Arc<BackendError>>>,
}

struct AppState {
    backend: Arc<dyn Backend>,
    config: ServerConfig,
    permits: Semaphore,
    batcher: mpsc::Sender<Job>,
    /// False once the batcher thread has ended (it should not); `/health` then says 503.
    batcher_alive: std::sync::atomic::AtomicBool,
    metrics: metrics::Metrics,
}

/// The router, with its batcher running on a dedicated thread.
pub fn router(backend: Arc<dyn Backend>, config: ServerConfig) -> Router {
    let (tx, rx) = mpsc::channel::<Job>(1024);
    let state = Arc::new(AppState {
        backend: backend.clone(),
        permits: Semaphore::new(config.max_concurrent),
        config: config.clone(),
        batcher: tx,
        batcher_alive: std::sync::atomic::AtomicBool::new(true),
        metrics: metrics::Metrics::default(),
    });
    let batch_state = state.clone();
    std::thread::Builder::new()
        .name("emotions-batcher".into())
        .spawn(move || {
            /// Marks the batcher dead however its thread ends.
            struct Alive(Arc<AppState>);
            impl Drop for Alive {
                fn drop(&mut self) {
                    self.0
                        .batcher_alive
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let alive = Alive(batch_state.clone());
            run_batcher(rx, backend, batch_state);
            drop(alive);
        })
        .expect("spawn the batcher thread");
    Router::new()
        .route("/classify", post(classify))
        .route("/predict", post(predict))
        .route("/", post(hf_inference))
        .route("/embed", post(embed))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/info", get(info))
        .route("/openapi.json", get(openapi_json))
        .route("/health", get(health))
        .route("/labels", get(labels))
        .route("/metrics", get(metrics_handler))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight connections finish for at most
/// `shutdown_grace`. A client gets `header_timeout` to send its request's headers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    backend: Arc<dyn Backend>,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let app = router(backend, config.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors and the like: wait instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    // Stalled clients must not hold the process: cut them after the grace period.
    let _ = tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await;
    Ok(())
}

/// Runs `f`, turning a panic into a backend error.
fn no_panic<T>(f: impl FnOnce() -> Result<T, BackendError>) -> Result<T, BackendError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(BackendError::Model(
            format!("the model panicked: {what}").into(),
        ))
    })
}

/// Collects jobs for up to `batch_wait` (or `max_batch` texts), embeds them in one call, and
/// hands each job its rows.
fn run_batcher(mut rx: mpsc::Receiver<Job>, backend: Arc<dyn Backend>, state: Arc<AppState>) {
    let dim = backend.dim();
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        let mut count = jobs[0].texts.len();
        let deadline = Instant::now() + state.config.batch_wait;
        while count < state.config.max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.texts.len();
                    jobs.push(job);
                }
                Err(mpsc::error::TryRecvError::Empty) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(_) => break,
            }
        }
        // Jobs for the head and for the embedding endpoints run as two batches.
        let (for_head, plain): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.for_head);
        for (jobs, for_head) in [(for_head, true), (plain, false)] {
            if !jobs.is_empty() {
                run_batch(jobs, for_head, &*backend, &state, dim);
            }
        }
    }
}

/// Embeds one batch of jobs in one call, and hands each job its rows.
fn run_batch(jobs: Vec<Job>, for_head: bool, backend: &dyn Backend, state: &AppState, dim: usize) {
    let embed = |texts: &[String]| {
        if for_head {
            backend.features(texts)
        } else {
            backend.embed(texts)
        }
    };
    let texts: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
    state.metrics.observe_batch(texts.len());
    match no_panic(|| embed(&texts)) {
        Ok(all) if all.len() == texts.len() * dim => {
            let mut offset = 0;
            for job in jobs {
                let n = job.texts.len();
                let _ = job
                    .reply
                    .send(Ok(all[offset * dim..(offset + n) * dim].to_vec()));
                offset += n;
            }
        }
        // One request's texts must not fail the others batched with it: run each alone.
        _ if jobs.len() > 1 => {
            for job in jobs {
                let result = no_panic(|| embed(&job.texts)).map_err(Arc::new);
                let _ = job.reply.send(result);
            }
        }
        result => {
            let e = Arc::new(result.err().unwrap_or_else(|| {
                BackendError::Model("the encoder returned the wrong number of values".into())
            }));
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// A JSON error response.
fn error(status: StatusCode, error_type: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": message.into(), "error_type": error_type});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /classify, /predict, /embed, /v1/embeddings, / (POST), /info, /labels, /health, /metrics, /openapi.json",
    )
}

#[utoipa::path(get, path = "/health", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state
        .batcher_alive
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        json(StatusCode::OK, r#"{"status":"ok"}"#.into())
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy",
            "the encoder's batcher has stopped",
        )
    }
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; scoring and embedding routes take POST with a JSON body",
    )
}

#[utoipa::path(get, path = "/labels", responses((status = 200, description = "Labels, thresholds, model and encoder", body = Object)))]
async fn labels(State(state): State<Arc<AppState>>) -> Response {
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
async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Runs a POST handler under the shared limits (a concurrency slot, else 429; the body size,
/// else 413) and counts it in the metrics under `route`.
async fn guarded<F, Fut>(
    state: Arc<AppState>,
    route: &'static str,
    request: Request,
    handle: F,
) -> Response
where
    F: FnOnce(Arc<AppState>, axum::body::Bytes) -> Fut,
    Fut: std::future::Future<Output = Response>,
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
    Fut: std::future::Future<Output = Response>,
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
            Ok(Err(_)) => return too_large(),
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
        Ok(response) => response,
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "deadline_exceeded",
            format!("the request took over {:?}", c.request_timeout),
        ),
    }
}

/// Embeds texts through the micro-batcher, each cut to `max_text_chars` first: for the head
/// ([`Backend::features`]) or for an embedding endpoint ([`Backend::embed`]).
async fn embed_texts(
    state: &AppState,
    texts: Vec<String>,
    for_head: bool,
) -> Result<Vec<f32>, Response> {
    let texts: Vec<String> = texts
        .into_iter()
        .map(|t| truncate_chars(t, state.config.max_text_chars))
        .collect();
    let shutting_down = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        )
    };
    let (reply, wait) = oneshot::channel();
    let job = Job {
        texts,
        for_head,
        reply,
    };
    if state.batcher.send(job).await.is_err() {
        return Err(shutting_down());
    }
    match wait.await {
        Ok(Ok(e)) => Ok(e),
        Ok(Err(e)) => Err(e.response("encoder")),
        Err(_) => Err(shutting_down()),
    }
}

/// The 28 positive scores of each text, `texts.len() * 28`.
async fn score_texts(state: &AppState, texts: Vec<String>) -> Result<Vec<f32>, Response> {
    let rows = texts.len();
    let embeddings = embed_texts(state, texts, true).await?;
    no_panic(|| state.backend.scores(&embeddings, rows)).map_err(|e| e.response("model"))
}

/// Each text's labels and scores under `function`, highest first, cut at `top_k`.
async fn ranked_scores(
    state: &AppState,
    inputs: TextInputs,
    function: FunctionToApply,
    top_k: Option<usize>,
) -> Result<Vec<Vec<LabelScore>>, Response> {
    let texts = inputs
        .into_texts("inputs", state.config.max_inputs)
        .map_err(bad_request)?;
    let scores = score_texts(state, texts).await?;
    Ok(scores
        .chunks(LABELS.len())
        .map(|p| compat::ranked(p, function, top_k))
        .collect())
}

fn bad_request(e: RequestError) -> Response {
    error(StatusCode::BAD_REQUEST, e.error_type(), e.to_string())
}

/// A typed body, or a 400 that says what is wrong with it.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let error_type = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => "malformed_json",
            Category::Data => "invalid_request",
        };
        error(StatusCode::BAD_REQUEST, error_type, e.to_string())
    })
}

fn json_value(value: &impl serde::Serialize) -> Response {
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
fn normalise_rows(values: &mut [f32], dim: usize) {
    for row in values.chunks_mut(dim.max(1)) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
}

/// `POST /classify`, this server's own route: decisions and scores per input.
#[utoipa::path(post, path = "/classify",
    request_body(content = Object, description = "`{\"inputs\": text | [texts]}` or `{\"embeddings\": [[f32; dim], ...]}`; optional `threshold`, `top_k`, `raw_scores`"),
    responses((status = 200, description = "One `{labels, scores}` per input", body = Vec<Object>),
              (status = 400, description = "Bad request")))]
async fn classify(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/classify", request, |state, body| async move {
        classify_body(&state, &body)
            .await
            .unwrap_or_else(|response| response)
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
        Inputs::Texts(texts) => score_texts(state, texts).await?,
    };
    let predictions = policy.decide_rows(&scores);
    Ok(if req.raw_scores {
        json_value(&predictions.iter().map(ScoresOnly).collect::<Vec<_>>())
    } else {
        json_value(&predictions)
    })
}

/// `POST /predict` (TEI): every label's score, highest first; one list for a string, a list
/// of lists for an array.
#[utoipa::path(post, path = "/predict", request_body = PredictRequest,
    responses((status = 200, description = "Scores, highest first", body = Vec<Vec<LabelScore>>),
              (status = 400, description = "Bad request")))]
async fn predict(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/predict", request, |state, body| async move {
        let run = async {
            let req: PredictRequest = parse_json(&body)?;
            let one = req.is_one();
            let function = if req.raw_scores {
                FunctionToApply::None
            } else {
                FunctionToApply::Sigmoid
            };
            let rows = ranked_scores(&state, req.inputs, function, None).await?;
            Ok(json_value(&compat::one_or_many(one, rows)))
        };
        run.await.unwrap_or_else(|r: Response| r)
    })
    .await
}

/// `POST /`: what `huggingface_hub.InferenceClient` sends to a URL. With `parameters`, text
/// classification (`[[{label, score}, ...]]`, one list per input); without, feature extraction
/// (`[[f32; dim], ...]`).
#[utoipa::path(post, path = "/", request_body = TextClassificationRequest,
    responses((status = 200, description = "Text classification: one list per input; feature extraction (a body without `parameters`, as EmbedRequest): one embedding per input", body = Vec<Vec<LabelScore>>),
              (status = 400, description = "Bad request")))]
async fn hf_inference(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/", request, |state, body| async move {
        let run = async {
            let value: serde_json::Value = parse_json(&body)?;
            if value.get("parameters").is_none() {
                return embed_body(&state, &body).await;
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
            let rows = ranked_scores(&state, req.inputs, function, top_k).await?;
            Ok(json_value(&rows))
        };
        run.await.unwrap_or_else(|r: Response| r)
    })
    .await
}

/// `POST /embed` (TEI): one embedding per input, always a list of lists.
#[utoipa::path(post, path = "/embed", request_body = EmbedRequest,
    responses((status = 200, description = "One embedding per input", body = Vec<Vec<f32>>),
              (status = 400, description = "Bad request")))]
async fn embed(State(state): State<Arc<AppState>>, request: Request) -> Response {
    guarded(state, "/embed", request, |state, body| async move {
        embed_body(&state, &body)
            .await
            .unwrap_or_else(|response| response)
    })
    .await
}

async fn embed_body(state: &AppState, body: &[u8]) -> Result<Response, Response> {
    let req: EmbedRequest = parse_json(body)?;
    let texts = req
        .inputs
        .into_texts("inputs", state.config.max_inputs)
        .map_err(bad_request)?;
    let dim = state.backend.dim();
    let mut embeddings = embed_texts(state, texts, false).await?;
    // Rows that are unit-length already stay bit-identical to `emotions embed`.
    if req.normalize && !state.backend.normalizes() {
        normalise_rows(&mut embeddings, dim);
    }
    let rows: Vec<&[f32]> = embeddings.chunks(dim.max(1)).collect();
    Ok(json_value(&rows))
}

/// `POST /v1/embeddings` (OpenAI).
#[utoipa::path(post, path = "/v1/embeddings", request_body = OpenAiEmbeddingsRequest,
    responses((status = 200, description = "Embeddings and token usage", body = OpenAiEmbeddingsResponse),
              (status = 400, description = "Bad request")))]
async fn openai_embeddings(State(state): State<Arc<AppState>>, request: Request) -> Response {
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
            let embeddings = embed_texts(&state, texts, false).await?;
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

/// `GET /info`, as TEI answers it.
#[utoipa::path(get, path = "/info", responses((status = 200, body = Info)))]
async fn info(State(state): State<Arc<AppState>>) -> Response {
    let c = &state.config;
    json_value(&Info {
        model_id: state.backend.model_name(),
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

#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This document")))]
async fn openapi_json() -> Response {
    use utoipa::OpenApi;
    match ApiDoc::openapi().to_json() {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "serialisation_error",
            e.to_string(),
        ),
    }
}

/// `{"scores": {...}}` without decisions.
struct ScoresOnly<'a>(&'a Prediction);

impl serde::Serialize for ScoresOnly<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("scores", &LabelScores(self.0.scores()))?;
        m.end()
    }
}

fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
    }
    s
}

/// An f32 as the JSON number it prints as ("0.3", not 0.30000001192092896).
fn short_f32(x: f32) -> serde_json::Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// A threshold is a finite number in [0, 1] (NaN is not in the range).
pub(crate) fn valid_threshold(t: f64) -> bool {
    (0.0..=1.0).contains(&t)
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(super::truncate_chars("héllo wörld".into(), 4), "héll");
        assert_eq!(super::truncate_chars("abc".into(), 10), "abc");
    }
}
