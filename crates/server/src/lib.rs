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
//!
//! As TEI keeps them apart: [`backend`] (what is served), [`batcher`] (the queue), [`routes`]
//! (one module per API), [`serve`] (the accept loop); [`config`], [`request`] and [`compat`]
//! (the request and response types), [`metrics`].

#![forbid(unsafe_code)]
// Handlers short-circuit with a ready error `Response`; it is built once per failed request.
#![allow(clippy::result_large_err)]

mod backend;
mod batcher;
mod compat;
mod config;
mod metrics;
mod request;
mod routes;
mod serve;

pub use backend::{Backend, BackendError, LongTexts, TextRows};
pub use compat::{
    ClassificationParameters, DecodeRequest, EmbedAllRequest, EmbedRequest, EncodingFormat,
    FunctionToApply, Info, InputIds, LabelScore, OpenAiEmbeddingsRequest, OpenAiEmbeddingsResponse,
    OpenAiInput, OpenAiInputItem, OpenAiModel, OpenAiModels, PredictRequest, SimpleToken,
    TextClassificationRequest, TextInputs, TokenizeRequest,
};
pub use config::ServerConfig;
pub use request::{ClassifyRequest, Inputs, RequestError, parse_request};
pub use routes::openapi::ApiDoc;
pub use routes::router;
pub use serve::serve;
