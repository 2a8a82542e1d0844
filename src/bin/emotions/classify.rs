//! `emotions classify`: inputs → scores → JSON Lines or .npy.

use crate::args::{ClassifyConfig, ClassifyInput};
use anyhow::Context;
use emotions::{NUM_LABELS, Prediction};
use std::io::Write;

pub fn run(config: &ClassifyConfig) -> anyhow::Result<()> {
    let classifier = &config.classifier;
    let ClassifyInput::Embeddings(path) = &config.input;
    let embeddings = emotions_io::read_embeddings(path, Some(classifier.input_dim()))?;
    let scores = classifier.scores(embeddings.data(), embeddings.rows())?;
    match &config.output {
        Some(out) => emotions_io::write_npy_f32(out, embeddings.rows(), NUM_LABELS, &scores)?,
        None => write_json_lines(&classifier.policy().decide_rows(&scores))?,
    }
    Ok(())
}

/// One JSON object per line on stdout, in input order.
pub fn write_json_lines(predictions: &[Prediction]) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for p in predictions {
        serde_json::to_writer(&mut out, p).context("writing to stdout")?;
        out.write_all(b"\n").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}
