//! `emotions train`, `tune` and `eval`: go_emotions splits in, heads, thresholds and metrics out.

use anyhow::{Context, bail};
use emotions::{Encoder, LABELS, NUM_LABELS, Thresholds};
use emotions_train::{ClassWeight, Evaluation, HeadGraph, TrainOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A labelled split with its embeddings.
pub struct Split {
    pub path: PathBuf,
    /// `rows * 28`, label order.
    pub gold: Vec<bool>,
    pub embeddings: emotions_io::Embeddings,
}

/// Where a split's embeddings come from.
pub enum EmbeddingSource<'a> {
    /// A file row-aligned with the split (from `emotions embed`).
    File(&'a str),
    /// Computed by this encoder, cached under this directory.
    Encoder {
        encoder: &'a Encoder,
        cache: &'a Path,
    },
}

impl Split {
    pub fn load(path: &Path, source: EmbeddingSource) -> anyhow::Result<Split> {
        let examples = emotions_io::read_go_emotions(path, NUM_LABELS)?;
        let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
        let mut gold = vec![false; examples.len() * NUM_LABELS];
        for (i, e) in examples.iter().enumerate() {
            for &l in &e.labels {
                gold[i * NUM_LABELS + l] = true;
            }
        }
        let embeddings = match source {
            EmbeddingSource::File(file) => {
                let e = emotions_io::read_embeddings(file, None)?;
                if e.rows() != texts.len() {
                    bail!(
                        "{file}: {} embedding rows for {} examples in {}",
                        e.rows(),
                        texts.len(),
                        path.display()
                    );
                }
                e
            }
            EmbeddingSource::Encoder { encoder, cache } => {
                cached_embeddings(encoder, &texts, cache)?
            }
        };
        Ok(Split {
            path: path.to_path_buf(),
            gold,
            embeddings,
        })
    }
}

/// Embeds texts, or reads them from the cache: `<cache>/<encoder>-<fnv64 of the texts>.npy`.
fn cached_embeddings(
    encoder: &Encoder,
    texts: &[String],
    cache: &Path,
) -> anyhow::Result<emotions_io::Embeddings> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in texts.iter().flat_map(|t| t.bytes().chain([0u8])) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let key = format!(
        "{}-{}-{h:016x}.npy",
        encoder.name().replace(['/', ' '], "_"),
        texts.len()
    );
    let path = cache.join(key);
    if path.is_file() {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let e = emotions_io::read_npy_f32(&bytes, &path.display().to_string())?;
        if e.rows() == texts.len() && e.dim() == encoder.dim() {
            eprintln!("emotions: using cached embeddings {}", path.display());
            return Ok(e);
        }
    }
    eprintln!(
        "emotions: embedding {} texts with {}",
        texts.len(),
        encoder.name()
    );
    let data =
        crate::classify::with_progress(
            texts.len(),
            |p| Ok(encoder.embed_with_progress(texts, p)?),
        )?;
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    emotions_io::write_npy_f32(&path, texts.len(), encoder.dim(), &data)?;
    Ok(emotions_io::Embeddings::new(texts.len(), encoder.dim(), data).expect("rows * dim"))
}

pub struct TrainConfig {
    pub split: Split,
    pub output: PathBuf,
    pub options: TrainOptions,
    pub encoder_name: String,
}

pub fn train(config: TrainConfig) -> anyhow::Result<()> {
    let TrainConfig {
        split,
        output,
        options,
        encoder_name,
    } = config;
    let e = &split.embeddings;
    let started = std::time::Instant::now();
    eprintln!(
        "emotions: fitting {NUM_LABELS} labels on {} rows of {} (C {:?}, class weight {:?}, {} jobs)",
        e.rows(),
        e.dim(),
        options.c,
        options.class_weight,
        options.jobs
    );
    let model = emotions_train::fit(
        e.data(),
        e.rows(),
        e.dim(),
        &split.gold,
        NUM_LABELS,
        &options,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let mut all_converged = true;
    for (label, c) in LABELS.iter().zip(&model.convergence) {
        all_converged &= c.converged;
        eprintln!(
            "  {label:<15} {:>4} iterations, max |grad| {:.1e}, objective {:.5}{}",
            c.iterations,
            c.grad_max,
            c.objective,
            if c.converged { "" } else { "  (NOT converged)" }
        );
    }
    eprintln!(
        "emotions: fitted in {seconds:.1} s; {}",
        if all_converged {
            "every label converged"
        } else {
            "some labels did not converge: raise --max-iter"
        }
    );
    let metadata = BTreeMap::from([
        ("encoder".to_string(), encoder_name),
        ("encoder_dim".to_string(), e.dim().to_string()),
        (
            "labels".to_string(),
            serde_json::to_string(&LABELS).expect("labels serialise"),
        ),
        (
            "training_data".to_string(),
            format!("{} ({} rows)", split.path.display(), e.rows()),
        ),
        (
            "c".to_string(),
            serde_json::to_string(&options.c).expect("numbers serialise"),
        ),
        (
            "class_weight".to_string(),
            class_weight_name(options.class_weight).to_string(),
        ),
        ("max_iter".to_string(), options.max_iter.to_string()),
        ("tol".to_string(), options.tol.to_string()),
        (
            "trained_by".to_string(),
            format!("emotions {} train", env!("CARGO_PKG_VERSION")),
        ),
        ("date".to_string(), today()),
        ("all_converged".to_string(), all_converged.to_string()),
    ]);
    let graph = HeadGraph {
        hidden: None,
        output: model.to_dense(),
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        metadata,
    };
    std::fs::write(&output, graph.to_onnx_bytes())
        .with_context(|| format!("writing {}", output.display()))?;
    eprintln!("emotions: wrote {}", output.display());
    Ok(())
}

/// UTC date as YYYY-MM-DD, from the system clock.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn class_weight_name(w: ClassWeight) -> &'static str {
    match w {
        ClassWeight::None => "none",
        ClassWeight::Balanced => "balanced",
    }
}

/// The training options a head's metadata records, to refit it the same way.
fn options_from_metadata(
    meta: &BTreeMap<String, String>,
    jobs: usize,
) -> anyhow::Result<TrainOptions> {
    let get = |k: &str| {
        meta.get(k).with_context(|| {
            format!("the head's metadata has no '{k}': was it written by `emotions train`?")
        })
    };
    Ok(TrainOptions {
        c: serde_json::from_str(get("c")?).context("metadata 'c'")?,
        class_weight: parse_class_weight(get("class_weight")?)?,
        max_iter: get("max_iter")?.parse().context("metadata 'max_iter'")?,
        tol: get("tol")?.parse().context("metadata 'tol'")?,
        jobs,
        ..Default::default()
    })
}

/// Out-of-fold scores: row `i` scored by a model fitted without fold `i % folds`.
fn out_of_fold_scores(
    split: &Split,
    folds: usize,
    options: &TrainOptions,
) -> anyhow::Result<Vec<f32>> {
    let e = &split.embeddings;
    let (rows, dim) = (e.rows(), e.dim());
    let mut scores = vec![0f32; rows * NUM_LABELS];
    for k in 0..folds {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in (0..rows).filter(|i| i % folds != k) {
            x.extend_from_slice(e.row(i));
            y.extend_from_slice(&split.gold[i * NUM_LABELS..(i + 1) * NUM_LABELS]);
        }
        let model = emotions_train::fit(&x, y.len() / NUM_LABELS, dim, &y, NUM_LABELS, options)?;
        let held: Vec<usize> = (0..rows).filter(|i| i % folds == k).collect();
        let x_held: Vec<f32> = held.iter().flat_map(|&i| e.row(i).to_vec()).collect();
        let s = model.predict(&x_held, held.len());
        for (j, &i) in held.iter().enumerate() {
            scores[i * NUM_LABELS..(i + 1) * NUM_LABELS]
                .copy_from_slice(&s[j * NUM_LABELS..(j + 1) * NUM_LABELS]);
        }
        eprintln!("emotions: fold {}/{folds} fitted", k + 1);
    }
    Ok(scores)
}

pub fn parse_class_weight(s: &str) -> anyhow::Result<ClassWeight> {
    match s {
        "none" => Ok(ClassWeight::None),
        "balanced" => Ok(ClassWeight::Balanced),
        other => bail!("--class-weight: expected none or balanced, found '{other}'"),
    }
}

pub struct TuneConfig {
    pub split: Split,
    pub classifier: emotions::Classifier,
    pub output: PathBuf,
    /// A training split whose out-of-fold scores join the tuning rows, and the fold count.
    pub cross_validate: Option<(Split, usize)>,
    pub jobs: usize,
}

pub fn tune(config: TuneConfig) -> anyhow::Result<()> {
    let e = &config.split.embeddings;
    let mut scores = config.classifier.scores(e.data(), e.rows())?;
    let mut gold = config.split.gold.clone();
    let mut described = format!("{} ({} rows)", config.split.path.display(), e.rows());
    if let Some((train, folds)) = &config.cross_validate {
        let options = options_from_metadata(&config.classifier.head_info().metadata, config.jobs)?;
        eprintln!(
            "emotions: {folds}-fold out-of-fold scores on {} with the head's options (C {:?}, class weight {})",
            train.path.display(),
            options.c,
            class_weight_name(options.class_weight)
        );
        scores.extend(out_of_fold_scores(train, *folds, &options)?);
        gold.extend_from_slice(&train.gold);
        described += &format!(
            " + out-of-fold {} ({} rows)",
            train.path.display(),
            train.embeddings.rows()
        );
    }
    let best = emotions_train::tune_thresholds(&scores, &gold, NUM_LABELS);
    let mut values = [0f32; NUM_LABELS];
    for (v, m) in values.iter_mut().zip(&best) {
        *v = m.threshold;
    }
    let thresholds = Thresholds::from_array(values)?;
    std::fs::write(&config.output, thresholds.to_json_pretty())
        .with_context(|| format!("writing {}", config.output.display()))?;
    let macro_f1 = best.iter().map(|m| m.f1).sum::<f64>() / NUM_LABELS as f64;
    eprintln!(
        "emotions: thresholds tuned on {described}, macro-F1 there {macro_f1:.4}; wrote {}",
        config.output.display()
    );
    Ok(())
}

pub struct EvalConfig {
    pub split: Split,
    pub classifier: emotions::Classifier,
    pub json: bool,
}

pub fn eval(config: EvalConfig) -> anyhow::Result<()> {
    let e = &config.split.embeddings;
    let scores = config.classifier.scores(e.data(), e.rows())?;
    let thresholds: Vec<f32> = match config.classifier.policy() {
        emotions::DecisionPolicy::PerLabel(t) => t.as_array().to_vec(),
        emotions::DecisionPolicy::Fixed(t) => vec![*t; NUM_LABELS],
        emotions::DecisionPolicy::TopK(_) => bail!("eval measures thresholds; --top-k has none"),
    };
    let evaluation = emotions_train::evaluate(&scores, &config.split.gold, &thresholds);
    if config.json {
        let mut v = serde_json::to_value(&evaluation)?;
        v["split"] = serde_json::json!(config.split.path.display().to_string());
        v["labels"] = serde_json::json!(LABELS);
        println!("{v}");
    } else {
        print!("{}", render(&evaluation, &config.split.path));
    }
    Ok(())
}

/// The card's three blocks and the per-label table, as text.
pub fn render(e: &Evaluation, split: &Path) -> String {
    let mut s = format!("{} ({} rows)\n\n", split.display(), e.rows);
    s += "                                   precision  recall  f1\n";
    for (name, a) in [
        ("macro, per-label thresholds", &e.macro_at_thresholds),
        ("weighted, per-label thresholds", &e.weighted_at_thresholds),
        ("macro, fixed 0.5", &e.macro_at_half),
    ] {
        s += &format!(
            "{name:<34} {:>9.3} {:>7.3} {:>5.3}\n",
            a.precision, a.recall, a.f1
        );
    }
    s += "\nlabel              f1  precision  recall  support  threshold\n";
    for (label, m) in LABELS.iter().zip(&e.per_label) {
        s += &format!(
            "{label:<15} {:>5.3} {:>10.3} {:>7.3} {:>8} {:>10.2}\n",
            m.f1, m.precision, m.recall, m.support, m.threshold
        );
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn today_is_a_plausible_date() {
        let d = super::today();
        assert_eq!(d.len(), 10);
        assert!(d.as_str() >= "2024-01-01", "{d}");
    }
}
