//! What the server serves: a [`Backend`] (the `emotions` crate's classifier), and how its
//! failures are told apart.

use emotions_labels::DecisionPolicy;

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
