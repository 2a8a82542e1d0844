//! `emotions train`, `tune`, `calibrate`, `average` and `eval`: go_emotions splits in, heads,
//! thresholds, temperatures and metrics out. The work is `emotions_train`'s; this module loads, reports and writes.

use crate::args::{AveragePlan, CalibratePlan, EvalPlan, TrainPlan, TunePlan};
use crate::load;
use anyhow::{Context, bail};
use emotions::{LABELS, NUM_LABELS, Thresholds};
use emotions_train::{Evaluation, HeadGraph, HeadMetadata};
use std::path::Path;

pub fn train(plan: TrainPlan) -> anyhow::Result<()> {
    let split = load::split(&plan.data, &plan.encoder, None)?;
    if let Some((mlp, dev)) = &plan.mlp {
        return train_mlp(&plan, &split, mlp, dev);
    }
    let options = plan.options;
    let e = &split.embeddings;
    let started = std::time::Instant::now();
    eprintln!(
        "emotions: fitting {NUM_LABELS} labels on {} rows of {} (C {:?}, class weight {}, {} jobs)",
        e.rows(),
        e.dim(),
        options.c,
        options.class_weight.name(),
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
    let metadata = HeadMetadata {
        encoder: plan
            .encoder_name
            .unwrap_or_else(|| load::encoder_name(&plan.encoder)),
        encoder_fingerprint: split.encoder_fingerprint.clone(),
        encoder_dim: e.dim(),
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        training_data: format!("{} ({} rows)", split.path.display(), e.rows()),
        options,
        date: emotions_train::utc_date(),
        all_converged,
    };
    let graph = HeadGraph {
        hidden: None,
        output: model.to_dense(),
        labels: metadata.labels.clone(),
        metadata: metadata.to_map(),
    };
    std::fs::write(&plan.output, graph.to_onnx_bytes()?)
        .with_context(|| format!("writing {}", plan.output.display()))?;
    eprintln!("emotions: wrote {}", plan.output.display());
    Ok(())
}

/// `train --hidden N`: an MLP head, stopped early on the dev split's loss.
fn train_mlp(
    plan: &TrainPlan,
    split: &load::Split,
    options: &emotions_train::MlpOptions,
    dev_spec: &crate::args::SplitSpec,
) -> anyhow::Result<()> {
    let dev = load::split(dev_spec, &plan.encoder, None)?;
    let (e, d) = (&split.embeddings, &dev.embeddings);
    if d.dim() != e.dim() {
        bail!(
            "{}: {}-dim embeddings, but {} has {}",
            dev.path.display(),
            d.dim(),
            split.path.display(),
            e.dim()
        );
    }
    let started = std::time::Instant::now();
    eprintln!(
        "emotions: fitting an MLP head ({} hidden units) on {} rows of {}, stopping on {} ({} rows)",
        options.hidden,
        e.rows(),
        e.dim(),
        dev.path.display(),
        d.rows()
    );
    let model = emotions_train::fit_mlp(
        e.data(),
        e.rows(),
        e.dim(),
        &split.gold,
        d.data(),
        &dev.gold,
        NUM_LABELS,
        options,
        &mut |epoch, loss| eprintln!("  epoch {epoch:>3}: dev loss {loss:.6}"),
    )?;
    eprintln!(
        "emotions: {} epochs in {:.1} s; kept epoch {} (dev loss {:.6})",
        model.epochs,
        started.elapsed().as_secs_f64(),
        model.best_epoch,
        model.dev_loss[model.best_epoch - 1]
    );
    let mut metadata = std::collections::BTreeMap::from([
        (
            "encoder".to_string(),
            plan.encoder_name
                .clone()
                .unwrap_or_else(|| load::encoder_name(&plan.encoder)),
        ),
        ("encoder_dim".to_string(), e.dim().to_string()),
        ("labels".to_string(), serde_json::to_string(&LABELS)?),
        (
            "training_data".to_string(),
            format!("{} ({} rows)", split.path.display(), e.rows()),
        ),
        (
            "dev_data".to_string(),
            format!("{} ({} rows)", dev.path.display(), d.rows()),
        ),
        (
            "head".to_string(),
            format!(
                "MLP, {} ReLU units; Adam lr {}, alpha {}, batch {}, seed {}; epoch {} of {} kept (lowest dev loss)",
                options.hidden,
                options.learning_rate,
                options.alpha,
                options.batch_size,
                options.seed,
                model.best_epoch,
                model.epochs
            ),
        ),
        (
            "trained_by".to_string(),
            format!("emotions {} train", env!("CARGO_PKG_VERSION")),
        ),
        ("date".to_string(), emotions_train::utc_date()),
    ]);
    if let Some(f) = &split.encoder_fingerprint {
        metadata.insert("encoder_fingerprint".to_string(), f.clone());
    }
    let graph = HeadGraph {
        hidden: Some(model.hidden),
        output: model.output,
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        metadata,
    };
    std::fs::write(&plan.output, graph.to_onnx_bytes()?)
        .with_context(|| format!("writing {}", plan.output.display()))?;
    eprintln!("emotions: wrote {}", plan.output.display());
    Ok(())
}

/// The seed `tune --bootstrap` draws its resamples from.
const BOOTSTRAP_SEED: u64 = 20261206;

pub fn tune(plan: TunePlan) -> anyhow::Result<()> {
    let head = crate::args::HeadSpec {
        model: plan.model.clone(),
        thresholds: None,
        threshold: None,
        top_k: None,
    };
    let no_encoder = crate::args::EncoderSpec {
        choice: emotions::EncoderChoice::None,
        ..plan.encoder.clone()
    };
    // Embeddings from a file are the plain encoder's: they get the plain default head.
    let embedded_by = match plan.data.embeddings {
        Some(_) => &no_encoder,
        None => &plan.encoder,
    };
    let classifier = load::scoring_classifier(&head, &no_encoder, embedded_by)?;
    // Read before any split is embedded, so a head without training metadata fails fast.
    let cv_options = match &plan.cross_validate {
        Some(_) => Some(HeadMetadata::options(
            &classifier.head_info().metadata,
            plan.jobs,
        )?),
        None => None,
    };
    let split = load::split(&plan.data, &plan.encoder, classifier.adapter())?;
    let e = &split.embeddings;
    let mut scores = classifier.scores(e.data(), e.rows())?;
    let mut gold = split.gold.clone();
    let mut described = format!("{} ({} rows)", split.path.display(), e.rows());
    if let (Some((cv, folds)), Some(options)) = (&plan.cross_validate, cv_options) {
        let train = load::split(cv, &plan.encoder, classifier.adapter())?;
        let t = &train.embeddings;
        eprintln!(
            "emotions: {folds}-fold out-of-fold scores on {} with the head's options (C {:?}, class weight {})",
            train.path.display(),
            options.c,
            options.class_weight.name()
        );
        scores.extend(emotions_train::out_of_fold_scores(
            t.data(),
            t.rows(),
            t.dim(),
            &train.gold,
            NUM_LABELS,
            *folds,
            &options,
            |k| eprintln!("emotions: fold {}/{folds} fitted", k + 1),
        )?);
        gold.extend_from_slice(&train.gold);
        described += &format!(
            " + out-of-fold {} ({} rows)",
            train.path.display(),
            t.rows()
        );
    }
    let mut values = [0f32; NUM_LABELS];
    match plan.bootstrap {
        Some(n) => {
            described += &format!(", bagged over {n} bootstrap resamples");
            let bagged =
                emotions_train::bagged_thresholds(&scores, &gold, NUM_LABELS, n, BOOTSTRAP_SEED);
            values.copy_from_slice(&bagged);
        }
        None => {
            let best = emotions_train::tune_thresholds(&scores, &gold, NUM_LABELS);
            for (v, m) in values.iter_mut().zip(&best) {
                *v = m.threshold;
            }
        }
    }
    let thresholds = Thresholds::from_array(values)?;
    std::fs::write(&plan.output, thresholds.to_json_pretty())
        .with_context(|| format!("writing {}", plan.output.display()))?;
    let macro_f1 = emotions_train::evaluate(&scores, &gold, &values)?
        .macro_at_thresholds
        .f1;
    eprintln!(
        "emotions: thresholds tuned on {described}, macro-F1 there {macro_f1:.4}; wrote {}",
        plan.output.display()
    );
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file beside it, so a failure leaves the old
/// file whole.
fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.partial"));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// Scores scaled by temperatures fitted on the other half of the rows (alternate rows), both
/// ways: an estimate of calibration on rows the temperatures did not see.
fn cross_fitted(scores: &[f32], gold: &[bool]) -> anyhow::Result<Vec<f32>> {
    let rows = scores.len() / NUM_LABELS;
    let half = |parity: usize| -> (Vec<f32>, Vec<bool>) {
        (0..rows)
            .filter(|r| r % 2 == parity)
            .flat_map(|r| (0..NUM_LABELS).map(move |k| r * NUM_LABELS + k))
            .map(|i| (scores[i], gold[i]))
            .unzip()
    };
    let mut out = scores.to_vec();
    for parity in 0..2 {
        let (s, g) = half(1 - parity);
        let t = emotions_train::fit_temperatures(&s, &g, NUM_LABELS)?;
        for r in (0..rows).filter(|r| r % 2 == parity) {
            for (k, tk) in t.iter().enumerate() {
                let i = r * NUM_LABELS + k;
                out[i] = emotions_train::scale_score(scores[i], *tk);
            }
        }
    }
    Ok(out)
}

pub fn calibrate(plan: CalibratePlan) -> anyhow::Result<()> {
    let head = crate::args::HeadSpec {
        model: plan.model.clone(),
        thresholds: None,
        threshold: None,
        top_k: None,
    };
    let no_encoder = crate::args::EncoderSpec {
        choice: emotions::EncoderChoice::None,
        ..plan.encoder.clone()
    };
    let embedded_by = match plan.data.embeddings {
        Some(_) => &no_encoder,
        None => &plan.encoder,
    };
    let classifier = load::scoring_classifier(&head, &no_encoder, embedded_by)?;
    let origin = classifier.head_info().origin.clone();
    let Some(layer) = classifier.head_linear_layer() else {
        bail!(
            "{origin}: calibrate rescales a linear-logistic head's logits (sigmoid(x·W + b)); this head is not one"
        );
    };
    std::fs::create_dir_all(&plan.output)
        .with_context(|| format!("creating {}", plan.output.display()))?;
    let split = load::split(&plan.data, &plan.encoder, classifier.adapter())?;
    let e = &split.embeddings;
    let scores = classifier.scores(e.data(), e.rows())?;
    let gold = &split.gold;
    let temperatures = emotions_train::fit_temperatures(&scores, gold, NUM_LABELS)?;

    // The head with each label's logit divided by its temperature.
    let mut output = layer.clone();
    for (i, w) in output.weights.iter_mut().enumerate() {
        *w = (f64::from(*w) / temperatures[i % NUM_LABELS]) as f32;
    }
    for (b, t) in output.bias.iter_mut().zip(&temperatures) {
        *b = (f64::from(*b) / t) as f32;
    }
    let mut metadata = classifier.head_info().metadata.clone();
    // A head calibrated before: the temperatures compose.
    let total: Vec<f64> = match metadata.get("temperatures") {
        Some(old) => {
            let old: Vec<f64> = serde_json::from_str(old)
                .ok()
                .filter(|v: &Vec<f64>| v.len() == NUM_LABELS)
                .with_context(|| {
                    format!("{origin}: metadata temperatures: expected {NUM_LABELS} numbers, found {old:?}")
                })?;
            old.iter().zip(&temperatures).map(|(a, b)| a * b).collect()
        }
        None => temperatures.clone(),
    };
    metadata.insert("temperatures".into(), serde_json::to_string(&total)?);
    metadata.insert(
        "calibrated_on".into(),
        format!(
            "{} ({} rows), {}",
            split.path.display(),
            e.rows(),
            emotions_train::utc_date()
        ),
    );
    let graph = HeadGraph {
        hidden: None,
        output,
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        metadata,
    };
    let head_bytes = graph.to_onnx_bytes()?;

    // Thresholds move with the scores, so each decision stays as it was.
    let old_thresholds: Option<Vec<f32>> = match classifier.policy() {
        emotions::DecisionPolicy::PerLabel(t) => Some(t.as_array().to_vec()),
        emotions::DecisionPolicy::Fixed(t) => Some(vec![*t; NUM_LABELS]),
        emotions::DecisionPolicy::TopK(_) => None,
    };
    let new_thresholds = old_thresholds.as_ref().map(|old| {
        let mut values = [0f32; NUM_LABELS];
        for ((v, t), temp) in values.iter_mut().zip(old).zip(&temperatures) {
            *v = emotions_train::scale_score(*t, *temp);
        }
        values
    });

    // The written head, loaded as users load it, against the fitted scaling.
    let written = emotions::Head::builder_from_bytes(head_bytes.clone(), "the calibrated head")
        .expected_dim(Some(e.dim()))
        .build()?;
    let calibrated = written.predict(e.data(), e.rows())?;
    let changed = match (&old_thresholds, &new_thresholds) {
        (Some(old), Some(new)) => scores
            .iter()
            .zip(&calibrated)
            .enumerate()
            .filter(|(i, (a, b))| {
                let k = i % NUM_LABELS;
                (**a >= old[k]) != (**b >= new[k])
            })
            .count(),
        _ => 0,
    };
    let before = emotions_train::calibration(&scores, gold, NUM_LABELS)?;
    let after = emotions_train::calibration(&calibrated, gold, NUM_LABELS)?;
    let cross = emotions_train::calibration(&cross_fitted(&scores, gold)?, gold, NUM_LABELS)?;

    if let Some(bytes) = classifier.adapter().and(adapter_bytes(&plan)?) {
        let path = plan.output.join("adapter.safetensors");
        if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            write_replacing(&path, &bytes)?;
        }
    }
    write_replacing(&plan.output.join("head.onnx"), &head_bytes)?;
    if let Some(values) = new_thresholds {
        let thresholds = Thresholds::from_array(values)?;
        write_replacing(
            &plan.output.join("thresholds.json"),
            thresholds.to_json_pretty().as_bytes(),
        )?;
    }
    let figures = |c: &emotions_train::Calibration| serde_json::json!({"macro_ece": c.macro_ece, "pooled_ece": c.pooled_ece, "macro_brier": c.macro_brier});
    let report = serde_json::json!({
        "split": split.path.display().to_string(),
        "rows": e.rows(),
        "head": origin,
        "temperatures": LABELS.iter().zip(&temperatures).map(|(l, t)| (l.to_string(), serde_json::json!(t))).collect::<serde_json::Map<_, _>>(),
        "before": figures(&before),
        "after_in_sample": figures(&after),
        "after_cross_fitted_halves": figures(&cross),
        "decisions_changed": changed,
    });
    write_replacing(
        &plan.output.join("calibration.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    eprintln!(
        "emotions: temperatures fitted on {} ({} rows), from {:.3} to {:.3}",
        split.path.display(),
        e.rows(),
        temperatures.iter().copied().fold(f64::INFINITY, f64::min),
        temperatures.iter().copied().fold(0.0, f64::max)
    );
    for (name, c) in [
        ("before", &before),
        ("after (fitted here)", &after),
        ("after (fitted on the other half)", &cross),
    ] {
        eprintln!(
            "emotions: {name:<33} macro ECE {:.5}, pooled ECE {:.5}, macro Brier {:.5}",
            c.macro_ece, c.pooled_ece, c.macro_brier
        );
    }
    eprintln!(
        "emotions: {changed} of {} decisions changed at the moved thresholds; wrote {}",
        scores.len(),
        plan.output.display()
    );
    Ok(())
}

/// The bytes of the adapter the head needs: the file beside `--model`, or the compiled-in one.
fn adapter_bytes(plan: &CalibratePlan) -> anyhow::Result<Option<Vec<u8>>> {
    match &plan.model {
        Some(model) => {
            let path = model.with_file_name("adapter.safetensors");
            Ok(Some(
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            ))
        }
        None => Ok(Some(emotions::defaults::TUNED_ADAPTER.to_vec())),
    }
}

/// Metadata that describes one trained head and not an average of several.
const NOT_AVERAGED: [&str; 5] = [
    "epoch",
    "dev_macro_f1_dev_tuned",
    "finetune_options",
    "training_data",
    "date",
];

pub fn average(plan: AveragePlan) -> anyhow::Result<()> {
    let weight = 1.0 / plan.models.len() as f32;
    let thresholds = plan.output.join("thresholds.json");
    if thresholds.exists() {
        bail!(
            "{}: the averaged head needs its own thresholds (tune them after); remove this file or choose another --output",
            thresholds.display()
        );
    }
    let mut layers = Vec::new();
    let mut adapters = Vec::new();
    let mut sources = Vec::new();
    let mut metadata = None;
    for path in &plan.models {
        let classifier = emotions::Classifier::builder()
            .encoder(emotions::EncoderChoice::None)
            .head_path(path)
            .build()
            .with_context(|| format!("loading {}", path.display()))?;
        let info = classifier.head_info();
        let origin = &info.origin;
        let Some(layer) = classifier.head_linear_layer() else {
            bail!(
                "{origin}: average takes linear-logistic heads (sigmoid(x·W + b)); this head is not one"
            );
        };
        if info.metadata.contains_key("temperatures") {
            bail!(
                "{origin}: this head is calibrated (metadata temperatures); average the heads as trained, then calibrate the average"
            );
        }
        if let Some(first) = layers
            .first()
            .map(|l: &emotions::Dense| (l.inputs, l.outputs))
            && first != (layer.inputs, layer.outputs)
        {
            bail!(
                "{origin}: expected a head of {} inputs and {} outputs like the first, found {} and {}",
                first.0,
                first.1,
                layer.inputs,
                layer.outputs
            );
        }
        let adapter = match classifier.adapter() {
            Some(a) => {
                let file = path.with_file_name(emotions::ADAPTER_FILE);
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let parsed = emotions_runtime::LoraAdapter::from_safetensors(
                    &bytes,
                    &file.display().to_string(),
                )?;
                Some((parsed, a.hash().to_string()))
            }
            None => None,
        };
        if adapters
            .first()
            .is_some_and(|a: &Option<_>| a.is_some() != adapter.is_some())
        {
            bail!("{origin}: either every head has an adapter beside it or none does");
        }
        // Averaging fine-tunes is sound only from the same starting encoder.
        let base = |m: &std::collections::BTreeMap<String, String>| {
            m.get("encoder_fingerprint")
                .map(|f| f.split('+').next().unwrap_or_default().to_string())
        };
        let mut entry = serde_json::Map::new();
        entry.insert("head".into(), origin.clone().into());
        entry.insert("weight".into(), weight.into());
        if let Some((_, hash)) = &adapter {
            entry.insert("adapter".into(), hash.clone().into());
        }
        for key in NOT_AVERAGED {
            if let Some(v) = info.metadata.get(key) {
                entry.insert(key.into(), v.clone().into());
            }
        }
        sources.push(serde_json::Value::Object(entry));
        match &metadata {
            None => metadata = Some(info.metadata.clone()),
            Some(first) if base(first) != base(&info.metadata) => bail!(
                "{origin}: fine-tuned from encoder {:?}, the first head from {:?}; only fine-tunes of one encoder average",
                base(&info.metadata),
                base(first)
            ),
            Some(_) => {}
        }
        layers.push(layer.clone());
        adapters.push(adapter);
    }
    let mut metadata = metadata.expect("two or more heads");

    let mut output = layers[0].clone();
    for (i, w) in output.weights.iter_mut().enumerate() {
        *w = layers.iter().map(|l| l.weights[i] * weight).sum();
    }
    for (i, b) in output.bias.iter_mut().enumerate() {
        *b = layers.iter().map(|l| l.bias[i] * weight).sum();
    }
    let adapter_bytes = match adapters
        .iter()
        .map(Option::as_ref)
        .collect::<Option<Vec<_>>>()
    {
        Some(parts) => {
            let weighted: Vec<_> = parts.iter().map(|(a, _)| (a, weight)).collect();
            let mut sum =
                emotions_runtime::LoraAdapter::weighted_sum(&weighted, "the averaged adapter")?;
            if let Some(k) = plan.rank {
                let (cut, lost) = sum.truncated(k);
                let worst = lost.iter().copied().fold(0f64, f64::max);
                let mean = lost.iter().sum::<f64>() / lost.len().max(1) as f64;
                eprintln!(
                    "emotions: updates cut to rank {k}: share of each update's squared norm left out: mean {mean:.4}, worst {worst:.4}"
                );
                sum = cut;
                metadata.insert("adapter_rank_cut_to".into(), k.to_string());
            }
            sum.metadata
                .insert("averaged_from".into(), serde_json::to_string(&sources)?);
            let bytes = sum.to_safetensors();
            let hash = emotions::EncoderAdapter::from_bytes(&bytes, "the averaged adapter")?
                .hash()
                .to_string();
            metadata.insert("adapter".into(), hash.clone());
            if let Some(f) = metadata.get_mut("encoder_fingerprint")
                && let Some((base, _)) = f.split_once('+')
            {
                *f = format!("{base}+{hash}");
            }
            Some(bytes)
        }
        None => None,
    };
    for key in NOT_AVERAGED {
        metadata.remove(key);
    }
    metadata.insert("averaged_from".into(), serde_json::to_string(&sources)?);
    metadata.insert("date".into(), emotions_train::utc_date());
    let graph = HeadGraph {
        hidden: None,
        output: output.clone(),
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        metadata,
    };
    std::fs::create_dir_all(&plan.output)
        .with_context(|| format!("creating {}", plan.output.display()))?;
    if let Some(bytes) = &adapter_bytes {
        write_replacing(&plan.output.join(emotions::ADAPTER_FILE), bytes)?;
    }
    let head_path = plan.output.join("head.onnx");
    write_replacing(&head_path, &graph.to_onnx_bytes()?)?;
    // Loaded as users load it: the head finds its adapter, and holds the averaged layer.
    let written = emotions::Classifier::builder()
        .encoder(emotions::EncoderChoice::None)
        .head_path(&head_path)
        .build()
        .with_context(|| format!("loading the written {}", head_path.display()))?;
    if written.head_linear_layer() != Some(&output) {
        bail!(
            "{}: the written head does not hold the averaged weights",
            head_path.display()
        );
    }
    let rank = plan.rank.unwrap_or_else(|| {
        adapters
            .iter()
            .flatten()
            .map(|(a, _)| a.deltas.iter().map(|d| d.rank).max().unwrap_or(0))
            .sum::<usize>()
    });
    eprintln!(
        "emotions: averaged {} heads{}; wrote {} (tune its thresholds next)",
        plan.models.len(),
        if adapter_bytes.is_some() {
            format!(" and their adapters (rank up to {rank})")
        } else {
            String::new()
        },
        plan.output.display()
    );
    Ok(())
}

pub fn eval(plan: EvalPlan) -> anyhow::Result<()> {
    let no_encoder = crate::args::EncoderSpec {
        choice: emotions::EncoderChoice::None,
        ..plan.encoder.clone()
    };
    let embedded_by = match plan.data.embeddings {
        Some(_) => &no_encoder,
        None => &plan.encoder,
    };
    let classifier = load::scoring_classifier(&plan.head, &no_encoder, embedded_by)?;
    let thresholds: Vec<f32> = match classifier.policy() {
        emotions::DecisionPolicy::PerLabel(t) => t.as_array().to_vec(),
        emotions::DecisionPolicy::Fixed(t) => vec![*t; NUM_LABELS],
        emotions::DecisionPolicy::TopK(_) => bail!("eval measures thresholds; --top-k has none"),
    };
    let split = load::split(&plan.data, &plan.encoder, classifier.adapter())?;
    let e = &split.embeddings;
    let scores = classifier.scores(e.data(), e.rows())?;
    let evaluation = emotions_train::evaluate(&scores, &split.gold, &thresholds)?;
    if plan.json {
        let mut v = serde_json::to_value(&evaluation)?;
        v["split"] = serde_json::json!(split.path.display().to_string());
        v["labels"] = serde_json::json!(LABELS);
        println!("{v}");
    } else {
        print!("{}", render(&evaluation, &split.path));
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
    let c = &e.calibration;
    s += &format!(
        "\ncalibration ({} bins): macro ECE {:.4}, pooled ECE {:.4}, macro Brier {:.4}\n",
        emotions_train::CALIBRATION_BINS,
        c.macro_ece,
        c.pooled_ece,
        c.macro_brier
    );
    s += "score bin     scores  mean score  observed\n";
    for b in &c.reliability {
        s += &format!(
            "{:.1}-{:.1} {:>12} {:>11.3} {:>9.3}\n",
            b.lower, b.upper, b.count, b.mean_score, b.observed
        );
    }
    s += "\nlabel              f1  precision  recall  support  threshold     ECE   Brier\n";
    for ((label, m), c) in LABELS.iter().zip(&e.per_label).zip(&c.per_label) {
        s += &format!(
            "{label:<15} {:>5.3} {:>10.3} {:>7.3} {:>8} {:>10.2} {:>7.4} {:>7.4}\n",
            m.f1, m.precision, m.recall, m.support, m.threshold, c.ece, c.brier
        );
    }
    s
}
