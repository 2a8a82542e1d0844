//! Flags, parsed by clap, then validated into resolved configs the commands run from.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use emotions::{EncoderChoice, Thresholds};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "emotions",
    version,
    about = "go_emotions classifier: text or sentence embeddings in, 28 emotion labels out. No onnxruntime, no Python.",
    after_help = "Defaults compiled in: the all-MiniLM-L6-v2 int8 encoder and the default head (models/README.md)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Classify texts or embeddings; writes one JSON line per input, in input order.
    Classify(ClassifyArgs),
    /// Embed texts; writes one JSON array per line, or an [N, D] .npy.
    Embed(EmbedArgs),
    /// Train a head on a labelled go_emotions split: one L2 logistic regression per label.
    Train(TrainArgs),
    /// Choose per-label thresholds that maximise F1 on a labelled split; writes thresholds.json.
    Tune(TuneArgs),
    /// Print the model card's metrics on a labelled split.
    Eval(EvalArgs),
    /// Serve /classify, /labels, /health and /metrics over HTTP.
    Serve(ServeArgs),
}

pub fn parse() -> Cli {
    Cli::parse()
}

/// Head and decision flags shared by the commands that classify.
#[derive(Args, Clone)]
pub struct HeadArgs {
    /// Classifier head (ONNX). Default: the embedded default head (models/head). A head file's
    /// thresholds are thresholds.json beside it when present, else the model card's.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Per-label thresholds: {label: t} or an array in label order.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["threshold", "top_k"])]
    pub thresholds: Option<PathBuf>,
    /// One threshold for every label, in [0, 1].
    #[arg(long, value_name = "F", conflicts_with = "top_k")]
    pub threshold: Option<f32>,
    /// Predict the K highest-scoring labels instead of thresholding.
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
}

/// Where texts come from.
#[derive(Args, Clone)]
pub struct TextArgs {
    /// A text to classify; repeat for more.
    #[arg(long = "text", value_name = "TEXT")]
    pub text: Vec<String>,
    /// One text per line, UTF-8; '-' reads stdin. An empty line is an empty text, not skipped.
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    pub texts: Option<String>,
}

/// Encoder flags.
#[derive(Args, Clone)]
pub struct EncoderArgs {
    /// Sentence-transformers folder (model.onnx, tokenizer.json, ...). Default: the embedded
    /// all-MiniLM-L6-v2 int8.
    #[arg(long, value_name = "DIR")]
    pub encoder: Option<PathBuf>,
    /// Texts per encoder forward pass.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub batch_size: usize,
    /// Threads for tract's matrix products. Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Encoder plans: "symbolic" (one plan for all shapes, no padding beyond each batch's
    /// longest text) or "buckets" (one plan per batch size and length bucket; faster only for
    /// encoders whose projections and attention the rewrites do not match).
    #[arg(long, value_name = "MODE", default_value = "symbolic")]
    pub plans: String,
}

impl EncoderArgs {
    /// Loads the encoder these flags name.
    fn load(&self) -> anyhow::Result<emotions::Encoder> {
        self.apply_threads()?;
        let options = self.options()?;
        match &self.encoder {
            Some(dir) => emotions::Encoder::from_dir_with(dir, options),
            None => {
                emotions::Encoder::from_files_with(emotions::defaults::encoder_files(), options)
            }
        }
        .context("loading the encoder")
    }

    fn options(&self) -> anyhow::Result<emotions_encoder::EncoderOptions> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let plans = match self.plans.as_str() {
            "buckets" => emotions_encoder::PlanShapes::Buckets,
            "symbolic" => emotions_encoder::PlanShapes::Symbolic,
            other => bail!("--plans: expected buckets or symbolic, found '{other}'"),
        };
        Ok(emotions_encoder::EncoderOptions {
            batch_size: self.batch_size,
            plans,
            workers: self.threads()?,
        })
    }

    fn choice(&self) -> EncoderChoice {
        match &self.encoder {
            Some(dir) => EncoderChoice::Dir(dir.clone()),
            None => EncoderChoice::Default,
        }
    }

    fn threads(&self) -> anyhow::Result<usize> {
        match self.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(n) => Ok(n),
            None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        }
    }

    /// A lone batch splits its matrix products across the threads; many batches run one per
    /// thread instead.
    fn apply_threads(&self) -> anyhow::Result<()> {
        emotions_encoder::set_threads(self.threads()?);
        Ok(())
    }
}

/// Loads a classifier; every bad file is an error naming it.
fn classifier(
    head: &HeadArgs,
    encoder: EncoderChoice,
    enc: &EncoderArgs,
) -> anyhow::Result<emotions::Classifier> {
    let mut builder = emotions::Classifier::builder()
        .encoder(encoder)
        .encoder_options(enc.options()?);
    if let Some(path) = &head.model {
        builder = builder.head_path(path);
    }
    if let Some(path) = &head.thresholds {
        builder = builder.thresholds(Thresholds::from_path(path)?);
    }
    if let Some(t) = head.threshold {
        builder = builder.fixed_threshold(t);
    }
    if let Some(k) = head.top_k {
        builder = builder.top_k(k);
    }
    let classifier = builder.build().context("loading the classifier")?;
    for w in classifier.warnings() {
        eprintln!("emotions: warning: {w}");
    }
    Ok(classifier)
}

#[derive(Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub texts: TextArgs,
    /// Embeddings instead of texts: .npy (f32 [N, D]) or JSON Lines (an array of D numbers, or
    /// an object with an "embedding" array, per line); '-' reads JSON Lines from stdin.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["text", "texts", "encoder"])]
    pub embeddings: Option<String>,
    /// Write the [N, 28] positive scores in label order to this .npy instead of JSON Lines.
    #[arg(long, value_name = "FILE.npy")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub head: HeadArgs,
    #[command(flatten)]
    pub encoder: EncoderArgs,
}

/// What `classify` and `embed` read.
pub enum Input {
    Embeddings(String),
    Texts(Vec<String>),
    TextsFile(String),
}

impl Input {
    fn from_text_args(t: TextArgs) -> Option<Input> {
        match (t.texts, t.text.is_empty()) {
            (Some(path), _) => Some(Input::TextsFile(path)),
            (None, false) => Some(Input::Texts(t.text)),
            (None, true) => None,
        }
    }

    /// The texts, read now; errors name the file and line.
    pub fn texts(self) -> anyhow::Result<Vec<String>> {
        match self {
            Input::Texts(t) => Ok(t),
            Input::TextsFile(path) => Ok(emotions_io::read_texts_path(&path)?),
            Input::Embeddings(_) => unreachable!("resolved configs never ask embeddings for texts"),
        }
    }
}

pub struct ClassifyConfig {
    pub input: Input,
    pub output: Option<PathBuf>,
    pub classifier: emotions::Classifier,
}

fn check_npy_output(out: &Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(out) = out
        && !out
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        bail!("--output {}: expected a .npy path", out.display());
    }
    Ok(())
}

impl ClassifyArgs {
    pub fn resolve(self) -> anyhow::Result<ClassifyConfig> {
        check_npy_output(&self.output)?;
        let (input, encoder) = match (self.embeddings, Input::from_text_args(self.texts)) {
            (Some(path), _) => (Input::Embeddings(path), EncoderChoice::None),
            (None, Some(input)) => (input, self.encoder.choice()),
            (None, None) => {
                bail!("nothing to classify: give --text TEXT, --texts FILE or --embeddings FILE")
            }
        };
        self.encoder.apply_threads()?;
        Ok(ClassifyConfig {
            input,
            output: self.output,
            classifier: classifier(&self.head, encoder, &self.encoder)?,
        })
    }
}

#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub texts: TextArgs,
    /// Write an [N, D] f32 .npy instead of JSON Lines.
    #[arg(long, value_name = "FILE.npy")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub encoder: EncoderArgs,
}

pub struct EmbedConfig {
    pub input: Input,
    pub output: Option<PathBuf>,
    pub encoder: emotions::Encoder,
}

impl EmbedArgs {
    pub fn resolve(self) -> anyhow::Result<EmbedConfig> {
        check_npy_output(&self.output)?;
        let Some(input) = Input::from_text_args(self.texts) else {
            bail!("nothing to embed: give --text TEXT or --texts FILE");
        };
        Ok(EmbedConfig {
            input,
            output: self.output,
            encoder: self.encoder.load()?,
        })
    }
}

/// A labelled split and where its embeddings come from.
#[derive(Args)]
pub struct SplitArgs {
    /// A go_emotions split: text<TAB>label ids<TAB>id per line.
    #[arg(long, value_name = "FILE.tsv")]
    pub split: PathBuf,
    /// Precomputed embeddings row-aligned with the split (from `emotions embed`); otherwise the
    /// encoder computes them, cached in --cache.
    #[arg(long, value_name = "FILE")]
    pub embeddings: Option<String>,
    /// Where computed embeddings are cached, keyed by encoder and texts.
    #[arg(long, value_name = "DIR", default_value = ".emotions-cache")]
    pub cache: PathBuf,
    #[command(flatten)]
    pub encoder: EncoderArgs,
}

impl SplitArgs {
    fn load(&self) -> anyhow::Result<crate::training::Split> {
        use crate::training::{EmbeddingSource, Split};
        match &self.embeddings {
            Some(file) => Split::load(&self.split, EmbeddingSource::File(file)),
            None => {
                let encoder = self.encoder.load()?;
                Split::load(
                    &self.split,
                    EmbeddingSource::Encoder {
                        encoder: &encoder,
                        cache: &self.cache,
                    },
                )
            }
        }
    }
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: SplitArgs,
    /// Where to write the head (ONNX, the model card's format).
    #[arg(long, value_name = "FILE.onnx")]
    pub output: PathBuf,
    /// Inverse L2 strength (scikit-learn's C): one value, or 28 comma-separated in label order.
    #[arg(long, value_name = "C", default_value = "1")]
    pub c: String,
    /// none, or balanced (n / (2 n_class) per class).
    #[arg(long, value_name = "W", default_value = "none")]
    pub class_weight: String,
    /// L-BFGS iterations per label at most.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_iter: usize,
    /// Stop when the largest gradient component is at most this.
    #[arg(long, value_name = "F", default_value_t = 1e-6)]
    pub tol: f64,
    /// Labels fitted in parallel; the result does not depend on it. Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// The encoder name recorded in the head's metadata. Default: the encoder's.
    #[arg(long, value_name = "NAME")]
    pub encoder_name: Option<String>,
}

impl TrainArgs {
    pub fn resolve(self) -> anyhow::Result<crate::training::TrainConfig> {
        let c: Vec<f64> = self
            .c
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| anyhow::anyhow!("--c: '{v}' is not a number"))
            })
            .collect::<anyhow::Result<_>>()?;
        if c.len() != 1 && c.len() != emotions::NUM_LABELS {
            bail!(
                "--c: expected 1 or {} values, found {}",
                emotions::NUM_LABELS,
                c.len()
            );
        }
        if let Some(bad) = c.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            bail!("--c: must be positive, found {bad}");
        }
        let jobs = self
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if jobs == 0 {
            bail!("--jobs must be at least 1");
        }
        let options = emotions_train::TrainOptions {
            c,
            class_weight: crate::training::parse_class_weight(&self.class_weight)?,
            max_iter: self.max_iter,
            tol: self.tol,
            jobs,
            ..Default::default()
        };
        let encoder_name =
            self.encoder_name
                .clone()
                .unwrap_or_else(|| match &self.data.encoder.encoder {
                    Some(dir) => dir.file_name().map_or(dir.display().to_string(), |n| {
                        n.to_string_lossy().into_owned()
                    }),
                    None => emotions::defaults::ENCODER_NAME.to_string(),
                });
        Ok(crate::training::TrainConfig {
            split: self.data.load()?,
            output: self.output,
            options,
            encoder_name,
        })
    }
}

#[derive(Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub data: SplitArgs,
    /// The head to tune. Default: the embedded default head.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Where to write thresholds.json.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Also tune on out-of-fold scores of this training split: refit the head --folds times
    /// with the options its metadata records, each time scoring the rows left out.
    #[arg(long, value_name = "FILE.tsv")]
    pub cv_split: Option<PathBuf>,
    /// Precomputed embeddings row-aligned with --cv-split.
    #[arg(long, value_name = "FILE", requires = "cv_split")]
    pub cv_embeddings: Option<String>,
    /// Folds for --cv-split.
    #[arg(long, value_name = "K", default_value_t = 5)]
    pub folds: usize,
    /// Labels fitted in parallel for --cv-split. Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

impl TuneArgs {
    pub fn resolve(self) -> anyhow::Result<crate::training::TuneConfig> {
        let head = HeadArgs {
            model: self.model,
            thresholds: None,
            threshold: None,
            top_k: None,
        };
        let classifier = classifier(&head, EncoderChoice::None, &self.data.encoder)?;
        if self.folds < 2 {
            bail!("--folds must be at least 2");
        }
        let jobs = self
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let cross_validate = match &self.cv_split {
            Some(path) => {
                let cv = SplitArgs {
                    split: path.clone(),
                    embeddings: self.cv_embeddings.clone(),
                    cache: self.data.cache.clone(),
                    encoder: self.data.encoder.clone(),
                };
                Some((cv.load()?, self.folds))
            }
            None => None,
        };
        Ok(crate::training::TuneConfig {
            split: self.data.load()?,
            classifier,
            output: self.output,
            cross_validate,
            jobs,
        })
    }
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: SplitArgs,
    #[command(flatten)]
    pub head: HeadArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

impl EvalArgs {
    pub fn resolve(self) -> anyhow::Result<crate::training::EvalConfig> {
        let classifier = classifier(&self.head, EncoderChoice::None, &self.data.encoder)?;
        Ok(crate::training::EvalConfig {
            split: self.data.load()?,
            classifier,
            json: self.json,
        })
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Texts or embedding rows per request at most.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_inputs: usize,
    /// Characters per text at most; longer texts are cut (the encoder truncates to its
    /// max_seq_length tokens in any case).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_text_chars: usize,
    /// Request body size at most.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Requests in flight at once; more get 429.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_concurrent: usize,
    /// Texts per encoder call when batching concurrent requests.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_batch: usize,
    /// How long to wait for more requests to batch, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2)]
    pub batch_wait_ms: u64,
    #[command(flatten)]
    pub head: HeadArgs,
    #[command(flatten)]
    pub encoder: EncoderArgs,
}

pub struct ServeConfig {
    pub addr: std::net::SocketAddr,
    pub server: emotions_server::ServerConfig,
    pub classifier: emotions::Classifier,
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        use std::net::ToSocketAddrs;
        let addr = self
            .addr
            .to_socket_addrs()
            .with_context(|| format!("--addr {}: expected HOST:PORT", self.addr))?
            .next()
            .with_context(|| format!("--addr {}: no address", self.addr))?;
        for (flag, v) in [
            ("--max-inputs", self.max_inputs),
            ("--max-text-chars", self.max_text_chars),
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-concurrent", self.max_concurrent),
            ("--max-batch", self.max_batch),
        ] {
            if v == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        let server = emotions_server::ServerConfig {
            max_inputs: self.max_inputs,
            max_text_chars: self.max_text_chars,
            max_body_bytes: self.max_body_bytes,
            max_concurrent: self.max_concurrent,
            max_batch: self.max_batch,
            batch_wait: std::time::Duration::from_millis(self.batch_wait_ms),
        };
        self.encoder.apply_threads()?;
        let classifier = classifier(&self.head, self.encoder.choice(), &self.encoder)?;
        Ok(ServeConfig {
            addr,
            server,
            classifier,
        })
    }
}
