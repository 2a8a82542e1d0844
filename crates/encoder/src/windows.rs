//! Texts longer than the model's window: cut at the window (sentence-transformers' way, the
//! default), or split into overlapping windows that are embedded like any other text and
//! put back together per text.

use crate::{CappedRuns, EncoderError, Tokens};
use std::ops::Range;

/// How a text longer than the model's window (`max_seq_length` tokens, special tokens
/// included) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LongTexts {
    /// Its first window only, as sentence-transformers reads it.
    #[default]
    Truncate,
    /// Every token, in windows of the model's length; each next window starts `stride`
    /// tokens before the last one ended. `None`: a quarter of the window.
    Chunk { stride: Option<usize> },
}

/// Sentence embeddings of windows: one per text that fits the model's window, several for a
/// text read in windows ([`LongTexts::Chunk`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowEmbeddings {
    /// `windows × dim` values, pooled, and normalised when the model normalises.
    pub pooled: Vec<f32>,
    /// Text `i`'s windows are the rows `spans[i]`, in text order.
    pub spans: Vec<Range<usize>>,
    /// Each window's tokens, special tokens included: its weight in [`Self::per_text`].
    pub tokens: Vec<usize>,
    /// Texts longer than the window: cut, or read in windows.
    pub long_texts: usize,
    pub dim: usize,
}

impl WindowEmbeddings {
    /// One row per text (`spans.len() × dim`): a text's one window as it is, so that a text
    /// that fits gives exactly what [`crate::Encoder::embed`] gives; otherwise the mean of its
    /// windows weighted by their tokens, normalised again when `normalize`.
    pub fn per_text(&self, normalize: bool) -> Vec<f32> {
        let dim = self.dim;
        let mut out = vec![0f32; self.spans.len() * dim];
        for (row, span) in out.chunks_exact_mut(dim.max(1)).zip(&self.spans) {
            if span.len() == 1 {
                row.copy_from_slice(&self.pooled[span.start * dim..span.end * dim]);
                continue;
            }
            let mut sum = vec![0f64; dim];
            let mut weight = 0f64;
            for w in span.clone() {
                let t = self.tokens[w] as f64;
                weight += t;
                for (s, &x) in sum.iter_mut().zip(&self.pooled[w * dim..(w + 1) * dim]) {
                    *s += t * x as f64;
                }
            }
            for (o, s) in row.iter_mut().zip(&sum) {
                *o = (s / weight.max(1.0)) as f32;
            }
            if normalize {
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                row.iter_mut().for_each(|x| *x /= norm);
            }
        }
        out
    }
}

/// A text's sentences, by Unicode's sentence boundaries (UAX #29), each without the
/// whitespace around it; pieces that are only whitespace are left out, everything else is
/// kept (`"!!!"` and `"😡"` are sentences). A text with none is one sentence, itself.
///
/// ```
/// let s = emotions_encoder::sentences("I loved it. But the ending?! Ugh.  ");
/// assert_eq!(s, ["I loved it.", "But the ending?!", "Ugh."]);
/// assert_eq!(emotions_encoder::sentences(""), [""]);
/// ```
pub fn sentences(text: &str) -> Vec<&str> {
    use unicode_segmentation::UnicodeSegmentation;
    let found: Vec<&str> = text
        .split_sentence_bounds()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if found.is_empty() { vec![text] } else { found }
}

/// The special tokens the tokenizer puts around one text, and a tokenizer that does not
/// truncate: what windows are built from.
pub(crate) struct WindowTemplate {
    untruncated: tokenizers::Tokenizer,
    prefix: Vec<(u32, u32)>,
    suffix: Vec<(u32, u32)>,
    type_id: u32,
}

/// A long text is tokenised this many bytes at a time, cut before whitespace, so that a
/// 10 MB line is never one tokenizer call.
const PIECE_BYTES: usize = 1 << 16;

impl WindowTemplate {
    pub(crate) fn new(tokenizer: &tokenizers::Tokenizer) -> Result<Self, EncoderError> {
        let mut untruncated = tokenizer.clone();
        untruncated
            .with_truncation(None)
            .map_err(EncoderError::tokenize(0))?;
        // The special tokens around a one-word text: those before its first own token, and
        // those after its last.
        let probe = untruncated
            .encode_fast("a", true)
            .map_err(EncoderError::tokenize(0))?;
        let special = probe.get_special_tokens_mask();
        let pairs: Vec<(u32, u32)> = probe
            .get_ids()
            .iter()
            .copied()
            .zip(probe.get_type_ids().iter().copied())
            .collect();
        let first = special.iter().position(|&s| s == 0).unwrap_or(pairs.len());
        let last = special
            .iter()
            .rposition(|&s| s == 0)
            .map_or(first, |l| l + 1);
        Ok(WindowTemplate {
            prefix: pairs[..first].to_vec(),
            suffix: pairs[last..].to_vec(),
            type_id: pairs.get(first).map_or(0, |p| p.1),
            untruncated,
        })
    }

    /// The tokenizer, without truncation.
    pub(crate) fn untruncated(&self) -> &tokenizers::Tokenizer {
        &self.untruncated
    }

    /// Tokens of a window's own text: the model's length less the special tokens.
    pub(crate) fn width(&self, max_seq_length: usize) -> usize {
        max_seq_length.saturating_sub(self.prefix.len() + self.suffix.len())
    }

    /// Every token of text `index`, without special tokens, a piece of at most
    /// [`PIECE_BYTES`] (cut before whitespace) at a time. A piece cut just before whitespace
    /// tokenises to the tokens the whole text has there, as in `truncated_encoding`.
    fn content_ids(&self, index: usize, text: &str) -> Result<Vec<u32>, EncoderError> {
        let mut ids = Vec::new();
        let mut piece = String::new();
        let mut flush = |piece: &mut String| -> Result<(), EncoderError> {
            let enc = self
                .untruncated
                .encode_fast(piece.as_str(), false)
                .map_err(EncoderError::tokenize(index))?;
            ids.extend_from_slice(enc.get_ids());
            piece.clear();
            Ok(())
        };
        for run in (CappedRuns { text, at: 0 }) {
            let space = run.starts_with(char::is_whitespace);
            if space && piece.len() >= PIECE_BYTES {
                flush(&mut piece)?;
            }
            piece.push_str(run);
        }
        flush(&mut piece)?;
        Ok(ids)
    }

    /// Tokens of the whole text with its special tokens, uncut.
    pub(crate) fn count(&self, index: usize, text: &str) -> Result<usize, EncoderError> {
        Ok(self.content_ids(index, text)?.len() + self.prefix.len() + self.suffix.len())
    }

    /// Text `index` in windows of `max_seq_length` tokens with special tokens, each next one
    /// starting `stride` tokens before the last ended; the last may be shorter.
    pub(crate) fn windows(
        &self,
        index: usize,
        text: &str,
        max_seq_length: usize,
        stride: usize,
    ) -> Result<Vec<Tokens>, EncoderError> {
        let width = self.width(max_seq_length);
        let ids = self.content_ids(index, text)?;
        let step = width - stride; // stride < width: checked by the caller
        let mut windows = Vec::with_capacity(ids.len().div_ceil(step.max(1)));
        let mut start = 0;
        loop {
            let end = (start + width).min(ids.len());
            let mut window = Tokens {
                ids: Vec::with_capacity(max_seq_length),
                type_ids: Vec::with_capacity(max_seq_length),
            };
            for &(id, t) in &self.prefix {
                window.ids.push(id);
                window.type_ids.push(t);
            }
            window.ids.extend_from_slice(&ids[start..end]);
            window.type_ids.resize(window.ids.len(), self.type_id);
            for &(id, t) in &self.suffix {
                window.ids.push(id);
                window.type_ids.push(t);
            }
            windows.push(window);
            if end == ids.len() {
                return Ok(windows);
            }
            start += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_text_is_a_token_weighted_mean_and_one_window_is_kept_as_is() {
        let e = WindowEmbeddings {
            // text 0: one window; text 1: two windows of 3 and 1 tokens
            pooled: vec![0.6, 0.8, 1.0, 0.0, 0.0, 1.0],
            spans: vec![0..1, 1..3],
            tokens: vec![5, 3, 1],
            long_texts: 1,
            dim: 2,
        };
        assert_eq!(e.per_text(false), vec![0.6, 0.8, 0.75, 0.25]);
        let n = e.per_text(true);
        assert_eq!(&n[..2], &[0.6, 0.8]);
        let norm = (0.75f32 * 0.75 + 0.25 * 0.25).sqrt();
        assert!((n[2] - 0.75 / norm).abs() < 1e-7 && (n[3] - 0.25 / norm).abs() < 1e-7);
    }
}
