//! Flags: clap's structs (the low-level arguments), then [`HiArgs`], what the commands run
//! from. Turning one into the other is pure: it checks values and combinations and loads
//! nothing, so a bad flag is reported before any model is read.

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};
use emotions::{Aggregate, EncoderChoice, EncoderOptions, LongTexts, PlanShapes, Precision};
use emotions_train::{ClassWeight, MlpOptions, TrainOptions};
use std::path::PathBuf;

/// More threads than this is a typo, and each costs a stack.
pub const MAX_THREADS: u16 = 256;

#[derive(Parser)]
#[command(
    name = "emotions",
    version,
    about = "go_emotions classifier: text or sentence embeddings in, 28 emotion labels out. No onnxruntime, no Python.",
    after_help = "Defaults compiled in: the all-MiniLM-L6-v2 int8 encoder and the default head (models/README.md)."
)]
pub struct LowArgs {
    #[command(subcommand)]
    command: LowCommand,
}

#[derive(Subcommand)]
enum LowCommand {
    /// Classify texts or embeddings; writes one JSON line per input, in input order.
    Classify(ClassifyArgs),
    /// Embed texts; writes one JSON array per line, or an [N, D] .npy.
    Embed(EmbedArgs),
    /// Train a head on a labelled go_emotions split: one L2 logistic regression per label.
    Train(TrainArgs),
    /// Choose per-label thresholds that maximise F1 on a labelled split; writes thresholds.json.
    Tune(TuneArgs),
    /// Print the model card's metrics, with calibration (ECE, Brier), on a labelled split.
    Eval(EvalArgs),
    /// Fit a per-label temperature on a labelled split (dev) so that scores read as
    /// probabilities; writes the rescaled head, its thresholds moved with it (the same
    /// decisions) and a report.
    Calibrate(CalibrateArgs),
    /// Average fine-tuned models of one encoder (a weight-space ensemble, served as one model
    /// of the same architecture): the linear heads' weights and biases, and the adapters'
    /// low-rank updates (their ranks add up). Writes head.onnx and adapter.safetensors; tune
    /// thresholds after.
    Average(AverageArgs),
    /// Serve over HTTP: POST /classify; TEI's POST /predict, /embed, /embed_all, /tokenize,
    /// /decode and GET /info; POST / (huggingface_hub); OpenAI's POST /v1/embeddings and GET
    /// /v1/models; GET /labels, /health, /metrics and /openapi.json.
    Serve(ServeArgs),
}

/// Head and decision flags shared by the commands that classify.
#[derive(Args, Clone)]
struct HeadArgs {
    /// Classifier head (ONNX). Default: the embedded default head (models/head). A head file's
    /// thresholds are thresholds.json beside it when present, else the model card's.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Per-label thresholds: {label: t} or an array in label order.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["threshold", "top_k"])]
    thresholds: Option<PathBuf>,
    /// One threshold for every label, in [0, 1].
    #[arg(long, value_name = "F", conflicts_with = "top_k")]
    threshold: Option<f32>,
    /// Predict the K highest-scoring labels instead of thresholding (1 to 28).
    #[arg(long, value_name = "K",
          value_parser = clap::value_parser!(u16).range(1..=emotions::NUM_LABELS as i64))]
    top_k: Option<u16>,
}

/// Where texts come from.
#[derive(Args, Clone)]
struct TextArgs {
    /// A text to classify; repeat for more.
    #[arg(long = "text", value_name = "TEXT")]
    text: Vec<String>,
    /// One text per line, UTF-8; '-' reads stdin. An empty line is an empty text, not skipped.
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    texts: Option<String>,
}

/// How `classify` and `embed` stream their input.
#[derive(Args, Clone)]
struct StreamArgs {
    /// Most rows read, embedded, scored and written at a time: memory stays bounded by it.
    /// The first chunk is 32 rows (or N, if smaller) and each next one twice the last, up to
    /// N, so the first results appear at once. Results do not depend on it.
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    chunk_size: u32,
    /// Skip lines that cannot be read (invalid UTF-8, bad JSON, a wrong width, a non-finite
    /// number), reporting each on stderr with its line number, instead of stopping at the
    /// first (after writing every row before it). Exits 0 when the rest succeeds.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Continue an interrupted run into the same --output: keep the rows it holds (a .npy's
    /// counted rows, a JSON Lines file's complete lines), skip that many input rows, append
    /// the rest. The result is the same as one uninterrupted run's.
    #[arg(long, requires = "output")]
    resume: bool,
}

/// How a text longer than the encoder's window is read, as the command line names it.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LongTextsArg {
    /// Its first window only, as sentence-transformers reads it.
    Truncate,
    /// Every token, in overlapping windows of the encoder's length, batched with the other
    /// texts.
    Chunk,
}

/// How a long text's window scores become its scores, as the command line names it.
#[derive(Clone, Copy, ValueEnum)]
enum AggregateArg {
    /// Per label, the highest window's: an emotion anywhere in the text counts.
    Max,
    /// Per label, the windows' mean.
    Mean,
}

/// Texts longer than the encoder's window.
#[derive(Args, Clone)]
struct LongTextArgs {
    /// Texts longer than the encoder's window (all-MiniLM-L6-v2: 256 tokens): `truncate` reads
    /// the first window, as sentence-transformers does; `chunk` reads every token, in windows.
    /// A text that fits gives the same result either way. How many were longer goes to
    /// stderr.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = LongTextsArg::Truncate)]
    long_texts: LongTextsArg,
    /// With `--long-texts chunk`: tokens each window repeats from the one before (fewer than a
    /// window's). Default: a quarter of a window.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    stride: Option<u32>,
}

/// Encoder plans, as the command line names them.
#[derive(Clone, Copy, ValueEnum)]
enum PlansArg {
    /// One plan for all shapes, no padding beyond each batch's longest text.
    Symbolic,
    /// One plan per batch size and length bucket; faster only for encoders whose projections
    /// and attention the rewrites do not match.
    Buckets,
}

/// How the encoder's projections multiply, as the command line names it.
#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    /// Integer projections at twice the f32 rate: activations rounded per token to 11-16 bits,
    /// int8 weights as they are, f32 weights rounded to 11 bits per feature (embeddings within
    /// 5e-4 of f32).
    Int16,
    /// int16, but with 8-bit activations (and outlier channels in 16 bits) on the projections
    /// the encoder's int8 calibration lists, where the CPU has AVX-512 VNNI: faster, and less
    /// exact (the embedded MiniLM on all 5,427 go_emotions test texts: min cosine 0.9996, mean
    /// 0.99993 against onnxruntime f32; docs/PERFORMANCE.md).
    Int8,
    /// f32 throughout, as onnxruntime: the exact mode.
    F32,
}

/// Encoder flags.
#[derive(Args, Clone)]
struct EncoderArgs {
    /// Sentence-transformers folder (model.onnx, tokenizer.json, ...). Default: the embedded
    /// all-MiniLM-L6-v2 int8.
    #[arg(long, value_name = "DIR")]
    encoder: Option<PathBuf>,
    /// Which ONNX file of the encoder folder to run, relative to it (e.g.
    /// onnx/model_quantized.onnx). Default: model.onnx, else onnx/model.onnx.
    #[arg(long, value_name = "FILE", requires = "encoder")]
    encoder_file: Option<PathBuf>,
    /// Report on stderr which encoder graph loaded, and how much of it runs on the fused
    /// kernels (attention blocks matched of those found, GELU, projections).
    #[arg(long, short = 'v')]
    verbose: bool,
    /// The most texts per encoder forward pass (1 to 1024; a batch also holds at most N × 64
    /// padded tokens, and ends where the texts' lengths drop).
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch_size: u32,
    /// Threads for the encoder and the head. Default: the number of cores.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS as i64))]
    threads: Option<u16>,
    /// Encoder plans.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = PlansArg::Symbolic)]
    plans: PlansArg,
    /// How the encoder's projections multiply. Default: int8 where the CPU has AVX-512 VNNI,
    /// int16 on AVX-512 and AVX2, f32 on portable kernels and AArch64 (the fastest there within
    /// the accuracy contract, measured); `-v` says which ran.
    #[arg(long, value_name = "MODE", value_enum)]
    precision: Option<PrecisionArg>,
}

#[derive(Args)]
struct ClassifyArgs {
    #[command(flatten)]
    texts: TextArgs,
    /// Embeddings instead of texts: .npy (f32 [N, D]) or JSON Lines (an array of D numbers, or
    /// an object with an "embedding" array, per line); '-' reads JSON Lines from stdin.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["text", "texts", "encoder"])]
    embeddings: Option<String>,
    /// Write to this file instead of stdout: FILE.npy for the [N, 28] positive scores in
    /// label order, FILE.jsonl for the JSON Lines. Never one of the inputs.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    stream: StreamArgs,
    #[command(flatten)]
    long: LongTextArgs,
    /// With `--long-texts chunk`: how a long text's windows' scores become its own, per label.
    #[arg(long, value_name = "HOW", value_enum)]
    aggregate: Option<AggregateArg>,
    /// One JSON line per sentence (Unicode sentence boundaries) instead of per text, with
    /// `line` (the input line, from 1), `sentence` (from 0) and `text`.
    #[arg(long, conflicts_with_all = ["embeddings", "resume"])]
    per_sentence: bool,
    #[command(flatten)]
    head: HeadArgs,
    #[command(flatten)]
    encoder: EncoderArgs,
}

#[derive(Args)]
struct EmbedArgs {
    #[command(flatten)]
    texts: TextArgs,
    /// Write to this file instead of stdout: FILE.npy for an [N, D] f32 array, FILE.jsonl for
    /// the JSON Lines. Never one of the inputs.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    stream: StreamArgs,
    #[command(flatten)]
    long: LongTextArgs,
    #[command(flatten)]
    encoder: EncoderArgs,
}

/// A labelled split and where its embeddings come from.
#[derive(Args)]
struct SplitArgs {
    /// A go_emotions split: text<TAB>label ids<TAB>id per line.
    #[arg(long, value_name = "FILE.tsv")]
    split: PathBuf,
    /// Precomputed embeddings row-aligned with the split (from `emotions embed`); otherwise the
    /// encoder computes them, cached in --cache.
    #[arg(long, value_name = "FILE")]
    embeddings: Option<String>,
    /// Where computed embeddings are cached, keyed by the encoder's model and the texts.
    #[arg(long, value_name = "DIR", default_value = ".emotions-cache")]
    cache: PathBuf,
    #[command(flatten)]
    encoder: EncoderArgs,
}

/// Class weighting, as the command line names it.
#[derive(Clone, Copy, ValueEnum)]
enum ClassWeightArg {
    /// Every sample weighs 1.
    None,
    /// n / (2 n_class) per class.
    Balanced,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: SplitArgs,
    /// Where to write the head (ONNX, the model card's format).
    #[arg(long, value_name = "FILE.onnx")]
    output: PathBuf,
    /// Inverse L2 strength (scikit-learn's C): one value, or 28 comma-separated in label order.
    #[arg(long, value_name = "C", default_value = "1")]
    c: String,
    /// Class weighting.
    #[arg(long, value_name = "W", value_enum, default_value_t = ClassWeightArg::None)]
    class_weight: ClassWeightArg,
    /// L-BFGS iterations per label at most.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_iter: u32,
    /// Stop when the largest gradient component is at most this.
    #[arg(long, value_name = "F", default_value_t = 1e-6)]
    tol: f64,
    /// Labels fitted in parallel; the result does not depend on it. Default: the number of cores.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS as i64))]
    jobs: Option<u16>,
    /// The encoder name recorded in the head's metadata. Default: the encoder's.
    #[arg(long, value_name = "NAME")]
    encoder_name: Option<String>,
    /// A hidden layer of N ReLU units (an MLP head, trained with Adam) instead of one logistic
    /// regression per label. Needs --dev, whose loss stops training.
    #[arg(long, value_name = "N", requires = "dev",
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    hidden: Option<u32>,
    /// The development split that stops MLP training (the epoch with its lowest loss is kept).
    #[arg(long, value_name = "FILE.tsv", requires = "hidden")]
    dev: Option<PathBuf>,
    /// Precomputed embeddings row-aligned with --dev.
    #[arg(long, value_name = "FILE", requires = "dev")]
    dev_embeddings: Option<String>,
    /// MLP: Adam's learning rate.
    #[arg(long, value_name = "F", default_value_t = MlpOptions::default().learning_rate, requires = "hidden")]
    learning_rate: f64,
    /// MLP: L2 penalty (scikit-learn's alpha).
    #[arg(long, value_name = "F", default_value_t = MlpOptions::default().alpha, requires = "hidden")]
    alpha: f64,
    /// MLP: epochs at most.
    #[arg(long, value_name = "N", default_value_t = MlpOptions::default().max_epochs as u32,
          value_parser = clap::value_parser!(u32).range(1..), requires = "hidden")]
    max_epochs: u32,
    /// MLP: stop after N epochs without a lower dev loss.
    #[arg(long, value_name = "N", default_value_t = MlpOptions::default().patience as u32, requires = "hidden")]
    patience: u32,
    /// MLP: seed of the initialisation and the batch order.
    #[arg(long, value_name = "N", default_value_t = MlpOptions::default().seed, requires = "hidden")]
    seed: u64,
}

#[derive(Args)]
struct TuneArgs {
    #[command(flatten)]
    data: SplitArgs,
    /// The head to tune. Default: the embedded default head.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Where to write thresholds.json.
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// Bagged thresholds: each label's mean over N bootstrap resamples of the rows (a fixed
    /// seed, so tuning repeats), which rare labels' few rows move less than one tuning.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    bootstrap: Option<u16>,
    /// Also tune on out-of-fold scores of this training split: refit the head --folds times
    /// with the options its metadata records, each time scoring the rows left out.
    #[arg(long, value_name = "FILE.tsv")]
    cv_split: Option<PathBuf>,
    /// Precomputed embeddings row-aligned with --cv-split.
    #[arg(long, value_name = "FILE", requires = "cv_split")]
    cv_embeddings: Option<String>,
    /// Folds for --cv-split.
    #[arg(long, value_name = "K", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(2..))]
    folds: u16,
    /// Labels fitted in parallel for --cv-split. Default: the number of cores.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS as i64))]
    jobs: Option<u16>,
}

#[derive(Args)]
struct CalibrateArgs {
    #[command(flatten)]
    data: SplitArgs,
    /// The head to calibrate (linear-logistic). Default: the embedded default head.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Folder to write head.onnx, thresholds.json, calibration.json (and the head's
    /// adapter.safetensors when it has one) into. Files there are replaced whole.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
}

#[derive(Args)]
struct AverageArgs {
    /// A head to average, as trained (linear-logistic, not calibrated), with the
    /// adapter.safetensors it records beside it. Give two or more.
    #[arg(long = "model", value_name = "PATH", required = true)]
    models: Vec<PathBuf>,
    /// Cut each averaged update to this rank (the SVD's leading directions), so the model
    /// costs what one of its parts costs to run; the share of the updates left out is
    /// reported. Default: keep the exact sum, whose ranks add up.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(1..))]
    rank: Option<u16>,
    /// Folder to write head.onnx and adapter.safetensors into (replaced whole); it must not
    /// hold a thresholds.json, which would belong to another head.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    data: SplitArgs,
    #[command(flatten)]
    head: HeadArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Texts or embedding rows per request at most (1 to 100,000).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = count(1, 100_000))]
    max_inputs: usize,
    /// Characters per text at most, 1 to 10,000,000; longer texts are cut (the encoder
    /// truncates to its max_seq_length tokens in any case).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = count(1, 10_000_000))]
    max_text_chars: usize,
    /// Request body size at most (1 byte to 1 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = count(1, 1 << 30))]
    max_body_bytes: usize,
    /// Requests in flight at once (1 to 65,536); more get 429.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = count(1, 65_536))]
    max_concurrent: usize,
    /// Texts per encoder call when batching concurrent requests (1 to 1024).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = count(1, 1024))]
    max_batch: usize,
    /// How long to wait for more requests to batch, in milliseconds (0 to 1000: a longer wait
    /// would hold every request for it).
    #[arg(long, value_name = "MS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    batch_wait_ms: u64,
    /// Seconds a client may take to send a request's headers; then the connection is closed.
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = seconds)]
    header_timeout: u64,
    /// Seconds a client may take to send a request's body; then 408.
    #[arg(long, value_name = "S", default_value_t = 30, value_parser = seconds)]
    body_timeout: u64,
    /// Seconds a request may take once its body is in; then 503.
    #[arg(long, value_name = "S", default_value_t = 60, value_parser = seconds)]
    request_timeout: u64,
    /// Seconds in-flight connections get after SIGTERM or Ctrl-C before they are cut.
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    shutdown_grace: u64,
    #[command(flatten)]
    head: HeadArgs,
    #[command(flatten)]
    encoder: EncoderArgs,
}

/// A timeout in whole seconds, 1 to 3600.
fn seconds(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=3600).contains(&n) => Ok(n),
        Ok(n) => Err(format!("expected 1 to 3600 seconds, found {n}")),
        Err(e) => Err(e.to_string()),
    }
}

/// A count flag from `lo` to `hi`: past `hi` it means nothing here, and only exhausts memory
/// or overflows a limit downstream.
fn count(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync {
    move |s| match s.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        Ok(n) => Err(format!("expected {lo} to {hi}, found {n}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The command to run, its flags checked.
pub enum HiArgs {
    Classify(ClassifyPlan),
    Embed(EmbedPlan),
    Train(TrainPlan),
    Tune(TunePlan),
    Eval(EvalPlan),
    Calibrate(CalibratePlan),
    Average(AveragePlan),
    Serve(ServePlan),
}

/// Which encoder, with what options and threads.
#[derive(Clone)]
pub struct EncoderSpec {
    pub choice: EncoderChoice,
    /// Report how the encoder loaded.
    pub verbose: bool,
    pub options: EncoderOptions,
    pub threads: usize,
}

/// Which head, and how it decides.
pub struct HeadSpec {
    pub model: Option<PathBuf>,
    pub thresholds: Option<PathBuf>,
    pub threshold: Option<f32>,
    pub top_k: Option<usize>,
}

/// What `classify` and `embed` read.
pub enum Input {
    Embeddings(String),
    Texts(Vec<String>),
    TextsFile(String),
}

/// Rows per chunk, and whether unreadable lines are skipped.
#[derive(Clone, Copy)]
pub struct StreamSpec {
    pub chunk_size: usize,
    pub skip_bad_lines: bool,
}

/// Where results go: stdout (JSON Lines) or a file.
pub enum OutputSpec {
    Stdout,
    File {
        path: PathBuf,
        format: OutputFormat,
        /// Continue what an interrupted run wrote there.
        resume: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Npy,
    JsonLines,
}

pub struct ClassifyPlan {
    pub input: Input,
    pub output: OutputSpec,
    pub stream: StreamSpec,
    pub long: LongTexts,
    pub aggregate: Aggregate,
    pub per_sentence: bool,
    pub head: HeadSpec,
    pub encoder: EncoderSpec,
}

pub struct EmbedPlan {
    pub input: Input,
    pub output: OutputSpec,
    pub stream: StreamSpec,
    pub long: LongTexts,
    pub encoder: EncoderSpec,
}

/// A labelled split, and where its embeddings come from.
pub struct SplitSpec {
    pub split: PathBuf,
    pub embeddings: Option<String>,
    pub cache: PathBuf,
}

pub struct TrainPlan {
    pub data: SplitSpec,
    pub encoder: EncoderSpec,
    pub output: PathBuf,
    pub options: TrainOptions,
    /// An MLP head instead, stopped early on this development split.
    pub mlp: Option<(MlpOptions, SplitSpec)>,
    /// Recorded in the head's metadata; `None` for the encoder's own name.
    pub encoder_name: Option<String>,
}

pub struct TunePlan {
    pub data: SplitSpec,
    pub encoder: EncoderSpec,
    pub model: Option<PathBuf>,
    pub output: PathBuf,
    /// A training split whose out-of-fold scores join the tuning rows, and the fold count.
    pub cross_validate: Option<(SplitSpec, usize)>,
    pub jobs: usize,
    /// Bootstrap resamples to bag the thresholds over.
    pub bootstrap: Option<usize>,
}

pub struct CalibratePlan {
    pub data: SplitSpec,
    pub encoder: EncoderSpec,
    pub model: Option<PathBuf>,
    pub output: PathBuf,
}

pub struct AveragePlan {
    pub models: Vec<PathBuf>,
    pub rank: Option<usize>,
    pub output: PathBuf,
}

pub struct EvalPlan {
    pub data: SplitSpec,
    pub encoder: EncoderSpec,
    pub head: HeadSpec,
    pub json: bool,
}

pub struct ServePlan {
    pub addr: std::net::SocketAddr,
    pub server: emotions_server::ServerConfig,
    pub head: HeadSpec,
    pub encoder: EncoderSpec,
}

/// Parses the command line (clap reports bad flags and exits) and checks what clap cannot.
pub fn parse() -> anyhow::Result<HiArgs> {
    HiArgs::from_low(LowArgs::parse())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl HiArgs {
    /// Whether `-v` was given.
    pub fn verbose(&self) -> bool {
        match self {
            HiArgs::Classify(p) => p.encoder.verbose,
            HiArgs::Embed(p) => p.encoder.verbose,
            HiArgs::Train(p) => p.encoder.verbose,
            HiArgs::Tune(p) => p.encoder.verbose,
            HiArgs::Eval(p) => p.encoder.verbose,
            HiArgs::Calibrate(p) => p.encoder.verbose,
            HiArgs::Average(_) => false,
            HiArgs::Serve(p) => p.encoder.verbose,
        }
    }

    pub fn from_low(low: LowArgs) -> anyhow::Result<HiArgs> {
        Ok(match low.command {
            LowCommand::Classify(a) => {
                let encoder = a.encoder.spec();
                let (input, encoder) = match (a.embeddings, Input::from_text_args(a.texts)) {
                    (Some(path), _) => (
                        Input::Embeddings(path),
                        EncoderSpec {
                            choice: EncoderChoice::None,
                            ..encoder
                        },
                    ),
                    (None, Some(input)) => (input, encoder),
                    (None, None) => bail!(
                        "nothing to classify: give --text TEXT, --texts FILE or --embeddings FILE"
                    ),
                };
                let mut inputs = input.paths();
                inputs.extend(a.head.model.iter().chain(&a.head.thresholds).cloned());
                inputs.extend(encoder_paths(&encoder.choice));
                let output = output_spec(a.output, a.stream.resume, &inputs)?;
                if a.per_sentence
                    && let OutputSpec::File {
                        format: OutputFormat::Npy,
                        ..
                    } = output
                {
                    bail!(
                        "--per-sentence writes JSON Lines (each line says its input line and sentence), not .npy"
                    );
                }
                let long = a.long.spec()?;
                if matches!(input, Input::Embeddings(_)) && long != LongTexts::Truncate {
                    bail!("--long-texts: only for texts, not --embeddings");
                }
                let aggregate = match (a.aggregate, long) {
                    (Some(_), LongTexts::Truncate) => {
                        bail!("--aggregate: only with --long-texts chunk")
                    }
                    (Some(AggregateArg::Mean), _) => Aggregate::Mean,
                    _ => Aggregate::Max,
                };
                HiArgs::Classify(ClassifyPlan {
                    input,
                    output,
                    stream: a.stream.spec(),
                    long,
                    aggregate,
                    per_sentence: a.per_sentence,
                    head: a.head.spec(),
                    encoder,
                })
            }
            LowCommand::Embed(a) => {
                let Some(input) = Input::from_text_args(a.texts) else {
                    bail!("nothing to embed: give --text TEXT or --texts FILE");
                };
                let encoder = a.encoder.spec();
                let mut inputs = input.paths();
                inputs.extend(encoder_paths(&encoder.choice));
                let output = output_spec(a.output, a.stream.resume, &inputs)?;
                HiArgs::Embed(EmbedPlan {
                    input,
                    output,
                    stream: a.stream.spec(),
                    long: a.long.spec()?,
                    encoder,
                })
            }
            LowCommand::Train(a) => {
                let options = TrainOptions {
                    c: parse_c(&a.c)?,
                    class_weight: match a.class_weight {
                        ClassWeightArg::None => ClassWeight::None,
                        ClassWeightArg::Balanced => ClassWeight::Balanced,
                    },
                    max_iter: a.max_iter as usize,
                    tol: a.tol,
                    jobs: a.jobs.map_or_else(cores, usize::from),
                    ..Default::default()
                };
                if !(a.tol.is_finite() && a.tol >= 0.0) {
                    bail!("--tol: must be a finite number >= 0, found {}", a.tol);
                }
                let mlp = match (a.hidden, a.dev) {
                    (Some(hidden), Some(dev)) => {
                        let mlp = MlpOptions {
                            hidden: hidden as usize,
                            learning_rate: a.learning_rate,
                            alpha: a.alpha,
                            max_epochs: a.max_epochs as usize,
                            patience: a.patience as usize,
                            seed: a.seed,
                            jobs: options.jobs,
                            ..Default::default()
                        };
                        mlp.validate()?;
                        let dev = SplitSpec {
                            split: dev,
                            embeddings: a.dev_embeddings,
                            cache: a.data.cache.clone(),
                        };
                        Some((mlp, dev))
                    }
                    _ => None,
                };
                HiArgs::Train(TrainPlan {
                    encoder: a.data.encoder.spec(),
                    data: a.data.spec(),
                    output: a.output,
                    options,
                    mlp,
                    encoder_name: a.encoder_name,
                })
            }
            LowCommand::Tune(a) => HiArgs::Tune(TunePlan {
                encoder: a.data.encoder.spec(),
                cross_validate: a.cv_split.map(|split| {
                    (
                        SplitSpec {
                            split,
                            embeddings: a.cv_embeddings,
                            cache: a.data.cache.clone(),
                        },
                        a.folds as usize,
                    )
                }),
                data: a.data.spec(),
                model: a.model,
                output: a.output,
                jobs: a.jobs.map_or_else(cores, usize::from),
                bootstrap: a.bootstrap.map(usize::from),
            }),
            LowCommand::Calibrate(a) => HiArgs::Calibrate(CalibratePlan {
                encoder: a.data.encoder.spec(),
                data: a.data.spec(),
                model: a.model,
                output: a.output,
            }),
            LowCommand::Average(a) => {
                if a.models.len() < 2 {
                    bail!(
                        "average: expected two or more --model heads, found {}",
                        a.models.len()
                    );
                }
                HiArgs::Average(AveragePlan {
                    models: a.models,
                    rank: a.rank.map(usize::from),
                    output: a.output,
                })
            }
            LowCommand::Eval(a) => HiArgs::Eval(EvalPlan {
                encoder: a.data.encoder.spec(),
                data: a.data.spec(),
                head: a.head.spec(),
                json: a.json,
            }),
            LowCommand::Serve(a) => {
                use std::net::ToSocketAddrs;
                let addr = a
                    .addr
                    .to_socket_addrs()
                    .map_err(|e| anyhow::anyhow!("--addr {}: expected HOST:PORT: {e}", a.addr))?
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--addr {}: no address", a.addr))?;
                HiArgs::Serve(ServePlan {
                    addr,
                    server: emotions_server::ServerConfig {
                        max_inputs: a.max_inputs,
                        max_text_chars: a.max_text_chars,
                        max_body_bytes: a.max_body_bytes,
                        max_concurrent: a.max_concurrent,
                        max_batch: a.max_batch,
                        batch_wait: std::time::Duration::from_millis(a.batch_wait_ms),
                        header_timeout: std::time::Duration::from_secs(a.header_timeout),
                        body_timeout: std::time::Duration::from_secs(a.body_timeout),
                        request_timeout: std::time::Duration::from_secs(a.request_timeout),
                        shutdown_grace: std::time::Duration::from_secs(a.shutdown_grace),
                    },
                    head: a.head.spec(),
                    encoder: a.encoder.spec(),
                })
            }
        })
    }
}

impl StreamArgs {
    fn spec(&self) -> StreamSpec {
        StreamSpec {
            chunk_size: self.chunk_size as usize,
            skip_bad_lines: self.skip_bad_lines,
        }
    }
}

impl LongTextArgs {
    fn spec(&self) -> anyhow::Result<LongTexts> {
        Ok(match (self.long_texts, self.stride) {
            (LongTextsArg::Truncate, Some(_)) => bail!("--stride: only with --long-texts chunk"),
            (LongTextsArg::Truncate, None) => LongTexts::Truncate,
            (LongTextsArg::Chunk, stride) => LongTexts::Chunk {
                stride: stride.map(|s| s as usize),
            },
        })
    }
}

impl EncoderArgs {
    fn spec(&self) -> EncoderSpec {
        let threads = self.threads.map_or_else(cores, usize::from);
        EncoderSpec {
            choice: match (&self.encoder, &self.encoder_file) {
                (Some(dir), Some(onnx)) => EncoderChoice::DirFile {
                    dir: dir.clone(),
                    onnx: onnx.clone(),
                },
                (Some(dir), None) => EncoderChoice::Dir(dir.clone()),
                (None, _) => EncoderChoice::Default,
            },
            verbose: self.verbose,
            options: EncoderOptions {
                batch_size: self.batch_size as usize,
                plans: match self.plans {
                    PlansArg::Symbolic => PlanShapes::Symbolic,
                    PlansArg::Buckets => PlanShapes::Buckets,
                },
                workers: threads,
                precision: match self.precision {
                    Some(PrecisionArg::Int16) => Precision::Int16,
                    Some(PrecisionArg::Int8) => Precision::Int8,
                    Some(PrecisionArg::F32) => Precision::F32,
                    None => Precision::default(),
                },
            },
            threads,
        }
    }
}

impl HeadArgs {
    fn spec(self) -> HeadSpec {
        HeadSpec {
            model: self.model,
            thresholds: self.thresholds,
            threshold: self.threshold,
            top_k: self.top_k.map(usize::from),
        }
    }
}

impl SplitArgs {
    fn spec(self) -> SplitSpec {
        SplitSpec {
            split: self.split,
            embeddings: self.embeddings,
            cache: self.cache,
        }
    }
}

impl Input {
    fn from_text_args(t: TextArgs) -> Option<Input> {
        match (t.texts, t.text.is_empty()) {
            (Some(path), _) => Some(Input::TextsFile(path)),
            (None, false) => Some(Input::Texts(t.text)),
            (None, true) => None,
        }
    }
}

impl Input {
    /// The files this input reads.
    fn paths(&self) -> Vec<PathBuf> {
        match self {
            Input::Embeddings(p) | Input::TextsFile(p) if p != "-" => vec![PathBuf::from(p)],
            _ => Vec::new(),
        }
    }
}

/// The files of an encoder folder that a run reads.
fn encoder_paths(choice: &EncoderChoice) -> Vec<PathBuf> {
    let dir = match choice {
        EncoderChoice::Dir(dir) | EncoderChoice::DirFile { dir, .. } => dir,
        _ => return Vec::new(),
    };
    let mut files = vec![
        dir.join("model.onnx"),
        dir.join("onnx/model.onnx"),
        dir.join("tokenizer.json"),
        dir.join("config.json"),
    ];
    if let EncoderChoice::DirFile { onnx, .. } = choice {
        files.push(dir.join(onnx));
    }
    files
}

/// The output's format from its extension; refused when it is the same file as an input
/// (device and inode, so a link to the input is caught too), before anything is written.
fn output_spec(
    output: Option<PathBuf>,
    resume: bool,
    inputs: &[PathBuf],
) -> anyhow::Result<OutputSpec> {
    let Some(path) = output else {
        return Ok(OutputSpec::Stdout);
    };
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let format = match ext.as_deref() {
        Some("npy") => OutputFormat::Npy,
        Some("jsonl") => OutputFormat::JsonLines,
        _ => bail!(
            "--output {}: expected a .npy or .jsonl path",
            path.display()
        ),
    };
    if let Some(input) = inputs.iter().find(|i| emotions_io::is_same_file(i, &path)) {
        bail!(
            "--output {}: it is the same file as the input {}; writing it would destroy the input",
            path.display(),
            input.display()
        );
    }
    Ok(OutputSpec::File {
        path,
        format,
        resume,
    })
}

/// `--c`: one positive value, or one per label.
fn parse_c(text: &str) -> anyhow::Result<Vec<f64>> {
    let c: Vec<f64> = text
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
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hi(args: &[&str]) -> Result<HiArgs, String> {
        let low = LowArgs::try_parse_from(std::iter::once("emotions").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        HiArgs::from_low(low).map_err(|e| e.to_string())
    }

    fn err(args: &[&str]) -> String {
        match hi(args) {
            Ok(_) => panic!("{args:?} parsed"),
            Err(e) => e,
        }
    }

    #[test]
    fn ranges_and_enums_are_checked_while_parsing() {
        let tune = ["tune", "--split", "d.tsv", "--output", "t.json"];
        assert!(err(&[&tune[..], &["--folds", "1"]].concat()).contains("--folds"));
        assert!(err(&["embed", "--text", "x", "--threads", "0"]).contains("--threads"));
        let e = err(&["embed", "--text", "x", "--threads", "100000"]);
        assert!(e.contains("--threads") && e.contains("256"), "{e}");
        assert!(err(&["embed", "--text", "x", "--batch-size", "0"]).contains("--batch-size"));
        let e = err(&["embed", "--text", "x", "--plans", "many"]);
        assert!(e.contains("buckets") && e.contains("symbolic"), "{e}");
        let train = ["train", "--split", "t.tsv", "--output", "h.onnx"];
        let e = err(&[&train[..], &["--class-weight", "heavy"]].concat());
        assert!(e.contains("none") && e.contains("balanced"), "{e}");
        assert!(err(&[&train[..], &["--c", "1,2"]].concat()).contains("expected 1 or 28"));
        assert!(err(&["serve", "--max-batch", "0"]).contains("expected 1 to 1024, found 0"));
        assert!(err(&["classify"]).contains("nothing to classify"));
        assert!(err(&["embed", "--text", "x", "--output", "e.txt"]).contains(".npy or .jsonl"));
    }

    #[test]
    fn threads_reach_the_encoder_workers_and_the_head() {
        let Ok(HiArgs::Classify(plan)) = hi(&["classify", "--text", "x", "--threads", "3"]) else {
            panic!("classify did not parse");
        };
        assert_eq!(plan.encoder.threads, 3);
        assert_eq!(plan.encoder.options.workers, 3);
        let Ok(HiArgs::Classify(plan)) = hi(&["classify", "--embeddings", "e.npy"]) else {
            panic!("classify did not parse");
        };
        assert!(matches!(plan.encoder.choice, EncoderChoice::None));
    }
}
