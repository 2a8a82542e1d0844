//! `emotions-finetune`: LoRA fine-tuning of the encoder on go_emotions, with a linear head.
//!
//! Writes into `--output DIR`: `adapter.safetensors` (merged into the encoder at load),
//! `head.onnx` (card format) and `training.json` (options, per-epoch losses and dev scores).
//! Epochs are chosen on dev: the epoch with the best dev macro-F1 at dev-tuned thresholds is
//! kept, and training stops after `--patience` epochs without a better one. Test is never read.

use anyhow::{Context, bail};
use clap::Parser;
use emotions_encoder::{Encoder, EncoderAdapter, EncoderOptions, Precision};
use emotions_finetune::{FineTuneOptions, LoraBert, Schedule, TokenIds, Trainer};
use emotions_labels::{LABELS, NUM_LABELS};
use emotions_train::HeadGraph;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "emotions-finetune",
    about = "LoRA fine-tuning of the encoder on go_emotions"
)]
struct Args {
    /// The sentence-transformers folder to adapt.
    #[arg(long, default_value = "models/minilm")]
    encoder: PathBuf,
    /// go_emotions train split (text<TAB>labels<TAB>id).
    #[arg(long)]
    train: PathBuf,
    /// go_emotions dev split: chooses the epoch.
    #[arg(long)]
    dev: PathBuf,
    /// Output folder.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = FineTuneOptions::default().epochs)]
    epochs: usize,
    /// Stop after this many epochs without a better dev macro-F1.
    #[arg(long, default_value_t = 1)]
    patience: usize,
    #[arg(long, default_value_t = FineTuneOptions::default().rank)]
    rank: usize,
    #[arg(long, default_value_t = FineTuneOptions::default().alpha)]
    alpha: f64,
    #[arg(long, default_value_t = FineTuneOptions::default().learning_rate)]
    lr: f64,
    #[arg(long, default_value_t = FineTuneOptions::default().head_learning_rate)]
    head_lr: f64,
    #[arg(long, default_value_t = FineTuneOptions::default().weight_decay)]
    weight_decay: f64,
    #[arg(long, default_value_t = FineTuneOptions::default().warmup_steps)]
    warmup: usize,
    #[arg(long, default_value_t = FineTuneOptions::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = FineTuneOptions::default().seed)]
    seed: u64,
    /// How the learning rate falls after the warm-up: linear or cosine.
    #[arg(long, default_value = "linear", value_parser = parse_schedule)]
    schedule: Schedule,
    /// Dropout while training (BERT's places); 0 for none.
    #[arg(long, default_value_t = FineTuneOptions::default().dropout)]
    dropout: f64,
    /// Decay of the weights' moving average that is scored and saved; 0 for none.
    #[arg(long, default_value_t = FineTuneOptions::default().ema)]
    ema: f64,
    /// Train on the first N train rows only (for trying the pipeline).
    #[arg(long)]
    limit: Option<usize>,
}

fn parse_schedule(name: &str) -> Result<Schedule, String> {
    Schedule::from_name(name).ok_or_else(|| format!("expected linear or cosine, found {name:?}"))
}

fn tokenize(encoder: &Encoder, texts: &[String], origin: &Path) -> anyhow::Result<Vec<TokenIds>> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            encoder
                .tokenize(t)
                .map(|t| t.ids)
                .with_context(|| format!("{}: line {}", origin.display(), i + 1))
        })
        .collect()
}

fn macro_f1(scores: &[f32], gold: &[bool]) -> f64 {
    let tuned = emotions_train::tune_thresholds(scores, gold, NUM_LABELS);
    tuned.iter().map(|m| m.f1).sum::<f64>() / NUM_LABELS as f64
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = FineTuneOptions {
        rank: args.rank,
        alpha: args.alpha,
        learning_rate: args.lr,
        head_learning_rate: args.head_lr,
        weight_decay: args.weight_decay,
        epochs: args.epochs,
        warmup_steps: args.warmup,
        batch_size: args.batch_size,
        seed: args.seed,
        schedule: args.schedule,
        dropout: args.dropout,
        ema: args.ema,
    };
    options.validate()?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let exact = EncoderOptions {
        precision: Precision::F32,
        ..Default::default()
    };
    let encoder = Encoder::from_dir_with(&args.encoder, exact)?;
    let model_path = args.encoder.join("model.onnx");
    let bytes =
        std::fs::read(&model_path).with_context(|| format!("reading {}", model_path.display()))?;
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(args.encoder.join("config.json")).context("reading config.json")?,
    )?;
    let heads = config["num_attention_heads"]
        .as_u64()
        .context("config.json: no num_attention_heads")? as usize;

    let mut train = emotions_io::read_go_emotions(&args.train, NUM_LABELS)?;
    if let Some(n) = args.limit {
        train.truncate(n);
    }
    let dev = emotions_io::read_go_emotions(&args.dev, NUM_LABELS)?;
    let texts = |xs: &[emotions_io::Example]| xs.iter().map(|e| e.text.clone()).collect::<Vec<_>>();
    let train_ids = tokenize(&encoder, &texts(&train), &args.train)?;
    let dev_texts = texts(&dev);
    let dev_ids = tokenize(&encoder, &dev_texts, &args.dev)?;
    let mut targets = vec![0f32; train.len() * NUM_LABELS];
    for (r, e) in train.iter().enumerate() {
        for &l in &e.labels {
            targets[r * NUM_LABELS + l] = 1.0;
        }
    }
    let mut dev_gold = vec![false; dev.len() * NUM_LABELS];
    for (r, e) in dev.iter().enumerate() {
        for &l in &e.labels {
            dev_gold[r * NUM_LABELS + l] = true;
        }
    }
    let priors: Vec<f64> = (0..NUM_LABELS)
        .map(|l| {
            let n: f32 = (0..train.len()).map(|r| targets[r * NUM_LABELS + l]).sum();
            f64::from(n) / train.len().max(1) as f64
        })
        .collect();

    let weights = emotions_runtime::encoder_weights(&bytes, &model_path.display().to_string())?;
    let model = LoraBert::new(weights, heads, NUM_LABELS, &priors, &options)?;
    let mut trainer = Trainer::new(model, options.clone(), train.len())?;

    // The candle model must embed as the runtime does before it is trained.
    let check_rows: Vec<TokenIds> = dev_ids.iter().take(64).cloned().collect();
    let ours = trainer.embeddings(&check_rows, 32)?;
    let reference = encoder.embed(&dev_texts[..check_rows.len()])?;
    let worst = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("emotions-finetune: candle vs runtime (f32) on 64 dev texts: max |diff| {worst:.2e}");
    if worst > 1e-4 {
        bail!("the training model does not embed as the runtime does (max diff {worst})");
    }

    let started = std::time::Instant::now();
    let mut log = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    for epoch in 1..=options.epochs {
        let report = trainer.epoch(
            epoch,
            &train_ids,
            &targets,
            NUM_LABELS,
            &mut |i, n, loss| {
                if i % 50 == 0 || i == n {
                    eprintln!(
                        "  epoch {epoch} step {i}/{n} loss {loss:.4} ({:.0} s)",
                        started.elapsed().as_secs_f64()
                    );
                }
            },
        )?;
        let dev_scores = trainer.with_averaged_weights(|t| t.scores(&dev_ids, 64))?;
        let f1 = macro_f1(&dev_scores, &dev_gold);
        eprintln!(
            "emotions-finetune: epoch {epoch}: mean loss {:.4}, {:.0} s, dev macro-F1 {f1:.4} (dev-tuned thresholds)",
            report.mean_loss, report.seconds
        );
        log.push(serde_json::json!({
            "epoch": epoch, "mean_loss": report.mean_loss, "seconds": report.seconds,
            "dev_macro_f1_dev_tuned": f1,
        }));
        if best.is_none_or(|(_, b)| f1 > b) {
            best = Some((epoch, f1));
            trainer.with_averaged_weights(|t| {
                save(&args, &options, t, epoch, f1, &dev_texts, &dev_ids)
            })?;
        } else if epoch - best.map_or(0, |b| b.0) >= args.patience {
            eprintln!(
                "emotions-finetune: no better dev score for {} epoch(s); stopping",
                args.patience
            );
            break;
        }
        let summary = serde_json::json!({
            "options": format!("{options:?}"), "train_rows": train.len(), "dev_rows": dev.len(),
            "epochs": log, "best_epoch": best.map(|b| b.0), "seconds": started.elapsed().as_secs_f64(),
        });
        std::fs::write(
            args.output.join("training.json"),
            serde_json::to_string_pretty(&summary)?,
        )?;
    }
    Ok(())
}

/// Writes the adapter and the head, then checks that the runtime, with the adapter merged,
/// embeds as the training model does.
#[allow(clippy::too_many_arguments)]
fn save(
    args: &Args,
    options: &FineTuneOptions,
    trainer: &Trainer,
    epoch: usize,
    dev_f1: f64,
    dev_texts: &[String],
    dev_ids: &[TokenIds],
) -> anyhow::Result<()> {
    let metadata = BTreeMap::from([
        ("format".to_string(), "emotions-lora".to_string()),
        ("rank".to_string(), options.rank.to_string()),
        ("alpha".to_string(), options.alpha.to_string()),
        (
            "scale".to_string(),
            "alpha/rank, multiplied into lora_B".to_string(),
        ),
        (
            "base_encoder".to_string(),
            args.encoder.display().to_string(),
        ),
        ("epoch".to_string(), epoch.to_string()),
    ]);
    let adapter_path = args.output.join("adapter.safetensors");
    std::fs::write(
        &adapter_path,
        trainer.model.adapter(metadata)?.to_safetensors(),
    )?;
    let adapter = EncoderAdapter::from_file(&adapter_path)?;
    let adapted = Encoder::from_dir_file_adapted(
        &args.encoder,
        None::<&Path>,
        EncoderOptions {
            precision: Precision::F32,
            ..Default::default()
        },
        Some(&adapter),
    )?;
    let n = dev_texts.len().min(256);
    let runtime = adapted.embed(&dev_texts[..n])?;
    let ours = trainer.embeddings(&dev_ids[..n], 32)?;
    let d = adapted.dim();
    let worst_cos = runtime
        .chunks_exact(d)
        .zip(ours.chunks_exact(d))
        .map(|(a, b)| cosine(a, b))
        .fold(1f64, f64::min);
    eprintln!(
        "emotions-finetune: runtime with the merged adapter vs training model, {n} dev texts: min cosine {worst_cos:.7}"
    );
    if worst_cos < 0.99999 {
        bail!("the merged adapter does not reproduce the training model (min cosine {worst_cos})");
    }
    let mut meta = BTreeMap::from([
        ("encoder".to_string(), "all-MiniLM-L6-v2 + LoRA".to_string()),
        (
            "encoder_fingerprint".to_string(),
            adapted.fingerprint().to_string(),
        ),
        ("encoder_dim".to_string(), d.to_string()),
        ("labels".to_string(), serde_json::to_string(&LABELS)?),
        (
            "training_data".to_string(),
            format!("{}", args.train.display()),
        ),
        (
            "trained_by".to_string(),
            format!("emotions-finetune {}", env!("CARGO_PKG_VERSION")),
        ),
        ("finetune_options".to_string(), format!("{options:?}")),
        ("epoch".to_string(), epoch.to_string()),
        ("dev_macro_f1_dev_tuned".to_string(), format!("{dev_f1:.4}")),
        ("date".to_string(), emotions_train::utc_date()),
    ]);
    meta.insert("adapter".to_string(), adapter.hash().to_string());
    let graph = HeadGraph {
        hidden: None,
        output: trainer.model.head()?,
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        metadata: meta,
    };
    std::fs::write(args.output.join("head.onnx"), graph.to_onnx_bytes()?)?;
    eprintln!(
        "emotions-finetune: wrote {} (epoch {epoch})",
        args.output.display()
    );
    Ok(())
}
