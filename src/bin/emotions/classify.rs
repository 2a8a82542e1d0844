//! `emotions classify` and `emotions embed`: inputs → scores or embeddings → JSON Lines or .npy.

use crate::args::{ClassifyPlan, EmbedPlan, Input};
use crate::load;
use crate::output::{with_progress, write_json_lines};
use emotions::NUM_LABELS;

/// The texts an input names, read now; errors name the file and line.
fn read_texts(input: Input) -> anyhow::Result<Vec<String>> {
    match input {
        Input::Texts(t) => Ok(t),
        Input::TextsFile(path) => Ok(emotions_io::read_texts_path(&path)?),
        Input::Embeddings(path) => anyhow::bail!("{path}: expected texts, found embeddings"),
    }
}

pub fn classify(plan: ClassifyPlan) -> anyhow::Result<()> {
    let classifier = load::classifier(&plan.head, &plan.encoder)?;
    let (rows, scores) = match plan.input {
        Input::Embeddings(path) => {
            let e = emotions_io::read_embeddings(&path, Some(classifier.input_dim()))?;
            (e.rows(), classifier.scores(e.data(), e.rows())?)
        }
        texts => {
            let texts = read_texts(texts)?;
            let embeddings =
                with_progress(texts.len(), |p| classifier.embed_with_progress(&texts, p))?;
            (texts.len(), classifier.scores(&embeddings, texts.len())?)
        }
    };
    match &plan.output {
        Some(out) => emotions_io::write_npy_f32(out, rows, NUM_LABELS, &scores)?,
        None => write_json_lines(classifier.policy().decide_rows(&scores))?,
    }
    Ok(())
}

pub fn embed(plan: EmbedPlan) -> anyhow::Result<()> {
    let Some(encoder) = load::encoder(&plan.encoder)? else {
        anyhow::bail!("embed needs an encoder");
    };
    let texts = read_texts(plan.input)?;
    let dim = encoder.dim();
    let embeddings = with_progress(texts.len(), |p| Ok(encoder.embed_with_progress(&texts, p)?))?;
    match &plan.output {
        Some(out) => emotions_io::write_npy_f32(out, texts.len(), dim, &embeddings)?,
        None => write_json_lines(embeddings.chunks_exact(dim.max(1)).take(texts.len()))?,
    }
    Ok(())
}
