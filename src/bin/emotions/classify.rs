//! `emotions classify` and `emotions embed`: inputs → scores or embeddings → JSON Lines or .npy.

use crate::args::{ClassifyConfig, EmbedConfig, Input};
use anyhow::Context;
use emotions::NUM_LABELS;
use std::io::{IsTerminal, Write};

pub fn classify(config: ClassifyConfig) -> anyhow::Result<()> {
    let classifier = &config.classifier;
    let (rows, scores) = match config.input {
        Input::Embeddings(path) => {
            let e = emotions_io::read_embeddings(&path, Some(classifier.input_dim()))?;
            (e.rows(), classifier.scores(e.data(), e.rows())?)
        }
        texts => {
            let texts = texts.texts()?;
            let embeddings =
                with_progress(texts.len(), |p| classifier.embed_with_progress(&texts, p))?;
            (texts.len(), classifier.scores(&embeddings, texts.len())?)
        }
    };
    match &config.output {
        Some(out) => emotions_io::write_npy_f32(out, rows, NUM_LABELS, &scores)?,
        None => write_json_lines(classifier.policy().decide_rows(&scores))?,
    }
    Ok(())
}

pub fn embed(config: EmbedConfig) -> anyhow::Result<()> {
    let texts = config.input.texts()?;
    let dim = config.encoder.dim();
    let embeddings = with_progress(texts.len(), |p| {
        Ok(config.encoder.embed_with_progress(&texts, p)?)
    })?;
    match &config.output {
        Some(out) => emotions_io::write_npy_f32(out, texts.len(), dim, &embeddings)?,
        None => write_json_lines(embeddings.chunks_exact(dim.max(1)).take(texts.len()))?,
    }
    Ok(())
}

/// Runs `work` with a progress bar on stderr when stderr is a terminal and the input is large.
pub fn with_progress<T>(
    total: usize,
    work: impl FnOnce(&mut dyn FnMut(usize)) -> Result<T, emotions::Error>,
) -> anyhow::Result<T> {
    if total < 256 || !std::io::stderr().is_terminal() {
        return Ok(work(&mut |_| {})?);
    }
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} texts, {per_sec}, eta {eta}")
            .expect("valid template"),
    );
    let result = work(&mut |done| bar.set_position(done as u64));
    bar.finish_and_clear();
    Ok(result?)
}

/// One JSON value per line on stdout, in input order.
pub fn write_json_lines<T: serde::Serialize>(
    items: impl IntoIterator<Item = T>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for item in items {
        serde_json::to_writer(&mut out, &item).context("writing to stdout")?;
        out.write_all(b"\n").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}
