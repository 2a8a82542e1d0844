//! The crate's one error type: where (the model file, when there is one) and what.

use emotions_adapter::{AdapterError, AdapterErrorKind};
use emotions_kernels::{KernelError, KernelErrorKind};

/// What tract reported, with its chain of causes.
pub type TractError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong loading, running or writing a model: the file or name it
/// concerns (`origin`, when there is one) and what happened (`kind`). Displays as
/// `origin: kind`; its source is the kind's own source, so a printed chain says each thing
/// once.
#[derive(Debug)]
pub struct RuntimeError {
    pub origin: Option<String>,
    pub kind: ErrorKind,
}

impl RuntimeError {
    /// `kind`, about the model `origin`.
    pub fn new(origin: impl Into<String>, kind: ErrorKind) -> Self {
        RuntimeError {
            origin: Some(origin.into()),
            kind,
        }
    }

    /// `kind`, about no model in particular (the caller's rows, say).
    pub fn bare(kind: ErrorKind) -> Self {
        RuntimeError { origin: None, kind }
    }
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        self.kind.fmt(f)
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl From<AdapterError> for RuntimeError {
    fn from(e: AdapterError) -> Self {
        RuntimeError::new(e.origin, ErrorKind::Adapter(e.kind))
    }
}

impl From<KernelError> for RuntimeError {
    fn from(e: KernelError) -> Self {
        RuntimeError {
            origin: e.origin,
            kind: ErrorKind::Kernel(e.kind),
        }
    }
}

/// The kinds of [`RuntimeError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("cannot read model file")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("not a valid ONNX model (truncated or not ONNX?)")]
    Decode {
        #[source]
        source: TractError,
    },
    #[error("node '{node}' uses op '{op}' (domain '{domain}'), which is not supported")]
    UnknownOp {
        node: String,
        op: String,
        domain: String,
    },
    #[error("expected exactly one input, found {found}: {names:?}")]
    InputCount { found: usize, names: Vec<String> },
    #[error("input '{name}' must be float32, found {found}")]
    InputType { name: String, found: String },
    #[error("input '{name}' must have rank 2 [N, D], found rank {found}")]
    InputRank { name: String, found: usize },
    #[error("input '{name}' must be {expected} wide, found {found}")]
    InputWidth {
        name: String,
        expected: usize,
        found: String,
    },
    #[error(
        "missing label output(s) {missing:?}; expected one [N, 2] output per go_emotions label, or one [N, K] output with a 'labels' metadata entry (outputs found: {outputs:?})"
    )]
    MissingLabels {
        missing: Vec<&'static str>,
        outputs: Vec<String>,
    },
    #[error("metadata 'labels' is not a JSON array or comma-separated list: {found}")]
    BadLabelsMetadata { found: String },
    #[error("output '{name}' must be {expected}, found {found}")]
    OutputShape {
        name: String,
        expected: String,
        found: String,
    },
    #[error("the ONNX graph is not a BERT-style encoder: {message}")]
    EncoderSignature { message: String },
    /// An int8 calibration (`calibration.json`) that does not parse or does not fit the graph.
    #[error("int8 calibration: {message}")]
    Calibration { message: String },
    #[error("tract could not {stage} the model")]
    Tract {
        stage: &'static str,
        #[source]
        source: TractError,
    },
    #[error("expected {expected} values for {rows} rows of {dim}, found {found}")]
    InputLength {
        rows: usize,
        dim: usize,
        expected: usize,
        found: usize,
    },
    #[error("row {row}, column {column}: expected a finite number, found {found}")]
    NonFinite {
        row: usize,
        column: usize,
        found: f32,
    },
    #[error("cannot export the head: {0}")]
    Export(String),
    /// A low-rank adapter file that is malformed or does not fit the encoder.
    #[error(transparent)]
    Adapter(AdapterErrorKind),
    #[error("refused: {what}")]
    Limit { what: String },
    #[error("{tensor} holds {found}; weights must be finite")]
    NonFiniteWeights { tensor: String, found: String },
    #[error(
        "LinearClassifier '{node}' has {found} coefficients for {width} inputs and {intercepts} intercepts; expected {expected}"
    )]
    Coefficients {
        node: String,
        found: usize,
        expected: usize,
        width: usize,
        intercepts: usize,
    },
    #[error(
        "the head's scores must be probabilities in [0, 1], but probe row {row} gives {label} = {found} (raw margins, e.g. a LinearClassifier with post_transform NONE?)"
    )]
    NotProbabilities {
        row: usize,
        label: &'static str,
        found: f32,
    },
    #[error("tract failed unexpectedly while it tried to {stage} the model: {message}")]
    Crashed {
        stage: &'static str,
        message: String,
    },
    /// The kernels: the thread pool, `EMOTIONS_ISA`.
    #[error(transparent)]
    Kernel(KernelErrorKind),
}

/// Runs `f`, turning a panic (tract's assertions, for instance) into an error.
pub(crate) fn catching<T>(
    origin: &str,
    stage: &'static str,
    f: impl FnOnce() -> Result<T, RuntimeError>,
) -> Result<T, RuntimeError> {
    emotions_kernels::catch_panic(f).unwrap_or_else(|message| {
        Err(RuntimeError::new(
            origin,
            ErrorKind::Crashed { stage, message },
        ))
    })
}

/// A tract failure at `stage`, keeping tract's own error as the source.
pub(crate) fn tract_err(
    origin: &str,
    stage: &'static str,
    e: impl Into<TractError>,
) -> RuntimeError {
    RuntimeError::new(
        origin,
        ErrorKind::Tract {
            stage,
            source: e.into(),
        },
    )
}
