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

/// How a request reads a text longer than the encoder's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LongTexts {
    /// Its first window (the default, as `emotions classify`).
    #[default]
    Truncate,
    /// Every token, in overlapping windows: scores are each label's highest window's, and
    /// embeddings the windows' token-weighted mean.
    Chunk,
}

/// One token, as TEI's `/tokenize` answers it: a special token has its vocabulary text and no
/// offsets; any other, the text's bytes `start..stop`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, PartialEq)]
pub struct SimpleToken {
    pub id: u32,
    pub text: String,
    pub special: bool,
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

/// Rows for texts, and how many of the texts were longer than the encoder's window.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRows {
    pub values: Vec<f32>,
    pub long_texts: usize,
}

/// What the server needs from a classifier; the `emotions` crate implements it.
pub trait Backend: Send + Sync + 'static {
    /// Embedding width the head takes.
    fn dim(&self) -> usize;
    /// Sentence embeddings of texts, `texts.len() * dim()` values: what the embedding
    /// endpoints return.
    fn embed(&self, texts: &[String]) -> Result<Vec<f32>, BackendError>;
    /// Positive scores, `rows * 28`.
    fn scores(&self, embeddings: &[f32], rows: usize) -> Result<Vec<f32>, BackendError>;
    /// [`Backend::embed`], a long text read as `long` says. The default truncates and does
    /// not count.
    fn embed_texts(&self, texts: &[String], long: LongTexts) -> Result<TextRows, BackendError> {
        let _ = long;
        Ok(TextRows {
            values: self.embed(texts)?,
            long_texts: 0,
        })
    }
    /// Positive scores of texts, `texts.len() * 28`, a long text read as `long` says. The
    /// default scores [`Backend::embed`]'s rows, truncating, and does not count: right for a
    /// head over the plain embeddings (a head with an encoder adapter overrides it).
    fn score_texts(&self, texts: &[String], long: LongTexts) -> Result<TextRows, BackendError> {
        let _ = long;
        let embeddings = self.embed(texts)?;
        Ok(TextRows {
            values: self.scores(&embeddings, texts.len())?,
            long_texts: 0,
        })
    }
    /// Every token of a text, uncut (TEI's `/tokenize`).
    fn tokenize(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<SimpleToken>, BackendError> {
        let _ = (text, add_special_tokens);
        Err(no_tokenizer())
    }
    /// The text of token ids (TEI's `/decode`).
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, BackendError> {
        let _ = (ids, skip_special_tokens);
        Err(no_tokenizer())
    }
    /// Sentence embeddings of the model's own token ids, as given, `ids.len() * dim()` values.
    fn embed_token_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<f32>, BackendError> {
        let _ = ids;
        Err(no_tokenizer())
    }
    /// Every token's vector of each text before pooling, `tokens × dim()` (TEI's `/embed_all`).
    fn token_states(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, BackendError> {
        let _ = texts;
        Err(no_tokenizer())
    }
    /// The first text longer than [`Backend::max_input_length`] tokens, as (its index, its
    /// tokens), for requests that refuse to truncate. The default finds none.
    fn first_long_text(&self, texts: &[String]) -> Result<Option<(usize, usize)>, BackendError> {
        let _ = texts;
        Ok(None)
    }
    /// Tokens per text after truncation, special tokens included (OpenAI's `usage`).
    fn count_tokens(&self, texts: &[String]) -> Result<Vec<usize>, BackendError>;
    /// Whether [`Backend::embed`] already returns unit-length rows.
    fn normalizes(&self) -> bool;
    /// Tokens per text the encoder keeps (TEI's `max_input_length`).
    fn max_input_length(&self) -> usize;
    /// Token ids given as input must be below this (the model's token table), if known.
    fn vocabulary_size(&self) -> Option<usize> {
        None
    }
    /// The default decision policy.
    fn policy(&self) -> &DecisionPolicy;
    /// Names shown by `/labels`.
    fn model_name(&self) -> String;
    fn encoder_name(&self) -> String;
}

fn no_tokenizer() -> BackendError {
    BackendError::Model("this backend serves no encoder".into())
}
