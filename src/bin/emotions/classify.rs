//! `emotions classify` and `emotions embed`: inputs → scores or embeddings → JSON Lines or .npy,
//! streamed.
//!
//! Rows are read on a thread of their own, a chunk at a time, while the previous chunk is
//! embedded, scored and written, in input order, then flushed. Memory is bounded by the chunk
//! size, not by the input. A line that cannot be read stops the run after every row before it
//! is written (JSON Lines: whole lines only; `.npy`: the header patched to the rows written),
//! or, with `--skip-bad-lines`, is reported on stderr and skipped.

use crate::args::{ClassifyPlan, EmbedPlan, Input, StreamSpec};
use crate::load;
use anyhow::Context;
use emotions::NUM_LABELS;
use emotions_io::{IoError, IoErrorKind, Rows};
use std::io::{IsTerminal, Write};
use std::path::Path;

pub fn classify(plan: ClassifyPlan) -> anyhow::Result<()> {
    let classifier = load::classifier(&plan.head, &plan.encoder)?;
    let mut sink = Sink::open(plan.output.as_deref(), NUM_LABELS)?;
    let result = match plan.input {
        Input::Embeddings(path) => {
            let dim = classifier.input_dim();
            stream_chunks(
                move || emotions_io::embedding_rows(&path, Some(dim)),
                plan.stream,
                |rows: Vec<Vec<f32>>, _| {
                    let flat: Vec<f32> = rows.concat();
                    let scores = classifier.scores(&flat, rows.len())?;
                    sink.write_predictions(&classifier, &scores)
                },
            )
        }
        texts => stream_chunks(
            move || text_rows(texts),
            plan.stream,
            |texts: Vec<String>, lines| {
                let features = classifier.features(&texts).map_err(|e| at_line(e, lines))?;
                let scores = classifier.scores(&features, texts.len())?;
                sink.write_predictions(&classifier, &scores)
            },
        ),
    };
    sink.finish(result)
}

pub fn embed(plan: EmbedPlan) -> anyhow::Result<()> {
    let Some(encoder) = load::encoder(&plan.encoder, None)? else {
        anyhow::bail!("embed needs an encoder");
    };
    let dim = encoder.dim();
    let mut sink = Sink::open(plan.output.as_deref(), dim)?;
    let result = stream_chunks(
        move || text_rows(plan.input),
        plan.stream,
        |texts: Vec<String>, lines| {
            let embeddings = encoder
                .embed(&texts)
                .map_err(|e| at_line(emotions::Error::from(e), lines))?;
            sink.write_rows(&embeddings, dim)
        },
    );
    sink.finish(result)
}

/// The texts an input names, as rows.
fn text_rows(input: Input) -> Result<Rows<String>, IoError> {
    match input {
        Input::Texts(t) => Ok(Box::new(t.into_iter().map(Ok))),
        Input::TextsFile(path) => emotions_io::text_rows(&path),
        Input::Embeddings(path) => Err(IoError::new(
            path,
            IoErrorKind::Npy {
                message: "expected texts, found embeddings".into(),
            },
        )),
    }
}

/// An encoder error about text `index` of a chunk, placed at its input line.
fn at_line(e: emotions::Error, lines: &[usize]) -> anyhow::Error {
    use emotions_encoder::EncoderErrorKind::{NoTokens, Tokenize};
    let index = match &e {
        emotions::Error::Encoder(err) => match &err.kind {
            Tokenize { index, .. } | NoTokens { index } => Some(*index),
            _ => None,
        },
        _ => None,
    };
    match index.and_then(|i| lines.get(i)) {
        Some(line) => anyhow::Error::new(e).context(format!("input line {line}")),
        None => e.into(),
    }
}

/// Reads rows on their own thread, `spec.chunk_size` at a time, and hands each chunk to
/// `process` in input order, with each row's line (or row) number, from 1. The first unreadable row ends the run after the rows before it are
/// processed, unless `spec.skip_bad_lines`.
fn stream_chunks<T: Send>(
    open: impl FnOnce() -> Result<Rows<T>, IoError> + Send,
    spec: StreamSpec,
    mut process: impl FnMut(Vec<T>, &[usize]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let progress = Progress::new();
    std::thread::scope(|scope| {
        // One chunk in flight while one is processed: reading overlaps the work.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(Vec<T>, Vec<usize>), IoError>>(1);
        scope.spawn(move || {
            let rows = match open() {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let mut chunk = (Vec::with_capacity(spec.chunk_size), Vec::new());
            // Each item of the readers is one line (or `.npy` row), good or bad.
            for (line, row) in (1..).zip(rows) {
                match row {
                    Ok(row) => {
                        chunk.0.push(row);
                        chunk.1.push(line);
                        if chunk.0.len() == spec.chunk_size {
                            let full = std::mem::replace(
                                &mut chunk,
                                (Vec::with_capacity(spec.chunk_size), Vec::new()),
                            );
                            if tx.send(Ok(full)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) if spec.skip_bad_lines && e.is_row_error() => {
                        eprintln!("emotions: skipped {e}");
                    }
                    Err(e) => {
                        if !chunk.0.is_empty() && tx.send(Ok(chunk)).is_err() {
                            return;
                        }
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
            if !chunk.0.is_empty() {
                let _ = tx.send(Ok(chunk));
            }
        });
        for chunk in rx {
            let (rows, lines) = chunk?;
            let n = rows.len();
            process(rows, &lines)?;
            progress.add(n);
            // The chunk's activations are freed: give their pages back, so that a long run's
            // peak stays that of one chunk.
            emotions::release_free_memory();
        }
        progress.finish();
        Ok(())
    })
}

/// A row counter on stderr when it is a terminal.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} rows, {per_sec}")
                .expect("valid template"),
        );
        Progress(Some(bar))
    }
    fn add(&self, n: usize) {
        if let Some(bar) = &self.0 {
            bar.inc(n as u64);
        }
    }
    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Where results go: JSON Lines on stdout, flushed after every chunk, or a `.npy` file whose
/// header is patched with the row count at the end.
enum Sink {
    Lines(std::io::BufWriter<std::io::StdoutLock<'static>>),
    Npy(emotions_io::NpyWriter),
}

impl Sink {
    fn open(output: Option<&Path>, cols: usize) -> anyhow::Result<Sink> {
        Ok(match output {
            Some(path) => Sink::Npy(emotions_io::NpyWriter::create(path, cols)?),
            None => Sink::Lines(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout().lock(),
            )),
        })
    }

    fn write_predictions(
        &mut self,
        classifier: &emotions::Classifier,
        scores: &[f32],
    ) -> anyhow::Result<()> {
        match self {
            Sink::Lines(out) => {
                for p in classifier.policy().decide_rows(scores) {
                    serde_json::to_writer(&mut *out, &p).context("writing to stdout")?;
                    out.write_all(b"\n").context("writing to stdout")?;
                }
                out.flush().context("writing to stdout")
            }
            Sink::Npy(npy) => Ok(npy.write_rows(scores)?),
        }
    }

    fn write_rows(&mut self, values: &[f32], dim: usize) -> anyhow::Result<()> {
        match self {
            Sink::Lines(out) => {
                for row in values.chunks_exact(dim.max(1)) {
                    serde_json::to_writer(&mut *out, row).context("writing to stdout")?;
                    out.write_all(b"\n").context("writing to stdout")?;
                }
                out.flush().context("writing to stdout")
            }
            Sink::Npy(npy) => Ok(npy.write_rows(values)?),
        }
    }

    /// Completes the output, whether the run succeeded or not: every row written stays whole
    /// (a `.npy` gets the count of rows written), then the run's error, if any, is returned.
    fn finish(self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        let finished = match self {
            Sink::Lines(mut out) => out.flush().context("writing to stdout"),
            Sink::Npy(npy) => npy.finish().map_err(anyhow::Error::from),
        };
        result.and(finished)
    }
}
