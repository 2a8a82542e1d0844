//! The sentence-transformers configuration files.

use crate::{EncoderError, EncoderErrorKind, EncoderFiles};
use serde::Deserialize;

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's vector (bge-small-en-v1.5).
    Cls,
    /// The mean over real tokens (all-MiniLM-L6-v2).
    Mean,
    /// The element-wise max over real tokens.
    Max,
    /// The sum over real tokens divided by the square root of their count.
    MeanSqrtLen,
}

impl Pooling {
    /// Pools `tokens` (`[len, dim]` row-major, real tokens only) into `out` (`dim` values).
    pub(crate) fn pool(self, tokens: &[f32], dim: usize, out: &mut [f32]) {
        let rows = tokens.chunks_exact(dim.max(1));
        let len = rows.len().max(1) as f32;
        match self {
            Pooling::Cls => {
                if let Some(first) = tokens.get(..dim) {
                    out.copy_from_slice(first);
                }
            }
            Pooling::Max => {
                out.fill(f32::NEG_INFINITY);
                for row in rows {
                    out.iter_mut().zip(row).for_each(|(o, x)| *o = o.max(*x));
                }
            }
            Pooling::Mean | Pooling::MeanSqrtLen => {
                out.fill(0.0);
                for row in rows {
                    out.iter_mut().zip(row).for_each(|(o, x)| *o += *x);
                }
                let d = if self == Pooling::Mean {
                    len
                } else {
                    len.sqrt()
                };
                out.iter_mut().for_each(|o| *o /= d);
            }
        }
    }
}

#[derive(Deserialize)]
struct ModelConfig {
    hidden_size: usize,
    num_hidden_layers: Option<usize>,
}

/// What a sentence encoder's configuration says its model is: enough to tell
/// all-MiniLM-L6-v2 (6 layers, mean pooling) from bge-small-en-v1.5 (12 layers, CLS) whatever
/// their folders are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Architecture {
    /// `num_hidden_layers` in `config.json`, when given.
    pub layers: Option<usize>,
    pub hidden: usize,
    pub pooling: Pooling,
    pub normalize: bool,
}

impl std::fmt::Display for Architecture {
    /// `6 layers, 384 wide, mean pooling, normalised`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.layers {
            Some(n) => write!(f, "{n} layers, ")?,
            None => write!(f, "unknown layers, ")?,
        }
        let pooling = match self.pooling {
            Pooling::Cls => "CLS",
            Pooling::Mean => "mean",
            Pooling::Max => "max",
            Pooling::MeanSqrtLen => "mean-sqrt-len",
        };
        let normalised = if self.normalize {
            "normalised"
        } else {
            "not normalised"
        };
        write!(f, "{} wide, {pooling} pooling, {normalised}", self.hidden)
    }
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PoolingConfig {
    word_embedding_dimension: Option<usize>,
    pooling_mode_cls_token: bool,
    pooling_mode_mean_tokens: bool,
    pooling_mode_max_tokens: bool,
    pooling_mode_mean_sqrt_len_tokens: bool,
}

pub(crate) struct EncoderConfig {
    pub layers: Option<usize>,
    pub hidden_size: usize,
    pub max_seq_length: usize,
    pub pooling: Pooling,
    pub normalize: bool,
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str, file: String) -> Result<T, EncoderError> {
    serde_json::from_str(text).map_err(|e| {
        EncoderError::new(
            file,
            EncoderErrorKind::Config {
                message: e.to_string(),
            },
        )
    })
}

impl EncoderConfig {
    pub(crate) fn parse(
        files: &EncoderFiles<'_>,
        at: &dyn Fn(&str) -> String,
    ) -> Result<Self, EncoderError> {
        let model: ModelConfig = parse(files.config_json, at("config.json"))?;
        let sbert: SentenceBertConfig = parse(
            files.sentence_bert_config_json,
            at("sentence_bert_config.json"),
        )?;
        let modules: Vec<Module> = parse(files.modules_json, at("modules.json"))?;
        let pool: PoolingConfig = parse(files.pooling_config_json, at("1_Pooling/config.json"))?;
        let modes = [
            (pool.pooling_mode_cls_token, Pooling::Cls),
            (pool.pooling_mode_mean_tokens, Pooling::Mean),
            (pool.pooling_mode_max_tokens, Pooling::Max),
            (pool.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
        ];
        let chosen: Vec<Pooling> = modes.iter().filter(|m| m.0).map(|m| m.1).collect();
        let [pooling] = chosen[..] else {
            return Err(EncoderError::new(
                at("1_Pooling/config.json"),
                EncoderErrorKind::Config {
                    message: format!("expected exactly one pooling mode, found {}", chosen.len()),
                },
            ));
        };
        if let Some(d) = pool.word_embedding_dimension
            && d != model.hidden_size
        {
            return Err(EncoderError::new(
                at("1_Pooling/config.json"),
                EncoderErrorKind::Config {
                    message: format!(
                        "word_embedding_dimension {d} differs from config.json hidden_size {}",
                        model.hidden_size
                    ),
                },
            ));
        }
        if sbert.max_seq_length == 0 {
            return Err(EncoderError::new(
                at("sentence_bert_config.json"),
                EncoderErrorKind::Config {
                    message: "max_seq_length is 0".into(),
                },
            ));
        }
        let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        Ok(EncoderConfig {
            layers: model.num_hidden_layers,
            hidden_size: model.hidden_size,
            max_seq_length: sbert.max_seq_length,
            pooling,
            normalize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes() {
        let t = [1.0f32, -2.0, 3.0, 4.0];
        let mut out = [0f32; 2];
        Pooling::Cls.pool(&t, 2, &mut out);
        assert_eq!(out, [1.0, -2.0]);
        Pooling::Mean.pool(&t, 2, &mut out);
        assert_eq!(out, [2.0, 1.0]);
        Pooling::Max.pool(&t, 2, &mut out);
        assert_eq!(out, [3.0, 4.0]);
        Pooling::MeanSqrtLen.pool(&t, 2, &mut out);
        assert_eq!(out, [4.0 / 2f32.sqrt(), 2.0 / 2f32.sqrt()]);
    }
}
