//! `emotions`: a pure-Rust go_emotions classifier. Text or sentence embeddings in, 28 emotion
//! labels out, with no onnxruntime.
//!
//! [`Classifier`] is the front door: a sentence encoder (all-MiniLM-L6-v2 by default), a head
//! (ONNX, run by tract) and a decision policy. The default models are compiled in: for text,
//! the encoder with a fine-tuned low-rank adapter and its head (`models/tuned`); without an
//! encoder ([`EncoderChoice::None`]), the plain head for the plain embeddings `emotions embed`
//! writes (`models/head`). [`Classifier::features`] is what the head scores;
//! [`Classifier::embed`] is always the plain encoder's embeddings.
//!
//! ```
//! use emotions::{Classifier, EncoderChoice};
//!
//! let classifier = Classifier::from_defaults()?;
//! let predictions = classifier.classify_texts(&["Thank you so much, this is wonderful!"])?;
//! assert_eq!(predictions[0].scores().len(), emotions::LABELS.len());
//! let features = classifier.features(&["so happy for you", "this is awful"])?;
//! assert_eq!(classifier.classify_embeddings(&features, 2)?.len(), 2);
//!
//! // Embeddings from `emotions embed` (or `embed` here) go to the plain head.
//! let plain = Classifier::builder().encoder(EncoderChoice::None).build()?;
//! let rows = classifier.embed(&["so happy for you"])?;
//! assert_eq!(plain.classify_embeddings(&rows, 1)?.len(), 1);
//! # Ok::<(), emotions::Error>(())
//! ```

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use emotions_encoder::{
    Architecture, Encoder, EncoderAdapter, EncoderErrorKind, EncoderFiles, EncoderOptions,
    GraphRewrites, KernelThreads, LongTexts, PlanShapes, Pooling, Precision, WindowEmbeddings,
    sentences, set_threads,
};
pub use emotions_labels::{
    DecisionPolicy, LABELS, LabelsErrorKind, NUM_LABELS, Prediction, Thresholds,
};
pub use emotions_runtime::export::Dense;
pub use emotions_runtime::{
    Head, HeadInfo, HugePageAlloc, Isa, IsaClass, grow_heap_in_huge_pages, limit_heap_arenas,
    quiet_caught_panics, release_free_memory, show_caught_panics,
};

/// The models compiled into the binary (the `bundled-models` feature).
#[cfg(feature = "bundled-models")]
pub mod defaults {
    /// The default head: see `models/head/README.md`.
    pub const HEAD_ONNX: &[u8] = include_bytes!("../models/head/head.onnx");
    /// The default head's thresholds.
    pub const HEAD_THRESHOLDS_JSON: &str = include_str!("../models/head/thresholds.json");
    /// What the default head is, for `--help` and `/labels`.
    pub const HEAD_DESCRIPTION: &str = "L2 logistic regression per label (C=1) on all-MiniLM-L6-v2 embeddings of the go_emotions train split; thresholds tuned on dev + out-of-fold train";
    /// The default text classifier: a head over the compiled-in encoder with a low-rank adapter
    /// merged into it, fine-tuned on go_emotions train (see `models/tuned/README.md`). Text goes
    /// through it by default; embeddings given as input go to [`HEAD_ONNX`], which takes the
    /// plain encoder's embeddings that `emotions embed` writes.
    pub const TUNED_HEAD_ONNX: &[u8] = include_bytes!("../models/tuned/head.onnx");
    /// The tuned head's thresholds.
    pub const TUNED_THRESHOLDS_JSON: &str = include_str!("../models/tuned/thresholds.json");
    /// The tuned head's encoder adapter.
    pub static TUNED_ADAPTER: &[u8] = include_bytes!("../models/tuned/adapter.safetensors");
    /// What the tuned model is, for `--help` and `/labels`.
    pub const TUNED_DESCRIPTION: &str = "all-MiniLM-L6-v2 with LoRA adapters and a linear head, fine-tuned together on the go_emotions train split; epoch and thresholds chosen on dev";

    /// The name the default encoder goes by in head metadata and reports.
    pub const ENCODER_NAME: &str = "all-MiniLM-L6-v2";

    // Statics, not consts: a const's bytes are copied into every codegen unit that uses it,
    // which put the 23 MB model in the binary twice.
    static MINILM_ONNX: &[u8] = include_bytes!("../models/minilm/model.onnx");
    static MINILM_TOKENIZER_JSON: &[u8] = include_bytes!("../models/minilm/tokenizer.json");

    /// The default encoder's files: see `models/README.md`.
    pub fn encoder_files() -> emotions_encoder::EncoderFiles<'static> {
        emotions_encoder::EncoderFiles {
            name: ENCODER_NAME,
            model_onnx: MINILM_ONNX,
            tokenizer_json: MINILM_TOKENIZER_JSON,
            config_json: include_str!("../models/minilm/config.json"),
            sentence_bert_config_json: include_str!("../models/minilm/sentence_bert_config.json"),
            modules_json: include_str!("../models/minilm/modules.json"),
            pooling_config_json: include_str!("../models/minilm/1_Pooling/config.json"),
            int8_calibration_json: Some(include_str!("../models/minilm/calibration.json")),
        }
    }
}

/// Everything the library front door can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Head(#[from] emotions_runtime::RuntimeError),
    #[error(transparent)]
    Labels(#[from] emotions_labels::LabelsError),
    #[error(transparent)]
    Io(#[from] emotions_io::IoError),
    #[error(transparent)]
    Encoder(#[from] emotions_encoder::EncoderError),
    #[error(
        "the encoder '{encoder}' makes {encoder_dim}-dim embeddings but the head takes {head_dim}"
    )]
    DimMismatch {
        encoder: String,
        encoder_dim: usize,
        head_dim: usize,
    },
    #[error("this classifier was built without an encoder; it classifies embeddings only")]
    NoEncoder,
    /// The compiled-in models were asked for in a build without them.
    #[error(
        "emotions was built without its bundled models (the `bundled-models` feature): give a head file and an encoder folder"
    )]
    NoBundledModels,
    /// A head and an encoder adapter that do not belong together.
    #[error("{0}")]
    Adapter(String),
}

impl Error {
    /// Whether the input is at fault (a non-finite or wrong-length embedding, a text the
    /// tokenizer refuses or one with no tokens to pool) rather than the model.
    pub fn is_bad_input(&self) -> bool {
        use emotions_runtime::{ErrorKind, RuntimeError};
        matches!(
            self,
            Error::Head(RuntimeError {
                kind: ErrorKind::NonFinite { .. } | ErrorKind::InputLength { .. },
                ..
            }) | Error::Encoder(emotions_encoder::EncoderError {
                kind: emotions_encoder::EncoderErrorKind::Tokenize { .. }
                    | emotions_encoder::EncoderErrorKind::NoTokens { .. }
                    | emotions_encoder::EncoderErrorKind::TokenIds { .. },
                ..
            })
        )
    }

    /// For the server: an error of this crate or of one it wraps (the encoder's, the head's),
    /// as the client's fault (bad input) or the model's.
    #[cfg(feature = "server")]
    fn into_backend(e: impl Into<Error>) -> emotions_server::BackendError {
        use emotions_server::BackendError;
        let e = e.into();
        if e.is_bad_input() {
            BackendError::Input(Box::new(e))
        } else {
            BackendError::Model(Box::new(e))
        }
    }
}

/// How the scores of a long text's windows ([`LongTexts::Chunk`]) become the text's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Aggregate {
    /// Per label, the highest window's: an emotion anywhere in the text counts.
    #[default]
    Max,
    /// Per label, the windows' mean.
    Mean,
}

/// Scores of texts, `texts × 28` in label order, and how many were longer than the window.
#[derive(Debug, Clone, PartialEq)]
pub struct TextScores {
    pub scores: Vec<f32>,
    pub long_texts: usize,
}

/// Sentence embeddings of texts, `texts × dim`, and how many were longer than the window.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEmbeddings {
    pub embeddings: Vec<f32>,
    pub long_texts: usize,
}

/// Which sentence encoder, if any, a classifier carries.
#[derive(Debug, Clone, Default)]
pub enum EncoderChoice {
    /// The compiled-in all-MiniLM-L6-v2 (the default).
    #[default]
    Default,
    /// A sentence-transformers folder.
    Dir(PathBuf),
    /// A sentence-transformers folder and which of its ONNX files to run (relative to the
    /// folder, e.g. `onnx/model_quantized.onnx`).
    DirFile { dir: PathBuf, onnx: PathBuf },
    /// No encoder: embeddings only, and no time spent loading one.
    None,
}

/// Where the head comes from.
#[derive(Debug, Clone)]
enum HeadSource {
    Default,
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// Where the thresholds come from, when the policy is per-label.
#[derive(Debug, Clone)]
enum ThresholdsSource {
    /// The head's own: the embedded default's, or `thresholds.json` beside a head file, else
    /// the model card's.
    Head,
    Given(Thresholds),
}

/// The decision policy asked for.
#[derive(Debug, Clone, Copy)]
enum PolicyChoice {
    PerLabel,
    Fixed(f32),
    TopK(usize),
}

/// Builds a [`Classifier`]; validation happens in [`ClassifierBuilder::build`].
#[derive(Debug, Clone)]
pub struct ClassifierBuilder {
    head: HeadSource,
    thresholds: ThresholdsSource,
    policy: PolicyChoice,
    encoder: EncoderChoice,
    encoder_options: EncoderOptions,
    head_threads: Option<usize>,
    default_head_for: Option<EncoderChoice>,
}

impl Default for ClassifierBuilder {
    fn default() -> Self {
        ClassifierBuilder {
            head: HeadSource::Default,
            thresholds: ThresholdsSource::Head,
            policy: PolicyChoice::PerLabel,
            encoder: EncoderChoice::Default,
            encoder_options: Default::default(),
            head_threads: None,
            default_head_for: None,
        }
    }
}

/// The adapter file a head file may have beside it.
pub const ADAPTER_FILE: &str = "adapter.safetensors";

/// Loads the encoder `choice` names, with `adapter` merged into it; `None` for
/// [`EncoderChoice::None`].
pub fn load_encoder(
    choice: &EncoderChoice,
    options: EncoderOptions,
    adapter: Option<&EncoderAdapter>,
) -> Result<Option<Encoder>, Error> {
    Ok(Some(match choice {
        EncoderChoice::None => return Ok(None),
        #[cfg(feature = "bundled-models")]
        EncoderChoice::Default => {
            Encoder::from_files_adapted(defaults::encoder_files(), options, adapter)?
        }
        #[cfg(not(feature = "bundled-models"))]
        EncoderChoice::Default => return Err(Error::NoBundledModels),
        EncoderChoice::Dir(dir) => {
            Encoder::from_dir_file_adapted(dir, None::<&Path>, options, adapter)?
        }
        EncoderChoice::DirFile { dir, onnx } => {
            Encoder::from_dir_file_adapted(dir, Some(onnx), options, adapter)?
        }
    }))
}

impl ClassifierBuilder {
    /// Uses the head in this ONNX file. Its thresholds are `thresholds.json` in the same folder
    /// when there is one, else the model card's.
    pub fn head_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.head = HeadSource::Path(path.into());
        self
    }

    /// Uses the head in these ONNX bytes, with the model card's thresholds unless given.
    pub fn head_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.head = HeadSource::Bytes(bytes.into());
        self
    }

    /// Per-label thresholds to decide with (the default policy).
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = ThresholdsSource::Given(thresholds);
        self
    }

    /// One threshold for every label instead of per-label thresholds.
    pub fn fixed_threshold(mut self, threshold: f32) -> Self {
        self.policy = PolicyChoice::Fixed(threshold);
        self
    }

    /// The `k` highest-scoring labels instead of thresholds.
    pub fn top_k(mut self, k: usize) -> Self {
        self.policy = PolicyChoice::TopK(k);
        self
    }

    /// Which encoder turns texts into embeddings (default: the compiled-in MiniLM).
    pub fn encoder(mut self, encoder: EncoderChoice) -> Self {
        self.encoder = encoder;
        self
    }

    /// Encoder batching and plan options.
    pub fn encoder_options(mut self, options: EncoderOptions) -> Self {
        self.encoder_options = options;
        self
    }

    /// Which default head to use when none is given, as if texts came through this encoder:
    /// the tuned head for the compiled-in encoder, the plain one otherwise. By default the
    /// builder's own encoder decides; `eval` and `tune`, which embed separately, say which.
    pub fn default_head_for(mut self, encoder: EncoderChoice) -> Self {
        self.default_head_for = Some(encoder);
        self
    }

    /// Threads a large batch of embeddings is scored on (default: the number of cores).
    pub fn head_threads(mut self, threads: usize) -> Self {
        self.head_threads = Some(threads);
        self
    }

    /// Loads the head and encoder, reads thresholds, validates the policy, and checks that the
    /// encoder fits the head.
    pub fn build(self) -> Result<Classifier, Error> {
        // The default head for texts through the compiled-in encoder is the tuned one.
        #[cfg(feature = "bundled-models")]
        let tuned = matches!(self.head, HeadSource::Default)
            && matches!(
                self.default_head_for.as_ref().unwrap_or(&self.encoder),
                EncoderChoice::Default
            );
        let adapter = match &self.head {
            #[cfg(feature = "bundled-models")]
            HeadSource::Default if tuned => Some(EncoderAdapter::from_bytes(
                defaults::TUNED_ADAPTER,
                "<embedded adapter>",
            )?),
            HeadSource::Path(path) => {
                let beside = path.parent().unwrap_or(Path::new(".")).join(ADAPTER_FILE);
                if beside.is_file() {
                    Some(EncoderAdapter::from_file(&beside)?)
                } else {
                    None
                }
            }
            _ => None,
        };
        let encoder = load_encoder(&self.encoder, self.encoder_options, adapter.as_ref())?;
        // With an encoder the head must take its width; without one, any width the file declares.
        let width = encoder.as_ref().map(Encoder::dim);
        let threads = self.head_threads;
        let configured = |b: emotions_runtime::HeadBuilder| {
            let b = b.expected_dim(width);
            match threads {
                Some(n) => b.threads(n),
                None => b,
            }
        };
        let (head, beside) = match &self.head {
            #[cfg(not(feature = "bundled-models"))]
            HeadSource::Default => return Err(Error::NoBundledModels),
            #[cfg(feature = "bundled-models")]
            HeadSource::Default if tuned => (
                configured(Head::builder_from_bytes(
                    defaults::TUNED_HEAD_ONNX,
                    "<embedded tuned head>",
                ))
                .build()?,
                Some(Thresholds::from_json_str(
                    defaults::TUNED_THRESHOLDS_JSON,
                    "<embedded tuned thresholds>",
                )?),
            ),
            #[cfg(feature = "bundled-models")]
            HeadSource::Default => (
                configured(Head::builder_from_bytes(
                    defaults::HEAD_ONNX,
                    "<embedded default head>",
                ))
                .build()?,
                Some(Thresholds::from_json_str(
                    defaults::HEAD_THRESHOLDS_JSON,
                    "<embedded default thresholds>",
                )?),
            ),
            HeadSource::Path(path) => (
                configured(Head::builder_from_path(path)).build()?,
                thresholds_beside(path)?,
            ),
            HeadSource::Bytes(bytes) => (
                configured(Head::builder_from_bytes(bytes.clone(), "<head bytes>")).build()?,
                None,
            ),
        };
        let policy = match self.policy {
            PolicyChoice::Fixed(t) => {
                Thresholds::uniform(t)?;
                DecisionPolicy::Fixed(t)
            }
            PolicyChoice::TopK(k) => DecisionPolicy::TopK(k),
            PolicyChoice::PerLabel => DecisionPolicy::PerLabel(match self.thresholds {
                ThresholdsSource::Given(t) => t,
                ThresholdsSource::Head => beside.unwrap_or_else(Thresholds::card_defaults),
            }),
        };
        check_adapter(head.info(), adapter.as_ref())?;
        let mut warnings = Vec::new();
        if let Some(enc) = &encoder {
            warnings.extend(enc.warnings().iter().cloned());
            if enc.dim() != head.input_dim() {
                return Err(Error::DimMismatch {
                    encoder: enc.name().to_string(),
                    encoder_dim: enc.dim(),
                    head_dim: head.input_dim(),
                });
            }
            warnings.extend(encoder_mismatch(head.info(), enc));
        }
        Ok(Classifier {
            head,
            policy,
            encoder,
            warnings,
            plain: OnceLock::new(),
            plain_spec: adapter
                .is_some()
                .then(|| (self.encoder.clone(), self.encoder_options)),
            adapter,
        })
    }
}

/// A head that records an adapter (`adapter` in its metadata: the adapter's hash) needs that
/// adapter, and an adapter beside a head needs a head that records it.
fn check_adapter(head: &HeadInfo, adapter: Option<&EncoderAdapter>) -> Result<(), Error> {
    match (head.metadata.get("adapter"), adapter) {
        (None, None) => Ok(()),
        (Some(h), Some(a)) if h == a.hash() => Ok(()),
        (Some(h), Some(a)) => Err(Error::Adapter(format!(
            "{}: the head was trained with encoder adapter {h}, but {} is adapter {}",
            head.origin,
            a.origin(),
            a.hash()
        ))),
        (Some(h), None) => Err(Error::Adapter(format!(
            "{}: the head was trained with encoder adapter {h}; put its {ADAPTER_FILE} beside it",
            head.origin
        ))),
        (None, Some(a)) => Err(Error::Adapter(format!(
            "{}: {} is beside the head, but the head records no adapter: was it trained on the plain encoder?",
            head.origin,
            a.origin()
        ))),
    }
}

/// Encoders a head may name without a fingerprint, and what their configuration says.
const KNOWN_ENCODERS: [(&str, Architecture); 2] = [
    (
        "all-MiniLM-L6-v2",
        Architecture {
            layers: Some(6),
            hidden: 384,
            pooling: Pooling::Mean,
            normalize: true,
        },
    ),
    (
        "bge-small-en-v1.5",
        Architecture {
            layers: Some(12),
            hidden: 384,
            pooling: Pooling::Cls,
            normalize: true,
        },
    ),
];

/// Why the encoder is not the one the head was trained on, judged by the model rather than by
/// the folder's name: the head's recorded encoder fingerprint against this encoder's, or, for a
/// head that names a known encoder without one, that encoder's architecture against this one's.
/// `None` when they agree, or when the head records nothing to compare.
fn encoder_mismatch(head: &HeadInfo, encoder: &Encoder) -> Option<String> {
    let trained_on = head.encoder().unwrap_or("an unnamed encoder");
    let found = format!(
        "the head was trained on '{trained_on}' embeddings but the encoder is '{}'",
        encoder.name()
    );
    if let Some(recorded) = head.metadata.get("encoder_fingerprint") {
        return (recorded != encoder.fingerprint()).then(|| {
            format!(
                "{found}: the head records encoder fingerprint {recorded}, this encoder's is {}; scores will be meaningless unless they are the same model",
                encoder.fingerprint()
            )
        });
    }
    let name = head.encoder()?;
    let (_, want) = KNOWN_ENCODERS
        .iter()
        .find(|(known, _)| same_encoder(known, name))?;
    let have = encoder.architecture();
    (have != *want).then(|| {
        format!("{found}: that model is {want}, this one is {have}; scores will be meaningless")
    })
}

/// Encoder names match when one ends with the other, ignoring case: "all-MiniLM-L6-v2" and
/// "sentence-transformers/all-MiniLM-L6-v2" are the same model.
fn same_encoder(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_lowercase(), b.to_lowercase());
    a.ends_with(&b) || b.ends_with(&a)
}

/// `thresholds.json` in the head file's folder, if there is one.
fn thresholds_beside(head: &Path) -> Result<Option<Thresholds>, Error> {
    let path = head
        .parent()
        .unwrap_or(Path::new("."))
        .join("thresholds.json");
    if path.is_file() {
        Ok(Some(Thresholds::from_path(&path)?))
    } else {
        Ok(None)
    }
}

/// An encoder, a head and a decision policy. `Send + Sync`: share one across threads.
#[derive(Debug)]
pub struct Classifier {
    head: Head,
    policy: DecisionPolicy,
    encoder: Option<Encoder>,
    warnings: Vec<String>,
    /// The adapter merged into `encoder`, which the head needs.
    adapter: Option<EncoderAdapter>,
    /// With an adapter: the plain encoder for [`Classifier::embed`], made when first asked:
    /// [`Encoder::without_adapter`] of `encoder`, or (`Precision::F32`) loaded anew.
    plain: OnceLock<Encoder>,
    plain_spec: Option<(EncoderChoice, EncoderOptions)>,
}

impl Classifier {
    /// The compiled-in encoder and head, with the head's own thresholds.
    pub fn from_defaults() -> Result<Self, Error> {
        Self::builder().build()
    }

    pub fn builder() -> ClassifierBuilder {
        ClassifierBuilder::default()
    }

    /// The embedding width the head takes.
    pub fn input_dim(&self) -> usize {
        self.head.input_dim()
    }

    pub fn head_info(&self) -> &HeadInfo {
        self.head.info()
    }

    /// The head's weights when it is linear-logistic (`sigmoid(x · W + b)`), as
    /// `emotions calibrate` rescales them; `None` for other heads.
    pub fn head_linear_layer(&self) -> Option<&Dense> {
        self.head.linear_layer()
    }

    pub fn policy(&self) -> &DecisionPolicy {
        &self.policy
    }

    /// Positive scores, `rows * 28` in label order.
    pub fn scores(&self, embeddings: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        Ok(self.head.predict(embeddings, rows)?)
    }

    /// Problems found at build time that are not errors (e.g. an encoder/head name mismatch).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn encoder(&self) -> Option<&Encoder> {
        self.encoder.as_ref()
    }

    /// The encoder adapter the head needs, merged into [`Classifier::encoder`].
    pub fn adapter(&self) -> Option<&EncoderAdapter> {
        self.adapter.as_ref()
    }

    /// The plain encoder's sentence embeddings of texts (`texts.len() * dim` values), as
    /// `emotions embed` writes them: without the head's adapter, loaded on first use when
    /// there is one.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<f32>, Error> {
        Ok(self.plain_encoder()?.embed(texts)?)
    }

    /// [`Classifier::embed`], a text longer than the encoder's window read as `long` says:
    /// in windows, their embeddings are averaged by tokens (normalised again when the encoder
    /// normalises). A text that fits gives exactly what `embed` gives.
    pub fn embed_long<S: AsRef<str>>(
        &self,
        texts: &[S],
        long: LongTexts,
    ) -> Result<TextEmbeddings, Error> {
        let encoder = self.plain_encoder()?;
        let windows = encoder.embed_windows(texts, long, &mut |_| {})?;
        Ok(TextEmbeddings {
            embeddings: windows.per_text(encoder.normalizes()),
            long_texts: windows.long_texts,
        })
    }

    /// Positive scores of texts (`texts × 28`), a text longer than the encoder's window read
    /// as `long` says: in windows, each window is scored and the scores are aggregated per
    /// label. A text that fits gives exactly what [`Classifier::features`] then
    /// [`Classifier::scores`] give.
    ///
    /// ```
    /// use emotions::{Aggregate, Classifier, LongTexts};
    ///
    /// let classifier = Classifier::from_defaults()?;
    /// let long = format!(
    ///     "{} Thank you so much for all your help! I really appreciate everything you did for us.",
    ///     "The meeting was moved to Tuesday. ".repeat(60),
    /// );
    /// let gratitude = emotions::LABELS.iter().position(|&l| l == "gratitude").unwrap();
    /// let chunked = classifier.text_scores(&[&long], LongTexts::Chunk { stride: None }, Aggregate::Max)?;
    /// let truncated = classifier.text_scores(&[&long], LongTexts::Truncate, Aggregate::Max)?;
    /// assert_eq!((chunked.long_texts, truncated.long_texts), (1, 1));
    /// assert!(chunked.scores[gratitude] > 0.5 && truncated.scores[gratitude] < 0.01);
    /// # Ok::<(), emotions::Error>(())
    /// ```
    pub fn text_scores<S: AsRef<str>>(
        &self,
        texts: &[S],
        long: LongTexts,
        aggregate: Aggregate,
    ) -> Result<TextScores, Error> {
        let encoder = self.encoder.as_ref().ok_or(Error::NoEncoder)?;
        let windows = encoder.embed_windows(texts, long, &mut |_| {})?;
        let rows = windows.tokens.len();
        let per_window = self.scores(&windows.pooled, rows)?;
        if rows == texts.len() {
            return Ok(TextScores {
                scores: per_window,
                long_texts: windows.long_texts,
            });
        }
        let mut scores = vec![0f32; texts.len() * NUM_LABELS];
        for (out, span) in scores.chunks_exact_mut(NUM_LABELS).zip(&windows.spans) {
            let rows = &per_window[span.start * NUM_LABELS..span.end * NUM_LABELS];
            out.copy_from_slice(&rows[..NUM_LABELS]);
            for row in rows.chunks_exact(NUM_LABELS).skip(1) {
                for (o, &x) in out.iter_mut().zip(row) {
                    *o = match aggregate {
                        Aggregate::Max => o.max(x),
                        Aggregate::Mean => *o + x,
                    };
                }
            }
            if aggregate == Aggregate::Mean && span.len() > 1 {
                out.iter_mut().for_each(|o| *o /= span.len() as f32);
            }
        }
        Ok(TextScores {
            scores,
            long_texts: windows.long_texts,
        })
    }

    fn plain_encoder(&self) -> Result<&Encoder, Error> {
        let Some((choice, options)) = &self.plain_spec else {
            return self.encoder.as_ref().ok_or(Error::NoEncoder);
        };
        if let Some(e) = self.plain.get() {
            return Ok(e);
        }
        // The adapted encoder without its low-rank terms where it runs them apart from the
        // weights (the integer precisions): no second load, no second copy of the weights.
        let plain = match self.encoder.as_ref().and_then(Encoder::without_adapter) {
            Some(view) => view,
            None => load_encoder(choice, *options, None)?.ok_or(Error::NoEncoder)?,
        };
        Ok(self.plain.get_or_init(|| plain))
    }

    /// What the head scores: the embeddings of texts by the encoder with the head's adapter
    /// merged (the plain encoder's when it has none), `texts.len() * input_dim()` values.
    pub fn features<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<f32>, Error> {
        self.features_with_progress(texts, &mut |_| {})
    }

    /// [`Classifier::features`], calling `progress(done)` after each encoder batch.
    pub fn features_with_progress<S: AsRef<str>>(
        &self,
        texts: &[S],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>, Error> {
        Ok(self
            .encoder
            .as_ref()
            .ok_or(Error::NoEncoder)?
            .embed_with_progress(texts, progress)?)
    }

    /// One prediction per text.
    pub fn classify_texts<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Prediction>, Error> {
        let features = self.features(texts)?;
        self.classify_embeddings(&features, texts.len())
    }

    /// One prediction per embedding row.
    pub fn classify_embeddings(
        &self,
        embeddings: &[f32],
        rows: usize,
    ) -> Result<Vec<Prediction>, Error> {
        Ok(self.policy.decide_rows(&self.scores(embeddings, rows)?))
    }
}

/// The HTTP server serves a [`Classifier`].
#[cfg(feature = "server")]
impl emotions_server::Backend for Classifier {
    fn dim(&self) -> usize {
        self.input_dim()
    }
    fn embed(&self, texts: &[String]) -> Result<Vec<f32>, emotions_server::BackendError> {
        Classifier::embed(self, texts).map_err(Error::into_backend)
    }
    fn scores(
        &self,
        embeddings: &[f32],
        rows: usize,
    ) -> Result<Vec<f32>, emotions_server::BackendError> {
        Classifier::scores(self, embeddings, rows).map_err(Error::into_backend)
    }
    fn embed_texts(
        &self,
        texts: &[String],
        long: emotions_server::LongTexts,
    ) -> Result<emotions_server::TextRows, emotions_server::BackendError> {
        let e = self
            .embed_long(texts, long_texts(long))
            .map_err(Error::into_backend)?;
        Ok(emotions_server::TextRows {
            values: e.embeddings,
            long_texts: e.long_texts,
        })
    }
    fn score_texts(
        &self,
        texts: &[String],
        long: emotions_server::LongTexts,
    ) -> Result<emotions_server::TextRows, emotions_server::BackendError> {
        let s = self
            .text_scores(texts, long_texts(long), Aggregate::Max)
            .map_err(Error::into_backend)?;
        Ok(emotions_server::TextRows {
            values: s.scores,
            long_texts: s.long_texts,
        })
    }
    fn tokenize(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<emotions_server::SimpleToken>, emotions_server::BackendError> {
        let spans = self
            .server_encoder()?
            .token_spans(text, add_special_tokens)
            .map_err(Error::into_backend)?;
        Ok(spans
            .into_iter()
            .map(|t| emotions_server::SimpleToken {
                id: t.id,
                // TEI's: a special token's own text; any other's, the input's bytes.
                text: match t.special {
                    true => t.token,
                    false => {
                        String::from_utf8_lossy(&text.as_bytes()[t.start..t.stop]).into_owned()
                    }
                },
                special: t.special,
                start: (!t.special).then_some(t.start),
                stop: (!t.special).then_some(t.stop),
            })
            .collect())
    }
    fn decode(
        &self,
        ids: &[u32],
        skip_special_tokens: bool,
    ) -> Result<String, emotions_server::BackendError> {
        self.server_encoder()?
            .decode(ids, skip_special_tokens)
            .map_err(Error::into_backend)
    }
    fn embed_token_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<f32>, emotions_server::BackendError> {
        self.plain_encoder()
            .map_err(Error::into_backend)?
            .embed_token_ids(ids)
            .map_err(Error::into_backend)
    }
    fn token_states(
        &self,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, emotions_server::BackendError> {
        self.plain_encoder()
            .map_err(Error::into_backend)?
            .token_states(texts)
            .map_err(Error::into_backend)
    }
    fn first_long_text(
        &self,
        texts: &[String],
    ) -> Result<Option<(usize, usize)>, emotions_server::BackendError> {
        let encoder = self.server_encoder()?;
        for (i, t) in texts.iter().enumerate() {
            let n = encoder.token_count(t).map_err(Error::into_backend)?;
            if n > encoder.max_seq_length() {
                return Ok(Some((i, n)));
            }
        }
        Ok(None)
    }
    fn count_tokens(&self, texts: &[String]) -> Result<Vec<usize>, emotions_server::BackendError> {
        let encoder = self
            .encoder
            .as_ref()
            .ok_or(Error::NoEncoder)
            .map_err(Error::into_backend)?;
        texts
            .iter()
            .map(|t| {
                encoder
                    .tokenize(t)
                    .map(|tokens| tokens.ids.len())
                    .map_err(Error::into_backend)
            })
            .collect()
    }
    fn normalizes(&self) -> bool {
        self.encoder.as_ref().is_some_and(Encoder::normalizes)
    }
    fn max_input_length(&self) -> usize {
        self.encoder.as_ref().map_or(0, Encoder::max_seq_length)
    }
    fn vocabulary_size(&self) -> Option<usize> {
        self.encoder.as_ref().map(Encoder::id_bound)
    }
    fn policy(&self) -> &DecisionPolicy {
        Classifier::policy(self)
    }
    fn model_name(&self) -> String {
        self.head_info().origin.clone()
    }
    fn encoder_name(&self) -> String {
        self.encoder
            .as_ref()
            .map_or("none".into(), |e| e.name().to_string())
    }
}

#[cfg(feature = "server")]
impl Classifier {
    /// The encoder, for the server's tokenizer routes.
    fn server_encoder(&self) -> Result<&Encoder, emotions_server::BackendError> {
        self.encoder
            .as_ref()
            .ok_or(Error::NoEncoder)
            .map_err(Error::into_backend)
    }
}

/// The server's long-text mode as the encoder's, with the default stride.
#[cfg(feature = "server")]
fn long_texts(long: emotions_server::LongTexts) -> LongTexts {
    match long {
        emotions_server::LongTexts::Truncate => LongTexts::Truncate,
        emotions_server::LongTexts::Chunk => LongTexts::Chunk { stride: None },
    }
}

#[cfg(all(test, feature = "bundled-models"))]
mod tests {
    use super::*;

    /// The card's thresholds as the labels crate has them are the top-level file's.
    #[test]
    fn the_card_thresholds_are_the_top_level_file() {
        let file = Thresholds::from_json_str(include_str!("../thresholds.json"), "thresholds.json");
        assert_eq!(file.unwrap(), Thresholds::card_defaults());
    }

    #[test]
    fn thresholds_beside_a_head_file_win_over_the_card() {
        let dir = std::env::temp_dir().join(format!("emotions-beside-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("head.onnx"), defaults::HEAD_ONNX).unwrap();
        let head = dir.join("head.onnx");
        let card = Classifier::builder()
            .head_path(&head)
            .encoder(EncoderChoice::None)
            .build()
            .unwrap();
        assert_eq!(
            card.policy(),
            &DecisionPolicy::PerLabel(Thresholds::card_defaults())
        );
        std::fs::write(
            dir.join("thresholds.json"),
            serde_json::to_string(&[0.5f32; NUM_LABELS]).unwrap(),
        )
        .unwrap();
        let beside = Classifier::builder()
            .head_path(&head)
            .encoder(EncoderChoice::None)
            .build()
            .unwrap();
        assert_eq!(
            beside.policy(),
            &DecisionPolicy::PerLabel(Thresholds::uniform(0.5).unwrap())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn encoder_names_compare_by_suffix() {
        assert!(same_encoder(
            "sentence-transformers/all-MiniLM-L6-v2",
            "all-minilm-l6-v2"
        ));
        assert!(!same_encoder("BAAI/bge-small-en-v1.5", "all-MiniLM-L6-v2"));
    }

    #[test]
    fn fixed_threshold_is_validated_in_build() {
        let err = Classifier::builder()
            .fixed_threshold(1.5)
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("must be finite and in [0, 1], found 1.5"),
            "{err}"
        );
    }
}
