//! `emotions train`, `tune` and `eval`: go_emotions splits in, heads, thresholds and metrics
//! out. The work is `emotions_train`'s; this module loads, reports and writes.

use crate::args::{EvalPlan, TrainPlan, TunePlan};
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
    let best = emotions_train::tune_thresholds(&scores, &gold, NUM_LABELS);
    let mut values = [0f32; NUM_LABELS];
    for (v, m) in values.iter_mut().zip(&best) {
        *v = m.threshold;
    }
    let thresholds = Thresholds::from_array(values)?;
    std::fs::write(&plan.output, thresholds.to_json_pretty())
        .with_context(|| format!("writing {}", plan.output.display()))?;
    let macro_f1 = best.iter().map(|m| m.f1).sum::<f64>() / NUM_LABELS as f64;
    eprintln!(
        "emotions: thresholds tuned on {described}, macro-F1 there {macro_f1:.4}; wrote {}",
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
    s += "\nlabel              f1  precision  recall  support  threshold\n";
    for (label, m) in LABELS.iter().zip(&e.per_label) {
        s += &format!(
            "{label:<15} {:>5.3} {:>10.3} {:>7.3} {:>8} {:>10.2}\n",
            m.f1, m.precision, m.recall, m.support, m.threshold
        );
    }
    s
}
