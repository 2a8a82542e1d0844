//! The server's limits and tunables.

use std::time::Duration;

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
