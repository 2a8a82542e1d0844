//! Loading what the checked flags name: encoders, classifiers and labelled splits. Every bad
//! file is an error naming it.

use crate::args::{EncoderSpec, HeadSpec, SplitSpec};
use crate::output::with_progress;
use anyhow::{Context, bail};
use emotions::{Classifier, Encoder, EncoderAdapter, EncoderChoice, NUM_LABELS, Thresholds};
use emotions_train::EmbeddingCache;
use std::path::PathBuf;

/// The encoder a spec names, with `adapter` merged; `None` when it names none.
pub fn encoder(
    spec: &EncoderSpec,
    adapter: Option<&EncoderAdapter>,
) -> anyhow::Result<Option<Encoder>> {
    // A lone batch splits its matrix products across the threads; many batches run one per
    // worker instead.
    emotions::set_threads(spec.threads).context("setting --threads")?;
    let Some(encoder) = emotions::load_encoder(&spec.choice, spec.options, adapter)
        .context("loading the encoder")?
    else {
        return Ok(None);
    };
    for w in encoder.warnings() {
        eprintln!("emotions: warning: {w}");
    }
    report(spec, &encoder);
    Ok(Some(encoder))
}

/// With `--verbose`: which graph loaded and which of its parts run on the fused kernels, so a
/// user can see whether their export got the fast path.
pub fn report(spec: &EncoderSpec, encoder: &Encoder) {
    if spec.verbose {
        // The load checked the class already; this reports it.
        let isa = emotions::Isa::selected().map_or_else(|e| e.to_string(), |i| i.to_string());
        eprintln!(
            "emotions: encoder {} ({}): {}; kernels {isa}, precision {}",
            encoder.graph_origin(),
            encoder.fingerprint(),
            encoder.rewrites(),
            spec.options.precision.name()
        );
    }
}

/// The name an encoder goes by, without loading it: its folder's name, or the default's.
pub fn encoder_name(spec: &EncoderSpec) -> String {
    match &spec.choice {
        EncoderChoice::Dir(dir) | EncoderChoice::DirFile { dir, .. } => {
            dir.file_name().map_or(dir.display().to_string(), |n| {
                n.to_string_lossy().into_owned()
            })
        }
        _ => emotions::defaults::ENCODER_NAME.to_string(),
    }
}

/// A classifier; its warnings go to stderr.
pub fn classifier(head: &HeadSpec, encoder: &EncoderSpec) -> anyhow::Result<Classifier> {
    scoring_classifier(head, encoder, encoder)
}

/// A classifier with `encoder`, whose default head is the one texts embedded by
/// `embedded_by` get (`eval` and `tune` embed splits themselves, with the classifier's adapter).
pub fn scoring_classifier(
    head: &HeadSpec,
    encoder: &EncoderSpec,
    embedded_by: &EncoderSpec,
) -> anyhow::Result<Classifier> {
    emotions::set_threads(encoder.threads).context("setting --threads")?;
    let mut builder = Classifier::builder()
        .default_head_for(embedded_by.choice.clone())
        .encoder(encoder.choice.clone())
        .encoder_options(encoder.options)
        .head_threads(encoder.threads);
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
    if let Some(e) = classifier.encoder() {
        report(encoder, e);
    }
    Ok(classifier)
}

/// A labelled split with its embeddings.
pub struct Split {
    pub path: PathBuf,
    /// `rows * 28`, label order.
    pub gold: Vec<bool>,
    pub embeddings: emotions_io::Embeddings,
    /// The fingerprint of the encoder that embedded it, when one did.
    pub encoder_fingerprint: Option<String>,
}

/// Reads a split, and its embeddings from the file given, else from the cache, else from the
/// encoder with `adapter` merged (then cached).
pub fn split(
    spec: &SplitSpec,
    encoder_spec: &EncoderSpec,
    adapter: Option<&EncoderAdapter>,
) -> anyhow::Result<Split> {
    let examples = emotions_io::read_go_emotions(&spec.split, NUM_LABELS)?;
    let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    let mut gold = vec![false; examples.len() * NUM_LABELS];
    for (i, e) in examples.iter().enumerate() {
        for &l in &e.labels {
            gold[i * NUM_LABELS + l] = true;
        }
    }
    let (embeddings, encoder_fingerprint) = match &spec.embeddings {
        Some(file) => {
            let e = emotions_io::read_embeddings(file, None)?;
            if e.rows() != texts.len() {
                bail!(
                    "{file}: {} embedding rows for {} examples in {}",
                    e.rows(),
                    texts.len(),
                    spec.split.display()
                );
            }
            (e, None)
        }
        None => {
            let Some(encoder) = encoder(encoder_spec, adapter)? else {
                bail!("{}: no embeddings and no encoder", spec.split.display());
            };
            let cache = EmbeddingCache::new(&spec.cache);
            let fingerprint = encoder.fingerprint().to_string();
            let key = encoder.embeddings_id();
            let e =
                match cache.lookup(&key, encoder.dim(), &texts)? {
                    Some(e) => {
                        eprintln!(
                            "emotions: using cached embeddings {}",
                            cache.path(&key, &texts).display()
                        );
                        e
                    }
                    None => {
                        eprintln!(
                            "emotions: embedding {} texts with {}",
                            texts.len(),
                            encoder.name()
                        );
                        let data = with_progress(texts.len(), |p| {
                            Ok(encoder.embed_with_progress(&texts, p)?)
                        })?;
                        cache.store(&key, encoder.dim(), &texts, data)?
                    }
                };
            (e, Some(fingerprint))
        }
    };
    Ok(Split {
        path: spec.split.clone(),
        gold,
        embeddings,
        encoder_fingerprint,
    })
}
