//! `emotions classify` and `emotions embed`: inputs → scores or embeddings → JSON Lines or .npy,
//! streamed.
//!
//! Rows are read on a thread of their own, a chunk at a time, while the previous chunk is
//! embedded, scored and written, in input order, then flushed. Memory is bounded by the chunk
//! size, not by the input. A line that cannot be read stops the run after every row before it
//! is written (JSON Lines: whole lines only; `.npy`: the header patched to the rows written),
//! or, with `--skip-bad-lines`, is reported on stderr and skipped.

use crate::args::{ClassifyPlan, EmbedPlan, Input, OutputFormat, OutputSpec, StreamSpec};
use crate::load;
use anyhow::Context;
use emotions::NUM_LABELS;
use emotions_io::{IoError, IoErrorKind, Rows};
use std::io::{IsTerminal, Write};

pub fn classify(plan: ClassifyPlan) -> anyhow::Result<()> {
    let classifier = load::classifier(&plan.head, &plan.encoder)?;
    let mut sink = Sink::open(&plan.output, NUM_LABELS)?;
    let skip = sink.rows_kept();
    let result = match plan.input {
        Input::Embeddings(path) => {
            let dim = classifier.input_dim();
            stream_chunks(
                move || emotions_io::embedding_rows(&path, Some(dim)),
                plan.stream,
                skip,
                |rows: Vec<Vec<f32>>, _| {
                    let flat: Vec<f32> = rows.concat();
                    let scores = classifier.scores(&flat, rows.len())?;
                    sink.write_predictions(&classifier, &scores)
                },
            )
        }
        texts => {
            let mut long = LongTextCount::new(plan.long, classifier.encoder());
            let result = stream_chunks(
                move || text_rows(texts),
                plan.stream,
                skip,
                |texts: Vec<String>, lines| {
                    if plan.per_sentence {
                        return per_sentence(
                            &classifier,
                            (plan.long, plan.aggregate),
                            &mut sink,
                            &mut long,
                            &texts,
                            lines,
                        );
                    }
                    let scored = classifier
                        .text_scores(&texts, plan.long, plan.aggregate)
                        .map_err(|e| at_line(e, lines))?;
                    long.add(texts.len(), scored.long_texts);
                    sink.write_predictions(&classifier, &scored.scores)
                },
            );
            long.report();
            result
        }
    };
    sink.finish(result)
}

pub fn embed(plan: EmbedPlan) -> anyhow::Result<()> {
    let Some(encoder) = load::encoder(&plan.encoder, None)? else {
        anyhow::bail!("embed needs an encoder");
    };
    let dim = encoder.dim();
    let mut sink = Sink::open(&plan.output, dim)?;
    let skip = sink.rows_kept();
    let mut long = LongTextCount::new(plan.long, Some(&encoder));
    let result = stream_chunks(
        move || text_rows(plan.input),
        plan.stream,
        skip,
        |texts: Vec<String>, lines| {
            let windows = encoder
                .embed_windows(&texts, plan.long, &mut |_| {})
                .map_err(|e| at_line(emotions::Error::from(e), lines))?;
            long.add(texts.len(), windows.long_texts);
            sink.write_rows(&windows.per_text(encoder.normalizes()), dim)
        },
    );
    long.report();
    sink.finish(result)
}

/// `classify --per-sentence`: every sentence of a chunk's texts scored in one call, one line
/// each with its input line and index.
fn per_sentence(
    classifier: &emotions::Classifier,
    (long_texts, aggregate): (emotions::LongTexts, emotions::Aggregate),
    sink: &mut Sink,
    long: &mut LongTextCount,
    texts: &[String],
    lines: &[usize],
) -> anyhow::Result<()> {
    let mut sentences = Vec::new();
    let mut origin = Vec::new();
    for (text, &line) in texts.iter().zip(lines) {
        for (i, s) in emotions::sentences(text).into_iter().enumerate() {
            sentences.push(s);
            origin.push((line, i));
        }
    }
    let scored = classifier
        .text_scores(&sentences, long_texts, aggregate)
        .map_err(|e| {
            // The encoder names a sentence; the user's file has lines.
            let at = text_index(&e).and_then(|i| origin.get(i));
            match at {
                Some(&(line, i)) => {
                    anyhow::Error::new(e).context(format!("input line {line}, sentence {i}"))
                }
                None => e.into(),
            }
        })?;
    long.add(sentences.len(), scored.long_texts);
    let predictions = classifier.policy().decide_rows(&scored.scores);
    let rows = predictions.iter().zip(&origin).zip(&sentences).map(
        |((prediction, &(line, sentence)), text)| SentenceLine {
            line,
            sentence,
            text,
            prediction,
        },
    );
    sink.write_serialised(rows)
}

/// Which text of a call an encoder error is about (its index in the call).
fn text_index(e: &emotions::Error) -> Option<usize> {
    use emotions_encoder::EncoderErrorKind::{NoTokens, Tokenize};
    match e {
        emotions::Error::Encoder(err) => match &err.kind {
            Tokenize { index, .. } | NoTokens { index } => Some(*index),
            _ => None,
        },
        _ => None,
    }
}

/// One sentence's line of `classify --per-sentence`.
struct SentenceLine<'a> {
    line: usize,
    sentence: usize,
    text: &'a str,
    prediction: &'a emotions::Prediction,
}

impl serde::Serialize for SentenceLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("line", &self.line)?;
        m.serialize_entry("sentence", &self.sentence)?;
        m.serialize_entry("text", self.text)?;
        m.serialize_entry("labels", &self.prediction.labels())?;
        m.serialize_entry(
            "scores",
            &emotions_labels::LabelScores(self.prediction.scores()),
        )?;
        m.end()
    }
}

/// Texts longer than the encoder's window, said once on stderr at the end: truncation is not
/// silent.
struct LongTextCount {
    mode: emotions::LongTexts,
    window: usize,
    texts: usize,
    long: usize,
}

impl LongTextCount {
    fn new(mode: emotions::LongTexts, encoder: Option<&emotions::Encoder>) -> Self {
        let window = encoder.map_or(0, |e| e.max_seq_length());
        LongTextCount {
            mode,
            window,
            texts: 0,
            long: 0,
        }
    }
    fn add(&mut self, texts: usize, long: usize) {
        self.texts += texts;
        self.long += long;
    }
    fn report(&self) {
        if self.long == 0 {
            return;
        }
        let (n, of, window) = (self.long, self.texts, self.window);
        let what = match self.mode {
            emotions::LongTexts::Truncate => {
                "truncated to them (--long-texts chunk reads every token)"
            }
            emotions::LongTexts::Chunk { .. } => "read in windows",
        };
        let texts = if n == 1 { "text was" } else { "texts were" };
        eprintln!(
            "emotions: {n} of {of} {texts} longer than the encoder's {window} tokens and {what}"
        );
    }
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
    match text_index(&e).and_then(|i| lines.get(i)) {
        Some(line) => anyhow::Error::new(e).context(format!("input line {line}")),
        None => e.into(),
    }
}

/// Rows in the first chunk of a stream; each next chunk doubles, up to `--chunk-size`.
const FIRST_CHUNK: usize = 32;

/// Reads rows on their own thread, in chunks growing from [`FIRST_CHUNK`] to
/// `spec.chunk_size`, and hands each chunk to
/// `process` in input order, with each row's line (or row) number, from 1. The first
/// unreadable row ends the run after the rows before it are processed, unless
/// `spec.skip_bad_lines`. The first `skip` good rows are read and dropped: a resumed run has
/// their results already.
fn stream_chunks<T: Send>(
    open: impl FnOnce() -> Result<Rows<T>, IoError> + Send,
    spec: StreamSpec,
    skip: usize,
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
            // The first chunk is small and each next one twice as large, up to
            // `--chunk-size`: the first lines come out at once, and the larger chunks later
            // keep the throughput (results do not depend on chunking).
            let mut target = FIRST_CHUNK.min(spec.chunk_size);
            let mut chunk = (Vec::with_capacity(target), Vec::new());
            let mut to_skip = skip;
            // Each item of the readers is one line (or `.npy` row), good or bad.
            for (line, row) in (1..).zip(rows) {
                match row {
                    Ok(_) if to_skip > 0 => to_skip -= 1,
                    Ok(row) => {
                        chunk.0.push(row);
                        chunk.1.push(line);
                        if chunk.0.len() == target {
                            target = (target * 2).min(spec.chunk_size);
                            let full = std::mem::replace(
                                &mut chunk,
                                (Vec::with_capacity(target), Vec::new()),
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
            } else if to_skip > 0 {
                let _ = tx.send(Err(IoError::new(
                    "--resume",
                    IoErrorKind::Line {
                        line: skip - to_skip,
                        message: format!(
                            "the output holds {skip} rows, but the input ends after {} good rows; is it the same input?",
                            skip - to_skip
                        ),
                    },
                )));
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

/// Where results go: JSON Lines (on stdout or in a file), flushed after every chunk, or a
/// `.npy` file whose header is rewritten after every chunk to count the rows written.
enum Sink {
    Lines {
        out: std::io::BufWriter<Box<dyn Write>>,
        origin: String,
        kept: usize,
    },
    Npy(emotions_io::NpyWriter),
}

impl Sink {
    fn open(output: &OutputSpec, cols: usize) -> anyhow::Result<Sink> {
        let lines = |out: Box<dyn Write>, origin: String, kept| Sink::Lines {
            out: std::io::BufWriter::with_capacity(1 << 16, out),
            origin,
            kept,
        };
        Ok(match output {
            OutputSpec::Stdout => lines(Box::new(std::io::stdout().lock()), "stdout".into(), 0),
            OutputSpec::File {
                path,
                format: OutputFormat::Npy,
                resume,
            } => Sink::Npy(if *resume {
                emotions_io::NpyWriter::resume(path, cols)?
            } else {
                emotions_io::NpyWriter::create(path, cols)?
            }),
            OutputSpec::File {
                path,
                format: OutputFormat::JsonLines,
                resume,
            } => {
                let origin = path.display().to_string();
                let (file, kept) = if *resume {
                    emotions_io::resume_lines(path)?
                } else {
                    let file = std::fs::File::create(path).with_context(|| origin.clone())?;
                    (file, 0)
                };
                lines(Box::new(file), origin, kept)
            }
        })
    }

    /// Rows a resumed output already holds: that many input rows are skipped.
    fn rows_kept(&self) -> usize {
        match self {
            Sink::Lines { kept, .. } => *kept,
            Sink::Npy(npy) => npy.rows(),
        }
    }

    fn write_predictions(
        &mut self,
        classifier: &emotions::Classifier,
        scores: &[f32],
    ) -> anyhow::Result<()> {
        match self {
            Sink::Lines { out, origin, .. } => {
                write_json_lines(out, origin, classifier.policy().decide_rows(scores))
            }
            Sink::Npy(npy) => {
                npy.write_rows(scores)?;
                Ok(npy.commit()?)
            }
        }
    }

    /// Rows that are JSON Lines only (`--per-sentence`; `.npy` is refused before the run).
    fn write_serialised<T: serde::Serialize>(
        &mut self,
        rows: impl IntoIterator<Item = T>,
    ) -> anyhow::Result<()> {
        match self {
            Sink::Lines { out, origin, .. } => write_json_lines(out, origin, rows),
            Sink::Npy(_) => anyhow::bail!("--per-sentence writes JSON Lines, not .npy"),
        }
    }

    fn write_rows(&mut self, values: &[f32], dim: usize) -> anyhow::Result<()> {
        match self {
            Sink::Lines { out, origin, .. } => {
                write_json_lines(out, origin, values.chunks_exact(dim.max(1)))
            }
            Sink::Npy(npy) => {
                npy.write_rows(values)?;
                Ok(npy.commit()?)
            }
        }
    }

    /// Completes the output, whether the run succeeded or not: every row written stays whole
    /// (a `.npy` gets the count of rows written), then the run's error, if any, is returned.
    fn finish(self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        let finished = match self {
            Sink::Lines {
                mut out, origin, ..
            } => out.flush().with_context(|| origin),
            Sink::Npy(npy) => npy.finish().map_err(anyhow::Error::from),
        };
        result.and(finished)
    }
}

/// Writes one JSON value per line and flushes. A write error comes back as the
/// `std::io::Error` it is (not wrapped in serde_json's), so that a closed pipe is seen as one.
fn write_json_lines<T: serde::Serialize>(
    out: &mut impl Write,
    origin: &str,
    rows: impl IntoIterator<Item = T>,
) -> anyhow::Result<()> {
    for row in rows {
        serde_json::to_writer(&mut *out, &row)
            .map_err(std::io::Error::from)
            .with_context(|| format!("writing to {origin}"))?;
        out.write_all(b"\n")
            .with_context(|| format!("writing to {origin}"))?;
    }
    out.flush().with_context(|| format!("writing to {origin}"))
}
