//! A BERT-family sentence encoder: `tokenizers` for the text, tract for the ONNX graph, then
//! pooling as sentence-transformers does.
//!
//! It reads the usual sentence-transformers folder: `model.onnx` (or `onnx/model.onnx`),
//! `tokenizer.json`, `config.json`, `sentence_bert_config.json` (`max_seq_length`),
//! `modules.json` (Normalize or not) and `1_Pooling/config.json` (CLS, mean, max or
//! mean-sqrt-len pooling).
//!
//! The ONNX graph itself (loading, the load-time rewrites, plans, running) is the
//! `emotions-runtime` crate's [`EncoderGraph`]; this crate does the text around it: the
//! folder layout and its configuration files, tokenisation and truncation, batching (texts
//! sorted by token count, so each batch pads little), pooling and normalisation.
//!
//! ```no_run
//! let encoder = emotions_encoder::Encoder::from_dir("models/minilm")?;
//! let embeddings = encoder.embed(&["I love this", "so sad"])?;
//! assert_eq!(embeddings.len(), 2 * encoder.dim());
//! # Ok::<(), emotions_encoder::EncoderError>(())
//! ```

#![forbid(unsafe_code)]

use emotions_runtime::{EncoderGraph, ErrorKind, GraphBytes, LoraAdapter, RuntimeError, TokenRow};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

mod config;
mod windows;
pub use config::{Architecture, Pooling};
pub use emotions_runtime::{GraphRewrites, KernelThreads, PlanShapes, Precision, set_threads};
use windows::WindowTemplate;
pub use windows::{LongTexts, WindowEmbeddings, sentences};

/// Everything that can go wrong loading or running an encoder: the file it concerns, when
/// there is one, and what went wrong. Displays as `origin: kind`; its source is the kind's own.
#[derive(Debug)]
pub struct EncoderError {
    pub origin: Option<String>,
    pub kind: EncoderErrorKind,
}

impl EncoderError {
    /// The tokenizer's error on text `index`, for `map_err`.
    pub(crate) fn tokenize(index: usize) -> impl Fn(tokenizers::Error) -> EncoderError {
        move |source| EncoderError::bare(EncoderErrorKind::Tokenize { index, source })
    }

    /// `kind`, about the file `origin`.
    pub fn new(origin: impl Into<String>, kind: EncoderErrorKind) -> Self {
        EncoderError {
            origin: Some(origin.into()),
            kind,
        }
    }

    /// `kind`, about no file in particular (a text, say).
    pub fn bare(kind: EncoderErrorKind) -> Self {
        EncoderError { origin: None, kind }
    }
}

impl std::fmt::Display for EncoderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        self.kind.fmt(f)
    }
}

impl std::error::Error for EncoderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl From<RuntimeError> for EncoderError {
    fn from(e: RuntimeError) -> Self {
        EncoderError::bare(EncoderErrorKind::Graph(Box::new(e)))
    }
}

/// The kinds of [`EncoderError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncoderErrorKind {
    #[error("encoder folder is missing {file}")]
    MissingFile { file: String },
    /// The OS's error is in the text, not the chain, so it is said once.
    #[error("cannot read: {source}")]
    Io { source: std::io::Error },
    #[error("{message}")]
    Config { message: String },
    #[error("cannot load the tokenizer")]
    Tokenizer {
        #[source]
        source: tokenizers::Error,
    },
    #[error("cannot tokenize text {index}")]
    Tokenize {
        index: usize,
        #[source]
        source: tokenizers::Error,
    },
    #[error(
        "text {index} has no tokens (an empty text, and a tokenizer that adds no special tokens): nothing to pool"
    )]
    NoTokens { index: usize },
    #[error("the tokenizer failed unexpectedly: {message}")]
    Crashed { message: String },
    /// Token ids given as input (not from a text) that the model cannot take.
    #[error("token ids {index}: {message}")]
    TokenIds { index: usize, message: String },
    /// `LongTexts::Chunk`'s overlap must leave each window something new.
    #[error(
        "a stride of {stride} tokens: expected fewer than the {width} tokens of text a window holds"
    )]
    Stride { stride: usize, width: usize },
    /// The ONNX graph: not an encoder, or tract failed on it.
    #[error(transparent)]
    Graph(Box<RuntimeError>),
}

/// The encoder's files in memory, for encoders compiled into a binary.
#[derive(Clone, Copy)]
pub struct EncoderFiles<'a> {
    /// Shown in errors and reports, e.g. `"all-MiniLM-L6-v2 (embedded)"`.
    pub name: &'a str,
    pub model_onnx: &'a [u8],
    pub tokenizer_json: &'a [u8],
    pub config_json: &'a str,
    pub sentence_bert_config_json: &'a str,
    pub modules_json: &'a str,
    pub pooling_config_json: &'a str,
    /// `calibration.json`, when the folder has one: the int8 calibration that
    /// `Precision::Int8` uses (`scripts/calibrate_int8.py`); read in that precision only.
    pub int8_calibration_json: Option<&'a str>,
}

/// `(beside(), here())`: `beside` on a second thread while this one runs `here`. WebAssembly
/// without threads (`wasm32-unknown-unknown`) cannot spawn one, so there both run here.
fn side_by_side<A: Send, B>(beside: impl FnOnce() -> A + Send, here: impl FnOnce() -> B) -> (A, B) {
    if cfg!(target_family = "wasm") {
        return (beside(), here());
    }
    std::thread::scope(|scope| {
        let beside = scope.spawn(beside);
        let here = here();
        let beside = beside
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (beside, here)
    })
}

/// What to say when a folder has neither `model.onnx` nor `onnx/model.onnx`: which ONNX files
/// it does have, to pick one from.
fn missing_model_message(dir: &Path) -> String {
    let mut found: Vec<String> = ["", "onnx"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(dir.join(sub)).ok().map(|r| (sub, r)))
        .flat_map(|(sub, entries)| {
            entries.filter_map(move |e| {
                let name = e.ok()?.file_name().to_string_lossy().into_owned();
                name.ends_with(".onnx")
                    .then(|| Path::new(sub).join(name).display().to_string())
            })
        })
        .collect();
    found.sort();
    if found.is_empty() {
        "model.onnx (or onnx/model.onnx)".into()
    } else {
        format!(
            "model.onnx (or onnx/model.onnx); it has {}: choose one with --encoder-file",
            found.join(", ")
        )
    }
}

/// A low-rank adapter for an encoder (safetensors, PEFT layout; see
/// `emotions_runtime::LoraAdapter`), read and checked, to pass to
/// [`Encoder::from_dir_file_adapted`] or [`Encoder::from_files_adapted`].
#[derive(Debug, Clone)]
pub struct EncoderAdapter {
    origin: String,
    adapter: LoraAdapter,
    hash: String,
}

impl EncoderAdapter {
    /// Parses adapter bytes; `origin` names them in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, EncoderError> {
        Ok(EncoderAdapter {
            origin: origin.to_string(),
            adapter: LoraAdapter::from_safetensors(bytes, origin).map_err(RuntimeError::from)?,
            hash: hash_parts(&[bytes]),
        })
    }

    /// Reads an adapter file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, EncoderError> {
        let path = path.as_ref();
        let bytes = emotions_io::read_capped(
            path,
            emotions_runtime::limits::MAX_ADAPTER_FILE_BYTES,
            "a LoRA adapter",
        )
        .map_err(|source| {
            EncoderError::new(path.display().to_string(), EncoderErrorKind::Io { source })
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Where the adapter came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// 16 hex digits identifying the adapter's bytes; an adapted encoder's fingerprint ends
    /// with `+` and this.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// How many projections it changes.
    pub fn targets(&self) -> usize {
        self.adapter.deltas.len()
    }
}

/// Where an encoder's graph bytes are: in its [`EncoderFiles`], or read from a folder and
/// handed over (with the fingerprint computed while the files were whole).
enum Model {
    InFiles,
    Owned(GraphBytes<'static>, String),
}

/// Padded tokens per text a batch may hold on average: a full batch of texts up to this long,
/// fewer texts when they are longer.
pub const TOKENS_PER_TEXT: usize = 64;

/// Tunables with defaults that suit a 2-core machine.
#[derive(Debug, Clone, Copy)]
pub struct EncoderOptions {
    /// The most texts per forward pass (after sorting by length); fewer when they are longer
    /// than [`TOKENS_PER_TEXT`], or where their lengths drop (see `BATCH_COST_TOKENS`).
    pub batch_size: usize,
    /// Which shapes get their own optimised plan.
    pub plans: PlanShapes,
    /// Batches run at once, each on its own thread with single-threaded kernels. Results do not
    /// depend on it.
    pub workers: usize,
    /// How the projections multiply: integers over int8 weights (the default), or f32.
    pub precision: Precision,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            batch_size: 32,
            plans: PlanShapes::Symbolic,
            workers: 1,
            precision: Precision::default(),
        }
    }
}

/// A sentence encoder. `Send + Sync`: share one across threads.
pub struct Encoder {
    name: String,
    /// Shared with the plain view, as the graph is.
    tokenizer: Arc<tokenizers::Tokenizer>,
    max_seq_length: usize,
    pooling: Pooling,
    normalize: bool,
    layers: Option<usize>,
    dim: usize,
    options: EncoderOptions,
    /// Shared with the plain view of an adapted encoder ([`Encoder::without_adapter`]).
    graph: Arc<EncoderGraph>,
    /// The plain view: the graph runs without its adapter's low-rank terms.
    adapter_left_out: bool,
    fingerprint: String,
    /// With an adapter, the fingerprint of the encoder without it.
    plain_fingerprint: Option<String>,
    warnings: Vec<String>,
    /// Built when a text is first read in windows.
    windows: OnceLock<WindowTemplate>,
    /// Token ids given as input must be below this: the model's token table's rows.
    id_bound: usize,
}

/// One token of a text, as TEI's `/tokenize` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpan {
    pub id: u32,
    /// The vocabulary's token (`"##ing"`, `"[CLS]"`).
    pub token: String,
    /// Added by the tokenizer (`[CLS]`, `[SEP]`), not from the text.
    pub special: bool,
    /// Byte offsets in the text; `(0, 0)` for a special token.
    pub start: usize,
    pub stop: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("name", &self.name)
            .field("dim", &self.dim)
            .field("max_seq_length", &self.max_seq_length)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .finish()
    }
}

/// Token ids of one text, after truncation, with special tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

impl Encoder {
    /// Loads a sentence-transformers folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, EncoderError> {
        Self::from_dir_with(dir, EncoderOptions::default())
    }

    /// Loads a sentence-transformers folder with options.
    pub fn from_dir_with(
        dir: impl AsRef<Path>,
        options: EncoderOptions,
    ) -> Result<Self, EncoderError> {
        Self::from_dir_file_with(dir, None::<&Path>, options)
    }

    /// Loads a sentence-transformers folder, with `onnx_file` (relative to the folder, e.g.
    /// `onnx/model_quantized.onnx`) as the graph. Without it the graph is `model.onnx`, else
    /// `onnx/model.onnx`.
    pub fn from_dir_file_with(
        dir: impl AsRef<Path>,
        onnx_file: Option<impl AsRef<Path>>,
        options: EncoderOptions,
    ) -> Result<Self, EncoderError> {
        Self::from_dir_file_adapted(dir, onnx_file, options, None)
    }

    /// Loads a sentence-transformers folder, with `onnx_file` (relative to the folder, e.g.
    /// `onnx/model_quantized.onnx`) as the graph. Without it the graph is `model.onnx`, else
    /// `onnx/model.onnx`. An `adapter` is merged into the projections' weights; it is part of
    /// the [`fingerprint`](Self::fingerprint).
    pub fn from_dir_file_adapted(
        dir: impl AsRef<Path>,
        onnx_file: Option<impl AsRef<Path>>,
        options: EncoderOptions,
        adapter: Option<&EncoderAdapter>,
    ) -> Result<Self, EncoderError> {
        let dir = dir.as_ref();
        let shown = dir.display().to_string();
        let need = |rel: &str| -> Result<PathBuf, EncoderError> {
            let p = dir.join(rel);
            if p.is_file() {
                Ok(p)
            } else {
                Err(EncoderError::new(
                    shown.clone(),
                    EncoderErrorKind::MissingFile {
                        file: rel.to_string(),
                    },
                ))
            }
        };
        let model_path = match onnx_file {
            Some(file) => need(&file.as_ref().to_string_lossy())?,
            None => need("model.onnx")
                .or_else(|_| need("onnx/model.onnx"))
                .map_err(|_| {
                    EncoderError::new(
                        shown.clone(),
                        EncoderErrorKind::MissingFile {
                            file: missing_model_message(dir),
                        },
                    )
                })?,
        };
        // Each file is capped by what it can need: the model by protobuf's limit (below), the
        // tokenizer (a 250k-word multilingual vocabulary is 17 MB) and the small JSON files.
        let read = |p: PathBuf| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let (cap, what) = if name == "tokenizer.json" {
                (64 << 20, "a tokenizer")
            } else {
                (1 << 20, "a configuration file")
            };
            emotions_io::read_capped(&p, cap, what).map_err(|source| {
                EncoderError::new(p.display().to_string(), EncoderErrorKind::Io { source })
            })
        };
        let text = |p: PathBuf| {
            String::from_utf8(read(p.clone())?).map_err(|_| {
                EncoderError::new(
                    p.display().to_string(),
                    EncoderErrorKind::Config {
                        message: "not UTF-8".into(),
                    },
                )
            })
        };
        let tokenizer_json = read(need("tokenizer.json")?)?;
        let config_json = text(need("config.json")?)?;
        let sbert = text(need("sentence_bert_config.json")?)?;
        let modules = text(need("modules.json")?)?;
        let pooling = text(need("1_Pooling/config.json")?)?;
        // Only `Precision::Int8` reads it, so only then is it read (a broken one must not stop
        // the other precisions).
        let calibration = dir.join("calibration.json");
        let calibration = match options.precision == Precision::Int8 && calibration.is_file() {
            true => Some(text(calibration)?),
            false => None,
        };
        let model_rel = model_path
            .strip_prefix(dir)
            .unwrap_or(&model_path)
            .display()
            .to_string();
        // Mapped, not read (`GraphBytes::from_file`): the decode copies each tensor once.
        let model_onnx = GraphBytes::from_file(
            &model_path,
            emotions_runtime::limits::MAX_ENCODER_FILE_BYTES,
            "an ONNX encoder",
        )
        .map_err(|source| {
            EncoderError::new(
                model_path.display().to_string(),
                EncoderErrorKind::Io { source },
            )
        })?;
        let name = dir
            .file_name()
            .map_or(shown.clone(), |n| n.to_string_lossy().into_owned());
        let files = EncoderFiles {
            name: &name,
            model_onnx: &[],
            tokenizer_json: &tokenizer_json,
            config_json: &config_json,
            sentence_bert_config_json: &sbert,
            modules_json: &modules,
            pooling_config_json: &pooling,
            int8_calibration_json: calibration.as_deref(),
        };
        let fingerprint = fingerprint(&EncoderFiles {
            model_onnx: model_onnx.as_slice(),
            ..files
        });
        // The graph takes the model's bytes and frees them once decoded.
        let model = Model::Owned(model_onnx, fingerprint);
        Self::load_with(files, model, options, Some((dir, &model_rel)), adapter)
    }

    /// Loads an encoder from files in memory.
    pub fn from_files(files: EncoderFiles<'_>) -> Result<Self, EncoderError> {
        Self::load(files, EncoderOptions::default(), None)
    }

    /// Loads an encoder from files in memory, with options.
    pub fn from_files_with(
        files: EncoderFiles<'_>,
        options: EncoderOptions,
    ) -> Result<Self, EncoderError> {
        Self::load(files, options, None)
    }

    fn load(
        files: EncoderFiles<'_>,
        options: EncoderOptions,
        dir: Option<(&Path, &str)>,
    ) -> Result<Self, EncoderError> {
        Self::load_with(files, Model::InFiles, options, dir, None)
    }

    /// [`Encoder::from_files_with`], with a low-rank adapter merged into the projections.
    pub fn from_files_adapted(
        files: EncoderFiles<'_>,
        options: EncoderOptions,
        adapter: Option<&EncoderAdapter>,
    ) -> Result<Self, EncoderError> {
        Self::load_with(files, Model::InFiles, options, None, adapter)
    }

    /// `dir` is the folder the files came from and the graph's path in it, for messages.
    fn load_with(
        files: EncoderFiles<'_>,
        model: Model,
        options: EncoderOptions,
        dir: Option<(&Path, &str)>,
        adapter: Option<&EncoderAdapter>,
    ) -> Result<Self, EncoderError> {
        let at = |f: &str| {
            dir.map_or(format!("{} ({f})", files.name), |(d, _)| {
                d.join(f).display().to_string()
            })
        };
        let graph_file = dir.map_or("model.onnx", |(_, model)| model);
        let cfg = config::EncoderConfig::parse(&files, &at)?;
        let (bytes, fingerprint) = match model {
            Model::InFiles => (GraphBytes::from(files.model_onnx), None),
            Model::Owned(bytes, fingerprint) => (bytes, Some(fingerprint)),
        };
        // The tokenizer (~20 ms) and the fingerprint (a hash of the whole graph file, ~15 ms)
        // are made on a second thread while this one loads the graph.
        let calibration = match (options.precision, files.int8_calibration_json) {
            (Precision::Int8, Some(json)) => Some(
                emotions_runtime::Int8Calibration::parse(json, &at("calibration.json"))
                    .map_err(EncoderError::from)?,
            ),
            _ => None,
        };
        let ((tokenizer, fingerprint), graph) = side_by_side(
            || {
                // tokenizers panics on some malformed files (found by fuzzing: a broken
                // "decoder").
                let tokenizer = emotions_runtime::catch_panic(|| {
                    tokenizers::Tokenizer::from_bytes(files.tokenizer_json)
                })
                .unwrap_or_else(|message| Err(message.into()));
                (
                    tokenizer,
                    fingerprint.unwrap_or_else(|| self::fingerprint(&files)),
                )
            },
            || {
                EncoderGraph::load_adapted(
                    bytes,
                    &at(graph_file),
                    cfg.hidden_size,
                    options.plans,
                    options.precision,
                    adapter.map(|a| &a.adapter),
                    calibration.as_ref(),
                )
            },
        );
        let mut tokenizer = tokenizer.map_err(|source| {
            EncoderError::new(at("tokenizer.json"), EncoderErrorKind::Tokenizer { source })
        })?;
        let (fingerprint, plain_fingerprint) = match adapter {
            Some(a) => (format!("{fingerprint}+{}", a.hash), Some(fingerprint)),
            None => (fingerprint, None),
        };
        let graph = graph.map_err(|e| match (e, adapter) {
            // A target the graph lacks is the adapter file's fault: name that file.
            (
                RuntimeError {
                    kind: ErrorKind::Adapter(kind),
                    ..
                },
                Some(a),
            ) => EncoderError::from(RuntimeError::new(
                format!("{} (for {})", a.origin, at(graph_file)),
                ErrorKind::Adapter(kind),
            )),
            (e, _) => EncoderError::from(e),
        })?;
        let tables = graph.tables();
        let id_bound = tables
            .vocabulary
            .unwrap_or_else(|| tokenizer.get_vocab_size(true));
        // Every id the tokenizer can produce must index the model's token table: the largest
        // id, not the count, since a vocabulary may skip ids.
        if let Some(rows) = tables.vocabulary
            && let Some((token, id)) = tokenizer
                .get_vocab(true)
                .into_iter()
                .max_by_key(|(_, id)| *id)
            && id as usize >= rows
        {
            return Err(EncoderError::new(
                at("tokenizer.json"),
                EncoderErrorKind::Config {
                    message: format!(
                        "token {token:?} has id {id}, but the model's token embedding table has {rows} rows (ids 0 to {})",
                        rows.saturating_sub(1)
                    ),
                },
            ));
        }
        // A max_seq_length past the position table is clamped to it.
        let mut warnings = Vec::new();
        let mut max_seq_length = cfg.max_seq_length;
        if let Some(positions) = tables.positions
            && max_seq_length > positions
        {
            warnings.push(format!(
                "{}: max_seq_length {max_seq_length} is longer than the model's {positions} positions; texts are truncated to {positions} tokens",
                at("sentence_bert_config.json")
            ));
            max_seq_length = positions;
        }
        // sentence-transformers truncates to max_seq_length and pads per batch, whatever the
        // tokenizer file says; we pad ourselves.
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_seq_length,
                ..Default::default()
            }))
            .map_err(|source| {
                EncoderError::new(at("tokenizer.json"), EncoderErrorKind::Tokenizer { source })
            })?;
        tokenizer.with_padding(None);
        Ok(Encoder {
            name: files.name.to_string(),
            tokenizer: Arc::new(tokenizer),
            max_seq_length,
            warnings,
            pooling: cfg.pooling,
            normalize: cfg.normalize,
            layers: cfg.layers,
            dim: cfg.hidden_size,
            options,
            graph: Arc::new(graph),
            adapter_left_out: false,
            fingerprint,
            plain_fingerprint,
            windows: OnceLock::new(),
            id_bound,
        })
    }

    /// The same encoder without its adapter, sharing this one's graph and weights, where the
    /// adapter runs as low-rank terms beside them (the integer precisions): its embeddings are
    /// those of the encoder loaded without the adapter, bit for bit, without a second load.
    /// `None` without an adapter, or with one merged into the weights (`Precision::F32`).
    pub fn without_adapter(&self) -> Option<Encoder> {
        if self.adapter_left_out || !self.graph.adapter_is_separable() {
            return None;
        }
        Some(Encoder {
            name: self.name.clone(),
            tokenizer: Arc::clone(&self.tokenizer),
            max_seq_length: self.max_seq_length,
            pooling: self.pooling,
            normalize: self.normalize,
            layers: self.layers,
            dim: self.dim,
            options: self.options,
            graph: Arc::clone(&self.graph),
            adapter_left_out: true,
            fingerprint: self.plain_fingerprint.clone()?,
            plain_fingerprint: None,
            warnings: self.warnings.clone(),
            windows: OnceLock::new(),
            id_bound: self.id_bound,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ONNX graph's path (or the embedded encoder's name and file), as errors show it.
    pub fn graph_origin(&self) -> &str {
        self.graph.origin()
    }

    /// What was adjusted at load (e.g. a `max_seq_length` clamped to the position table).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// What the configuration says the model is (layers, width, pooling, normalisation).
    pub fn architecture(&self) -> Architecture {
        Architecture {
            layers: self.layers,
            hidden: self.dim,
            pooling: self.pooling,
            normalize: self.normalize,
        }
    }

    /// What identifies this model, whatever its folder is called: a hash of every file that
    /// shapes its embeddings (the ONNX graph, the tokenizer and the configuration), as 16 hex
    /// digits. Two encoders with the same fingerprint embed identically.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// What identifies the embeddings this encoder produces: the [`fingerprint`](Self::fingerprint),
    /// plus the precision where it changes them (16-bit and 8-bit integer projections differ
    /// from f32 in the fourth decimal). Caches of embeddings are keyed on it.
    pub fn embeddings_id(&self) -> String {
        let rewrites = self.graph.rewrites();
        let mut id = self.fingerprint.clone();
        if rewrites.int16 > 0 {
            id.push_str("-int16");
        }
        if rewrites.uint8 > 0 {
            id.push_str("-u8");
        }
        id
    }

    /// Tokenizes one text as the encoder will: special tokens added, truncated to
    /// `max_seq_length`.
    pub fn tokenize(&self, text: &str) -> Result<Tokens, EncoderError> {
        Ok(self.encode(0, text)?.0)
    }

    /// Whether a text is longer than the model's window, i.e. [`LongTexts::Truncate`] cuts it.
    pub fn is_long(&self, text: &str) -> Result<bool, EncoderError> {
        Ok(self.encode(0, text)?.1)
    }

    /// Every token of a text, uncut, with the special tokens when `add_special_tokens`: what
    /// TEI's `/tokenize` answers.
    pub fn token_spans(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<TokenSpan>, EncoderError> {
        let template = self.window_template()?;
        guarded(|| {
            let enc = template
                .untruncated()
                .encode(text, add_special_tokens)
                .map_err(EncoderError::tokenize(0))?;
            Ok(enc
                .get_ids()
                .iter()
                .zip(enc.get_tokens())
                .zip(enc.get_special_tokens_mask())
                .zip(enc.get_offsets())
                .map(|(((&id, token), &special), &(start, stop))| TokenSpan {
                    id,
                    token: token.clone(),
                    special: special == 1,
                    start,
                    stop,
                })
                .collect())
        })
    }

    /// The text of token ids, as the tokenizer decodes them (TEI's `/decode`).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, EncoderError> {
        self.check_ids(0, ids)?;
        guarded(|| {
            self.tokenizer
                .decode(ids, skip_special_tokens)
                .map_err(EncoderError::tokenize(0))
        })
    }

    /// Token ids given as input must be below this: the rows of the model's token table.
    pub fn id_bound(&self) -> usize {
        self.id_bound
    }

    /// Token ids given as input (sequence `index`) must be ones the model's token table has.
    fn check_ids(&self, index: usize, ids: &[u32]) -> Result<(), EncoderError> {
        match ids.iter().position(|&id| id as usize >= self.id_bound) {
            None => Ok(()),
            Some(at) => Err(EncoderError::bare(EncoderErrorKind::TokenIds {
                index,
                message: format!(
                    "id {} at position {at}: expected ids below {}, the model's token table",
                    ids[at], self.id_bound
                ),
            })),
        }
    }

    /// Sentence embeddings of token-id sequences given as they are, the model's own ids
    /// (special tokens included if wanted: nothing is added), `ids.len() * dim()` values.
    /// Each is 1 to `max_seq_length()` ids, each below the model's token table's rows.
    pub fn embed_token_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<f32>, EncoderError> {
        let mut tokens = Vec::with_capacity(ids.len());
        for (index, row) in ids.iter().enumerate() {
            self.check_ids(index, row)?;
            if row.is_empty() || row.len() > self.max_seq_length {
                return Err(EncoderError::bare(EncoderErrorKind::TokenIds {
                    index,
                    message: format!(
                        "expected 1 to {} ids (the model's window), found {}",
                        self.max_seq_length,
                        row.len()
                    ),
                }));
            }
            tokens.push(Tokens {
                ids: row.clone(),
                type_ids: vec![0; row.len()],
            });
        }
        self.embed_tokens(&tokens, &mut |_| {})
    }

    /// Every token's output vector of each text (`tokens × dim()`, truncated to the window,
    /// special tokens included, before pooling): what TEI's `/embed_all` answers.
    pub fn token_states<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let (tokens, order) = self.tokens_longest_first(texts)?;
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in self.batches(&tokens, &order) {
            let rows: Vec<TokenRow> = chunk.iter().map(|&i| tokens[i].row()).collect();
            self.run_graph(&rows, |row, states| out[chunk[row]] = states.to_vec())?;
        }
        Ok(out)
    }

    /// A text's tokens with the special tokens, before truncation: `max_seq_length()` or
    /// fewer for a text that fits.
    pub fn token_count(&self, text: &str) -> Result<usize, EncoderError> {
        let (tokens, cut) = self.encode(0, text)?;
        if !cut {
            return Ok(tokens.ids.len());
        }
        let template = self.window_template()?;
        guarded(|| template.count(0, text))
    }

    /// Tokenizes text number `index` (named in errors), and says whether it was cut; a panic
    /// in the tokenizer is an error.
    fn encode(&self, index: usize, text: &str) -> Result<(Tokens, bool), EncoderError> {
        guarded(|| self.encode_unguarded(index, text))
    }

    fn encode_unguarded(&self, index: usize, text: &str) -> Result<(Tokens, bool), EncoderError> {
        let enc = self.truncated_encoding(index, text)?;
        if enc.get_ids().is_empty() {
            return Err(EncoderError::bare(EncoderErrorKind::NoTokens { index }));
        }
        let tokens = Tokens {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
        };
        Ok((tokens, !enc.get_overflowing().is_empty()))
    }

    /// The special tokens around a window and a tokenizer that does not truncate, built once.
    fn window_template(&self) -> Result<&WindowTemplate, EncoderError> {
        if let Some(t) = self.windows.get() {
            return Ok(t);
        }
        let built = guarded(|| WindowTemplate::new(&self.tokenizer))?;
        Ok(self.windows.get_or_init(|| built))
    }

    /// The overlap [`LongTexts::Chunk`] reads with: `stride`, or a quarter of a window's text.
    pub fn chunk_stride(&self, stride: Option<usize>) -> Result<usize, EncoderError> {
        let width = self.window_template()?.width(self.max_seq_length);
        let stride = stride.unwrap_or(width / 4);
        if stride >= width {
            return Err(EncoderError::bare(EncoderErrorKind::Stride {
                stride,
                width,
            }));
        }
        Ok(stride)
    }

    /// The text's truncated encoding, from only as much of a long text as truncation keeps,
    /// so that a 100 MB line is not tokenised whole for its first 256 tokens.
    ///
    /// A prefix cut just before a whitespace character tokenises to a prefix of the whole
    /// text's tokens (normalisers work per character; pre-tokenisers split at whitespace, or
    /// start a word with it). When such a prefix already overflows the truncation length, the
    /// kept tokens all lie inside it, and its encoding is exactly the whole text's.
    ///
    /// A run of more than [`MAX_RUN_BYTES`] without whitespace (or of whitespace) is read as
    /// its first [`MAX_RUN_BYTES`]: no word is that long, a WordPiece vocabulary reads such a
    /// run as one `[UNK]` either way, and it is what would otherwise be tokenised whole.
    fn truncated_encoding(
        &self,
        index: usize,
        text: &str,
    ) -> Result<tokenizers::Encoding, EncoderError> {
        const FIRST_TRY: usize = 1 << 16;
        let encode = |t: &str| {
            self.tokenizer
                .encode_fast(t, true)
                .map_err(EncoderError::tokenize(index))
        };
        if text.len() <= FIRST_TRY {
            return encode(text);
        }
        let mut runs = CappedRuns { text, at: 0 };
        let mut kept = String::new();
        let mut budget = FIRST_TRY;
        loop {
            while kept.len() < budget {
                match runs.next() {
                    Some(run) => kept.push_str(run),
                    None => return encode(&kept),
                }
            }
            if let Some(cut) = kept.rfind(char::is_whitespace).filter(|&c| c > 0) {
                let enc = encode(&kept[..cut])?;
                if !enc.get_overflowing().is_empty() {
                    return Ok(enc);
                }
            }
            budget *= 4;
        }
    }

    /// Embeds texts: `texts.len() * dim()` values, row `i` for text `i`.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<f32>, EncoderError> {
        self.embed_with_progress(texts, &mut |_| {})
    }

    /// Every text's tokens, and the text indices longest first: batches are runs of that order.
    /// Longest first, so the costly batches start early and parallel workers finish together.
    fn tokens_longest_first<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<(Vec<Tokens>, Vec<usize>), EncoderError> {
        let tokens = texts
            .iter()
            .enumerate()
            .map(|(index, t)| Ok(self.encode(index, t.as_ref())?.0))
            .collect::<Result<Vec<_>, EncoderError>>()?;
        let order = longest_first(&tokens);
        Ok((tokens, order))
    }

    fn batches<'o>(&self, tokens: &[Tokens], order: &'o [usize]) -> Vec<&'o [usize]> {
        split_batches(
            order,
            |i| tokens[i].ids.len(),
            self.options.batch_size,
            self.options.workers,
        )
    }

    /// Embeds texts, calling `progress(done)` after each batch with the number of texts done.
    pub fn embed_with_progress<S: AsRef<str>>(
        &self,
        texts: &[S],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>, EncoderError> {
        Ok(self
            .embed_windows(texts, LongTexts::Truncate, progress)?
            .pooled)
    }

    /// Embeds texts, a text longer than the window as `long` says: its first window
    /// ([`LongTexts::Truncate`]), or all of its windows ([`LongTexts::Chunk`]), batched with
    /// the other texts. `progress(done)` is called after each batch, `done` in texts (a share
    /// of the windows done, when there are more windows than texts).
    pub fn embed_windows<S: AsRef<str>>(
        &self,
        texts: &[S],
        long: LongTexts,
        progress: &mut dyn FnMut(usize),
    ) -> Result<WindowEmbeddings, EncoderError> {
        let stride = self.resolve(long)?;
        let mut windows = Vec::with_capacity(texts.len());
        let mut spans = Vec::with_capacity(texts.len());
        let mut long_texts = 0;
        for (index, text) in texts.iter().enumerate() {
            let start = windows.len();
            long_texts +=
                usize::from(self.text_windows(index, text.as_ref(), stride, &mut windows)?);
            spans.push(start..windows.len());
        }
        let (n_texts, n_windows) = (texts.len(), windows.len().max(1));
        let pooled =
            self.embed_tokens(&windows, &mut |done| progress(done * n_texts / n_windows))?;
        Ok(WindowEmbeddings {
            pooled,
            spans,
            tokens: windows.iter().map(|w| w.ids.len()).collect(),
            long_texts,
            dim: self.dim,
        })
    }

    /// The token windows [`Encoder::embed_windows`] reads a text as: its tokens as
    /// [`Encoder::tokenize`] gives them when it fits the window or `long` truncates, else
    /// windows of at most `max_seq_length()` tokens with the special tokens in each.
    pub fn windows(&self, text: &str, long: LongTexts) -> Result<Vec<Tokens>, EncoderError> {
        let mut windows = Vec::new();
        self.text_windows(0, text, self.resolve(long)?, &mut windows)?;
        Ok(windows)
    }

    /// `long`'s stride, checked, or `None` for truncation.
    fn resolve(&self, long: LongTexts) -> Result<Option<usize>, EncoderError> {
        match long {
            LongTexts::Truncate => Ok(None),
            LongTexts::Chunk { stride } => Ok(Some(self.chunk_stride(stride)?)),
        }
    }

    /// Appends text `index`'s windows to `windows` (one, unless it is long and `stride` is
    /// given); says whether it was longer than the window.
    fn text_windows(
        &self,
        index: usize,
        text: &str,
        stride: Option<usize>,
        windows: &mut Vec<Tokens>,
    ) -> Result<bool, EncoderError> {
        let (tokens, cut) = self.encode(index, text)?;
        match stride {
            Some(stride) if cut => {
                let template = self.window_template()?;
                windows.extend(guarded(|| {
                    template.windows(index, text, self.max_seq_length, stride)
                })?);
            }
            _ => windows.push(tokens),
        }
        Ok(cut)
    }

    /// Pooled rows of token sequences, row `i` for `tokens[i]`, in batches longest first;
    /// `progress(done)` after each batch.
    fn embed_tokens(
        &self,
        tokens: &[Tokens],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>, EncoderError> {
        let order = longest_first(tokens);
        let chunks = self.batches(tokens, &order);
        let mut out = vec![0f32; tokens.len() * self.dim];
        let mut done = 0;
        let mut place = |chunk: &[usize], pooled: &[f32], done: &mut usize| {
            for (row, &i) in chunk.iter().enumerate() {
                out[i * self.dim..(i + 1) * self.dim]
                    .copy_from_slice(&pooled[row * self.dim..(row + 1) * self.dim]);
            }
            *done += chunk.len();
            progress(*done);
        };
        let workers = self.options.workers.clamp(1, chunks.len().max(1));
        if workers == 1 {
            for chunk in &chunks {
                let batch: Vec<&Tokens> = chunk.iter().map(|&i| &tokens[i]).collect();
                // On the kernels' pool: its parallel loops then split work without a hand-over.
                let pooled = emotions_runtime::on_pool(|| self.run_batch(&batch))?;
                place(chunk, &pooled, &mut done);
            }
            return Ok(out);
        }
        // Data parallelism: each worker runs whole batches with single-threaded kernels, which
        // scales better than splitting every matrix product across threads.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Vec<f32>, EncoderError>)>();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let (tx, next, chunks, tokens) = (tx.clone(), &next, &chunks, &tokens);
                scope.spawn(move || {
                    emotions_runtime::single_threaded(|| {
                        loop {
                            let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(chunk) = chunks.get(c) else { break };
                            let batch: Vec<&Tokens> = chunk.iter().map(|&i| &tokens[i]).collect();
                            let result = self.run_batch(&batch);
                            let failed = result.is_err();
                            if tx.send((c, result)).is_err() || failed {
                                break;
                            }
                        }
                    })
                });
            }
            drop(tx);
            for (c, result) in rx {
                match result {
                    Ok(pooled) => place(chunks[c], &pooled, &mut done),
                    Err(e) => {
                        // Stop handing out work; the others finish their current batch.
                        next.store(chunks.len(), std::sync::atomic::Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Which parts of the graph the load-time rewrites matched.
    ///
    /// ```no_run
    /// let encoder = emotions_encoder::Encoder::from_dir("models/minilm")?;
    /// assert_eq!(encoder.rewrites().attention, 6); // one per layer of MiniLM-L6
    /// # Ok::<(), emotions_encoder::EncoderError>(())
    /// ```
    pub fn rewrites(&self) -> GraphRewrites {
        let mut rewrites = self.graph.rewrites();
        if self.adapter_left_out {
            rewrites.low_rank = 0;
        }
        rewrites
    }

    /// Shapes with an optimised plan cached so far; `(0, 0)` is the symbolic plan.
    pub fn cached_shapes(&self) -> Vec<(usize, usize)> {
        self.graph.cached_shapes()
    }

    /// Time spent per op type over the batches `texts` makes, single-threaded, for
    /// performance work (`examples/op_profile.rs`): `(op name, total, calls)`, largest first.
    #[doc(hidden)]
    pub fn op_profile<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<Vec<(String, std::time::Duration, usize)>, EncoderError> {
        let (tokens, order) = self.tokens_longest_first(texts)?;
        let batches: Vec<Vec<TokenRow>> = self
            .batches(&tokens, &order)
            .into_iter()
            .map(|chunk| chunk.iter().map(|&i| tokens[i].row()).collect())
            .collect();
        Ok(self.graph.op_profile(&batches)?)
    }

    /// Runs the graph, with its adapter or, for the plain view, without.
    fn run_graph(
        &self,
        rows: &[TokenRow<'_>],
        per_text: impl FnMut(usize, &[f32]),
    ) -> Result<(), RuntimeError> {
        if self.adapter_left_out {
            self.graph.run_without_adapter(rows, per_text)
        } else {
            self.graph.run(rows, per_text)
        }
    }

    /// Pooled (and, when the model says so, normalised) embeddings of a batch, row by row.
    fn run_batch(&self, batch: &[&Tokens]) -> Result<Vec<f32>, EncoderError> {
        let rows: Vec<TokenRow> = batch.iter().map(|t| t.row()).collect();
        let mut pooled = vec![0f32; batch.len() * self.dim];
        self.run_graph(&rows, |row, states| {
            let out = &mut pooled[row * self.dim..(row + 1) * self.dim];
            self.pooling.pool(states, self.dim, out);
            if self.normalize {
                let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                out.iter_mut().for_each(|x| *x /= norm);
            }
        })?;
        Ok(pooled)
    }
}

/// The longest run of non-whitespace (or of whitespace) characters a text is read with.
pub const MAX_RUN_BYTES: usize = 1 << 14;

/// A text's maximal runs of whitespace and of non-whitespace characters, in order, each cut to
/// its first [`MAX_RUN_BYTES`] (at a character boundary).
struct CappedRuns<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Iterator for CappedRuns<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let rest = &self.text[self.at..];
        let first = rest.chars().next()?;
        let space = first.is_whitespace();
        let len = rest
            .char_indices()
            .find(|(_, c)| c.is_whitespace() != space)
            .map_or(rest.len(), |(i, _)| i);
        let mut end = len.min(MAX_RUN_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        self.at += len;
        Some(&rest[..end])
    }
}

/// What one more forward pass costs whatever its size, in padded tokens' worth of work: the
/// plan's dispatch, its buffers, and reading every weight once more. On `embed` of 1,000
/// go_emotions test texts, 2 to 8 ran alike and 32 or more was slower (docs/PERFORMANCE.md,
/// "Batches cut by length").
const BATCH_COST_TOKENS: usize = 4;

/// Splits `order` (longest first) into batches of at most `most` texts and at most
/// `most` × [`TOKENS_PER_TEXT`] padded tokens, so that a batch of long texts takes no more
/// memory than one of typical texts: peak memory stays flat over any input.
///
/// Within those bounds the cut points are the ones with the least work: every text is padded
/// to its batch's first (longest), and each batch costs [`BATCH_COST_TOKENS`] more. So texts
/// of one length share a batch and a batch ends where the lengths drop by more than the cost of
/// another pass (fixed runs of `most` texts padded ~5% more on go_emotions). A dynamic
/// programme over the cut points: `order.len() × most` steps. With several workers and no more
/// texts than one batch each, the texts are shared out evenly instead.
fn split_batches(
    order: &[usize],
    len: impl Fn(usize) -> usize,
    most: usize,
    workers: usize,
) -> Vec<&[usize]> {
    let budget = most.max(1) * TOKENS_PER_TEXT;
    let n = order.len();
    // Fewer texts than the workers' batches would hold are shared out, one batch per worker:
    // every core runs, and each batch is padded to its own longest text, not the longest of all.
    // Then the cuts stay even: a third batch would run after the first two, not beside them.
    let workers = workers.max(1);
    let shared_out = workers > 1 && n <= most.max(1) * workers;
    let most = most.min(n.div_ceil(workers)).max(1);
    if shared_out {
        let mut batches = vec![];
        let mut rest = order;
        while let Some(&first) = rest.first() {
            // Longest first: a batch is padded to its first text.
            let take = (budget / len(first).max(1)).clamp(1, most).min(rest.len());
            let (batch, tail) = rest.split_at(take);
            batches.push(batch);
            rest = tail;
        }
        return batches;
    }
    // least[j]: the least work that batches order[..j]; start[j]: where its last batch starts.
    let mut least = vec![usize::MAX; n + 1];
    let mut start = vec![0; n + 1];
    least[0] = 0;
    for end in 1..=n {
        // Growing the batch backwards: its first text is longer and it holds more, so once it
        // is over the budget every larger batch is too.
        for first in (end.saturating_sub(most)..end).rev() {
            let padded = (end - first) * len(order[first]).max(1);
            if end - first > 1 && padded > budget {
                break;
            }
            let work = least[first] + padded + BATCH_COST_TOKENS;
            // On a tie the last batch stays the shorter: earlier batches are filled first.
            if work < least[end] {
                least[end] = work;
                start[end] = first;
            }
        }
    }
    let mut batches = vec![];
    let mut end = n;
    while end > 0 {
        batches.push(&order[start[end]..end]);
        end = start[end];
    }
    batches.reverse();
    batches
}

impl Tokens {
    fn row(&self) -> TokenRow<'_> {
        TokenRow {
            ids: &self.ids,
            type_ids: &self.type_ids,
        }
    }
}

/// Indices of `tokens`, longest first (ties in input order).
fn longest_first(tokens: &[Tokens]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].ids.len()));
    order
}

/// `f()`, with a panic inside the tokenizer turned into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, EncoderError>) -> Result<T, EncoderError> {
    emotions_runtime::catch_panic(f)
        .unwrap_or_else(|message| Err(EncoderError::bare(EncoderErrorKind::Crashed { message })))
}

/// A 64-bit hash of every file that shapes an encoder's embeddings.
fn fingerprint(files: &EncoderFiles<'_>) -> String {
    hash_parts(&[
        files.model_onnx,
        files.tokenizer_json,
        files.config_json.as_bytes(),
        files.sentence_bert_config_json.as_bytes(),
        files.modules_json.as_bytes(),
        files.pooling_config_json.as_bytes(),
    ])
}

/// 16 hex digits of a 64-bit hash of `parts`, word by word (each part's 8-byte little-endian
/// words, the last zero-padded, then its length), so that a 23 MB model takes a few
/// milliseconds. Heads record it (`encoder_fingerprint`): its values must never change.
fn hash_parts(parts: &[&[u8]]) -> String {
    let step = |h: u64, word: u64| {
        let h = (h ^ word).wrapping_mul(0x0000_0100_0000_01b3);
        h ^ (h >> 29)
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        // Whole words read directly: a chained, padded iterator took a tenth of a 133 MB f32
        // model's load.
        let words = part.chunks_exact(8);
        let tail = words.remainder();
        for word in words {
            h = step(h, u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        if !tail.is_empty() {
            let mut w = [0u8; 8];
            w[..tail.len()].copy_from_slice(tail);
            h = step(h, u64::from_le_bytes(w));
        }
        h = step(h, part.len() as u64);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_parts_keeps_its_values() {
        // Recorded in heads as `encoder_fingerprint`: computed by the first version (a chained,
        // padded iterator of words), which these values pin.
        use super::hash_parts;
        assert_eq!(hash_parts(&[]), "cbf29ce484222325");
        assert_eq!(hash_parts(&[b""]), "af63bd49fd1c5dbb");
        assert_eq!(hash_parts(&[b"abcdefgh"]), "35a39c126c3f2f52");
        assert_eq!(hash_parts(&[b"abcdefghij", b"xyz"]), "1625d742af689cdc");
    }
    #[test]
    fn runs_are_cut_and_short_runs_kept_whole() {
        use super::{CappedRuns, MAX_RUN_BYTES};
        let text = "a  bc\té";
        let runs: Vec<&str> = CappedRuns { text, at: 0 }.collect();
        assert_eq!(runs, ["a", "  ", "bc", "\t", "é"]);
        let long = format!(
            "x {} y{}",
            "é".repeat(MAX_RUN_BYTES),
            " ".repeat(MAX_RUN_BYTES + 3)
        );
        let runs: Vec<&str> = CappedRuns { text: &long, at: 0 }.collect();
        assert_eq!(runs.len(), 6);
        assert_eq!(
            runs[2].len(),
            MAX_RUN_BYTES,
            "é is 2 bytes: cut at a boundary"
        );
        assert_eq!(runs[4], "y");
        assert_eq!(runs[5].len(), MAX_RUN_BYTES);
    }
    use super::*;

    #[test]
    fn batches_hold_the_token_budget_and_every_text_once() {
        // Longest first: 300, 200, then 40 texts of 64 and 10 of 5 tokens.
        let lens: Vec<usize> = [300, 200]
            .into_iter()
            .chain(std::iter::repeat_n(64, 40))
            .chain(std::iter::repeat_n(5, 10))
            .collect();
        let order: Vec<usize> = (0..lens.len()).collect();
        let sizes = |b: Vec<&[usize]>| b.iter().map(|b| b.len()).collect::<Vec<_>>();
        let batches = split_batches(&order, |i| lens[i], 32, 1);
        // Padding 200 to 300 costs more than a pass; 32 texts of 64 fill the 2048-token budget;
        // the short texts are not padded to 64.
        assert_eq!(sizes(batches.clone()), [1, 1, 32, 8, 10]);
        for b in &batches {
            assert!(b.len() * lens[b[0]] <= 32 * TOKENS_PER_TEXT || b.len() == 1);
        }
        let flat: Vec<usize> = batches.concat();
        assert_eq!(flat, order);
        // A text longer than the whole budget still gets a batch of its own.
        assert_eq!(split_batches(&[0], |_| 5000, 32, 1), vec![&[0][..]]);
        // 100 texts of 100 tokens: the budget, not the batch size, bounds a batch.
        let hundred: Vec<usize> = (0..100).collect();
        assert_eq!(sizes(split_batches(&hundred, |_| 100, 32, 1)), [20; 5]);
        // Two workers and no more texts than their batches hold: shared out evenly, each batch
        // padded to its own longest (the budget still cuts 6 of 300); 32 short texts as 16 + 16;
        // one text stays one batch.
        assert_eq!(
            sizes(split_batches(&order, |i| lens[i], 32, 2)),
            [6, 26, 20]
        );
        let short: Vec<usize> = (0..32).collect();
        assert_eq!(sizes(split_batches(&short, |_| 12, 32, 2)), [16, 16]);
        assert_eq!(sizes(split_batches(&[0], |_| 12, 32, 2)), [1]);
        assert!(split_batches(&[], |_| 12, 32, 2).is_empty());
        // More than that: cut by length, as for one worker.
        let many: Vec<usize> = lens.iter().chain(&lens).copied().collect();
        let mut many_order: Vec<usize> = (0..many.len()).collect();
        many_order.sort_by_key(|&i| std::cmp::Reverse(many[i]));
        assert_eq!(
            sizes(split_batches(&many_order, |i| many[i], 32, 2)),
            [2, 2, 32, 32, 16, 20]
        );
    }

    /// Cuts fall where lengths drop by more than a pass costs: a text one token shorter joins
    /// the batch before it; texts a third as long get their own.
    #[test]
    fn batches_are_cut_where_padding_costs_more_than_a_pass() {
        let lens: Vec<usize> = std::iter::repeat_n(30, 20)
            .chain([29])
            .chain(std::iter::repeat_n(10, 20))
            .collect();
        let order: Vec<usize> = (0..lens.len()).collect();
        let batches = split_batches(&order, |i| lens[i], 32, 1);
        let sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [21, 20]);
        // Fixed runs of 32 would pad 11 texts of 10 to 30: 220 tokens more.
        let padded = |b: &[&[usize]]| b.iter().map(|b| b.len() * lens[b[0]]).sum::<usize>();
        let fixed: Vec<&[usize]> = order.chunks(32).collect();
        assert_eq!(padded(&fixed) - padded(&batches), 220);
    }

    #[test]
    fn encoder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Encoder>();
    }

    #[test]
    fn missing_files_are_named() {
        let dir = std::env::temp_dir().join(format!("emotions-enc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = Encoder::from_dir(&dir).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("encoder folder is missing model.onnx (or onnx/model.onnx)"),
            "{err}"
        );
        std::fs::write(dir.join("model.onnx"), b"x").unwrap();
        let err = Encoder::from_dir(&dir).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("encoder folder is missing tokenizer.json"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
