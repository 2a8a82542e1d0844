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

mod metrics;
mod request;
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
    /// Sentence embeddings of texts, `texts.len() * dim()` values.
    fn embed(&self, texts: &[String]) -> Result<Vec<f32>, BackendError>;
    /// Positive scores, `rows * 28`.
    fn scores(&self, embeddings: &[f32], rows: usize) -> Result<Vec<f32>, BackendError>;
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
        }
    }
}

struct Job {
    texts: Vec<String>,
    /// Shared by every job of a failed batch.
    reply: oneshot::Sender<Result<Vec<f32>, Arc<BackendError>>>,
}

struct AppState {
    backend: Arc<dyn Backend>,
    config: ServerConfig,
    permits: Semaphore,
    batcher: mpsc::Sender<Job>,
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
        metrics: metrics::Metrics::default(),
    });
    let batch_state = state.clone();
    std::thread::Builder::new()
        .name("emotions-batcher".into())
        .spawn(move || run_batcher(rx, backend, batch_state))
        .expect("spawn the batcher thread");
    Router::new()
        .route("/classify", post(classify))
        .route("/health", get(health))
        .route("/labels", get(labels))
        .route("/metrics", get(metrics_handler))
        .fallback(not_found)
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    backend: Arc<dyn Backend>,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(backend, config))
        .with_graceful_shutdown(shutdown)
        .await
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
        let texts: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
        state.metrics.observe_batch(texts.len());
        match backend.embed(&texts) {
            Ok(all) => {
                let mut offset = 0;
                for job in jobs {
                    let n = job.texts.len();
                    let _ = job
                        .reply
                        .send(Ok(all[offset * dim..(offset + n) * dim].to_vec()));
                    offset += n;
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
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
        "no such endpoint; see /classify, /labels, /health, /metrics",
    )
}

async fn health() -> Response {
    json(StatusCode::OK, r#"{"status":"ok"}"#.into())
}

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

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn classify(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let response = classify_inner(&state, request).await;
    state
        .metrics
        .observe_request(response.status().as_u16(), started.elapsed());
    response
}

async fn classify_inner(state: &AppState, request: Request) -> Response {
    let Ok(_permit) = state.permits.try_acquire() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!(
                "more than {} requests in flight; retry later",
                state.config.max_concurrent
            ),
        );
    };
    let body =
        match axum::body::to_bytes(Body::new(request.into_body()), state.config.max_body_bytes)
            .await
        {
            Ok(b) => b,
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("request body over {} bytes", state.config.max_body_bytes),
                );
            }
        };
    let req = match parse_request(&body, state.config.max_inputs, state.backend.dim()) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.error_type(), e.to_string()),
    };
    let policy = match (req.threshold, req.top_k) {
        (Some(t), _) => DecisionPolicy::Fixed(t),
        (None, Some(k)) => DecisionPolicy::TopK(k),
        (None, None) => state.backend.policy().clone(),
    };
    let (rows, embeddings) = match req.inputs {
        Inputs::Embeddings { rows, data } => (rows, data),
        Inputs::Texts(texts) => {
            let texts: Vec<String> = texts
                .into_iter()
                .map(|t| truncate_chars(t, state.config.max_text_chars))
                .collect();
            let n = texts.len();
            let (reply, wait) = oneshot::channel();
            if state.batcher.send(Job { texts, reply }).await.is_err() {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "the server is shutting down",
                );
            }
            match wait.await {
                Ok(Ok(e)) => (n, e),
                Ok(Err(e)) => return e.response("encoder"),
                Err(_) => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "shutting_down",
                        "the server is shutting down",
                    );
                }
            }
        }
    };
    let scores = match state.backend.scores(&embeddings, rows) {
        Ok(s) => s,
        Err(e) => return e.response("model"),
    };
    let predictions = policy.decide_rows(&scores);
    let body = if req.raw_scores {
        serde_json::to_string(&predictions.iter().map(ScoresOnly).collect::<Vec<_>>())
    } else {
        serde_json::to_string(&predictions)
    };
    json(StatusCode::OK, body.expect("predictions serialise"))
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
