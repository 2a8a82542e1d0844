//! Flags, parsed by clap, then validated into resolved configs the commands run from.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use emotions::Thresholds;
use std::path::PathBuf;

const DEFAULT_MODEL_HELP: &str =
    "Without --model: the embedded default head (see models/head/README.md).";

#[derive(Parser)]
#[command(name = "emotions", version, about = "go_emotions classifier: embeddings in, 28 emotion labels out, no onnxruntime.", after_help = DEFAULT_MODEL_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Classify embeddings; writes one JSON line per input, in input order.
    Classify(ClassifyArgs),
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

impl HeadArgs {
    /// Loads the head and thresholds; every bad file is an error naming it.
    pub fn classifier(&self) -> anyhow::Result<emotions::Classifier> {
        let mut builder = emotions::Classifier::builder();
        if let Some(path) = &self.model {
            builder = builder.head_path(path);
        }
        if let Some(path) = &self.thresholds {
            builder = builder.thresholds(Thresholds::from_path(path)?);
        }
        if let Some(t) = self.threshold {
            builder = builder.fixed_threshold(t);
        }
        if let Some(k) = self.top_k {
            builder = builder.top_k(k);
        }
        let classifier = builder.build().context("loading the classifier")?;
        Ok(classifier)
    }
}

#[derive(Args)]
pub struct ClassifyArgs {
    /// Embeddings: .npy (f32 [N, D]) or JSON Lines (an array of D numbers, or an object with an
    /// "embedding" array, per line); '-' reads JSON Lines from stdin.
    #[arg(long, value_name = "FILE")]
    pub embeddings: Option<String>,
    /// Write the [N, 28] positive scores in label order to this .npy instead of JSON Lines.
    #[arg(long, value_name = "FILE.npy")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub head: HeadArgs,
}

/// What `classify` reads.
pub enum ClassifyInput {
    Embeddings(String),
}

pub struct ClassifyConfig {
    pub input: ClassifyInput,
    pub output: Option<PathBuf>,
    pub classifier: emotions::Classifier,
}

impl ClassifyArgs {
    pub fn resolve(self) -> anyhow::Result<ClassifyConfig> {
        let input = match self.embeddings {
            Some(path) => ClassifyInput::Embeddings(path),
            None => bail!("nothing to classify: give --embeddings FILE"),
        };
        if let Some(out) = &self.output
            && !out
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
        {
            bail!("--output {}: expected a .npy path", out.display());
        }
        Ok(ClassifyConfig {
            input,
            output: self.output,
            classifier: self.head.classifier()?,
        })
    }
}
