//! Fine-tunes a BERT-family sentence encoder for go_emotions with low-rank adapters.
//!
//! The encoder's own ONNX weights (dequantised by `emotions_runtime::encoder_weights`) are
//! frozen; every projection `x·W + b` gains `x·Aᵀ·Bᵀ·(alpha/r)` with `A` and `B` trained (LoRA),
//! jointly with a linear head over the mean-pooled, L2-normalised sentence embedding. Training
//! uses candle's autograd on the CPU. The result is an [`LoraAdapter`] that the runtime merges
//! into the weights at load, and a card-format head ([`emotions_train::Dense`]).
//!
//! Frozen projections run as a custom op whose backward pass computes only the input's
//! gradient: candle's `matmul` would also compute the frozen weight's, a third more work.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use emotions_adapter::{LoraAdapter, LowRankDelta};
use emotions_runtime::NamedTensor;
use emotions_train::Dense;
pub use emotions_train::SplitMix64;
use std::collections::HashMap;

/// Everything fine-tuning can report.
#[derive(Debug, thiserror::Error)]
pub enum FineTuneError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Runtime(#[from] emotions_runtime::RuntimeError),
    /// The encoder file lacks a weight a BERT encoder needs, or has it in another shape.
    #[error("encoder weights: {0}")]
    Weights(String),
    #[error("{0}")]
    Options(String),
}

type Result<T> = std::result::Result<T, FineTuneError>;

/// Hyper-parameters. Validated by [`FineTuneOptions::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct FineTuneOptions {
    /// LoRA rank `r`.
    pub rank: usize,
    /// LoRA `alpha`: the update is scaled by `alpha / r`.
    pub alpha: f64,
    /// Peak learning rate of the adapters (AdamW), after a linear warm-up, then linear decay.
    pub learning_rate: f64,
    /// Peak learning rate of the head.
    pub head_learning_rate: f64,
    pub weight_decay: f64,
    pub epochs: usize,
    pub warmup_steps: usize,
    /// Texts per step (batches are formed among texts of similar length).
    pub batch_size: usize,
    pub seed: u64,
    /// How the learning rate falls after the warm-up.
    pub schedule: Schedule,
    /// Dropout while training, where BERT has it: the embeddings, the attention
    /// probabilities, and each block's output before its residual sum. 0 turns it off.
    pub dropout: f64,
    /// Decay of an exponential moving average of the trained weights, which is what is
    /// scored on dev and saved. 0 turns it off (the last step's weights are used).
    pub ema: f64,
}

/// The learning rate after the warm-up, as a fraction of the peak, falling to 0 at the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Linear,
    /// Half a cosine period.
    Cosine,
}

impl Schedule {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "linear" => Some(Schedule::Linear),
            "cosine" => Some(Schedule::Cosine),
            _ => None,
        }
    }

    /// The factor at `progress` in [0, 1] of the steps after the warm-up.
    pub fn factor(self, progress: f64) -> f64 {
        let p = progress.clamp(0.0, 1.0);
        match self {
            Schedule::Linear => 1.0 - p,
            Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
        }
    }
}

impl Default for FineTuneOptions {
    fn default() -> Self {
        FineTuneOptions {
            rank: 8,
            alpha: 16.0,
            learning_rate: 1e-3,
            head_learning_rate: 3e-3,
            weight_decay: 0.0,
            epochs: 3,
            warmup_steps: 100,
            batch_size: 32,
            seed: 20261128,
            schedule: Schedule::Linear,
            dropout: 0.0,
            ema: 0.0,
        }
    }
}

impl FineTuneOptions {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(FineTuneError::Options(m.to_string()));
        if self.rank == 0 || self.rank > 256 {
            return bad("rank must be in 1..=256");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad("alpha must be a positive number");
        }
        for lr in [self.learning_rate, self.head_learning_rate] {
            if !(lr.is_finite() && lr > 0.0) {
                return bad("learning rates must be positive numbers");
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight decay must be ≥ 0");
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch size must be ≥ 1");
        }
        if !(0.0..0.9).contains(&self.dropout) {
            return bad("dropout must be in [0, 0.9)");
        }
        if !(0.0..1.0).contains(&self.ema) {
            return bad("the EMA decay must be in [0, 1)");
        }
        Ok(())
    }
}

/// The f32 values a custom op's input holds, which must be contiguous.
fn contiguous_f32<'s>(
    storage: &'s CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'s [f32]> {
    let CpuStorage::F32(x) = storage else {
        candle_core::bail!("{op}: f32 only")
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&x[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// `x·W` for a frozen `W`: backward gives the gradient of `x` only.
struct FrozenMatmul {
    w: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "frozen-matmul")?;
        let (rows, k) = layout.shape().dims2()?;
        let out = Tensor::from_slice(x, (rows, k), &Device::Cpu)?.matmul(&self.w)?;
        let n = out.dim(1)?;
        Ok((
            CpuStorage::F32(out.flatten_all()?.to_vec1()?),
            Shape::from((rows, n)),
        ))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.w.t()?)?))
    }
}

/// Softmax over the last dimension, with a backward pass (candle-nn's has none).
struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "softmax-last-dim-with-grad"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "softmax")?;
        let d = layout.shape().dims().last().copied().unwrap_or(1);
        let mut out = x.to_vec();
        for row in out.chunks_exact_mut(d) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                *v /= sum;
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(candle_core::D::Minus1)?;
        Ok(Some((res * grad_res.broadcast_sub(&dot)?)?))
    }
}

fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(SoftmaxLastDim)
}

/// One projection: frozen `W [in, out]` and `b`, and its adapter.
struct Projection {
    target: String,
    w: Tensor,
    b: Tensor,
    lora_a: Var,
    lora_b: Var,
    scale: f64,
}

impl Projection {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let frozen = x
            .contiguous()?
            .apply_op1(FrozenMatmul { w: self.w.clone() })?
            .broadcast_add(&self.b)?;
        let low = x
            .matmul(&self.lora_a.as_tensor().t()?)?
            .matmul(&self.lora_b.as_tensor().t()?)?;
        frozen + (low * self.scale)?
    }

    fn delta(&self) -> Result<LowRankDelta> {
        let a = self.lora_a.as_tensor();
        let (rank, inputs) = a.dims2()?;
        let b = (self.lora_b.as_tensor() * self.scale)?;
        let outputs = b.dim(0)?;
        Ok(LowRankDelta {
            target: self.target.clone(),
            rank,
            inputs,
            outputs,
            a: a.flatten_all()?.to_vec1()?,
            b: b.flatten_all()?.to_vec1()?,
        })
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let d = x.dim(candle_core::D::Minus1)? as f64;
        let mean = (x.sum_keepdim(candle_core::D::Minus1)? / d)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = (centred.sqr()?.sum_keepdim(candle_core::D::Minus1)? / d)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

struct Layer {
    query: Projection,
    key: Projection,
    value: Projection,
    attention_output: Projection,
    attention_norm: LayerNorm,
    intermediate: Projection,
    output: Projection,
    output_norm: LayerNorm,
}

/// Training-time dropout with its own seeded generator (candle's CPU `rand` cannot be
/// seeded, and runs must repeat).
pub struct Dropout {
    p: f64,
    rng: SplitMix64,
}

impl Dropout {
    pub fn new(p: f64, seed: u64) -> Self {
        Dropout {
            p,
            rng: SplitMix64::new(seed),
        }
    }

    /// `x` with each element zeroed with probability `p` and the rest scaled by `1/(1−p)`.
    fn apply(&mut self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep = (1.0 / (1.0 - self.p)) as f32;
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if self.rng.next_f64() < self.p {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        x * Tensor::from_vec(mask, x.shape(), x.device())?
    }
}

/// A BERT encoder with LoRA on every projection, and a linear head, as candle tensors.
pub struct LoraBert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_weight: Var,
    head_bias: Var,
}

impl LoraBert {
    /// Builds the model from an encoder's weights (`emotions_runtime::encoder_weights`):
    /// `heads` attention heads, `labels` outputs, adapters of `options.rank` initialised as
    /// PEFT does (`A` uniform in ±1/√in, `B` zero, so training starts from the encoder as is).
    pub fn new(
        weights: Vec<NamedTensor>,
        heads: usize,
        labels: usize,
        label_priors: &[f64],
        options: &FineTuneOptions,
    ) -> Result<Self> {
        let mut by_name: HashMap<String, NamedTensor> =
            weights.into_iter().map(|t| (t.name.clone(), t)).collect();
        // The exporter's prefix (`inner.`, `bert.`, or none), from the word embeddings' name.
        let prefix = by_name
            .keys()
            .find_map(|n| n.strip_suffix("embeddings.word_embeddings.weight"))
            .map(str::to_string)
            .ok_or_else(|| FineTuneError::Weights("no embeddings.word_embeddings.weight".into()))?;
        let layer_count = (0..)
            .take_while(|i| {
                by_name.contains_key(&format!(
                    "{prefix}encoder.layer.{i}.attention.self.query.weight"
                ))
            })
            .count();
        let mut take = |name: &str| -> Result<Tensor> {
            let full = format!("{prefix}{name}");
            let t = by_name
                .remove(&full)
                .ok_or_else(|| FineTuneError::Weights(format!("missing {full}")))?;
            Ok(Tensor::from_vec(t.data, t.shape, &Device::Cpu)?)
        };
        let norm =
            |take: &mut dyn FnMut(&str) -> Result<Tensor>, stem: &str| -> Result<LayerNorm> {
                Ok(LayerNorm {
                    weight: take(&format!("{stem}.weight"))?,
                    bias: take(&format!("{stem}.bias"))?,
                    eps: 1e-12,
                })
            };
        let word = take("embeddings.word_embeddings.weight")?;
        let position = take("embeddings.position_embeddings.weight")?;
        let token_type = take("embeddings.token_type_embeddings.weight")?;
        let embedding_norm = norm(&mut take, "embeddings.LayerNorm")?;
        let hidden = word.dim(1)?;
        let mut rng = SplitMix64::new(options.seed);
        let scale = options.alpha / options.rank as f64;
        let mut projection =
            |take: &mut dyn FnMut(&str) -> Result<Tensor>, stem: String| -> Result<Projection> {
                let w = take(&format!("{stem}.weight"))?;
                let b = take(&format!("{stem}.bias"))?;
                let (inputs, outputs) = w.dims2()?;
                let bound = 1.0 / (inputs as f64).sqrt();
                let a: Vec<f32> = (0..options.rank * inputs)
                    .map(|_| rng.uniform(bound))
                    .collect();
                Ok(Projection {
                    target: stem,
                    w,
                    b,
                    lora_a: Var::from_tensor(&Tensor::from_vec(
                        a,
                        (options.rank, inputs),
                        &Device::Cpu,
                    )?)?,
                    lora_b: Var::zeros((outputs, options.rank), DType::F32, &Device::Cpu)?,
                    scale,
                })
            };
        let mut layers = Vec::new();
        for i in 0..layer_count {
            let stem = format!("encoder.layer.{i}");
            layers.push(Layer {
                query: projection(&mut take, format!("{stem}.attention.self.query"))?,
                key: projection(&mut take, format!("{stem}.attention.self.key"))?,
                value: projection(&mut take, format!("{stem}.attention.self.value"))?,
                attention_output: projection(&mut take, format!("{stem}.attention.output.dense"))?,
                attention_norm: norm(&mut take, &format!("{stem}.attention.output.LayerNorm"))?,
                intermediate: projection(&mut take, format!("{stem}.intermediate.dense"))?,
                output: projection(&mut take, format!("{stem}.output.dense"))?,
                output_norm: norm(&mut take, &format!("{stem}.output.LayerNorm"))?,
            });
        }
        if layers.is_empty() {
            return Err(FineTuneError::Weights(format!(
                "no {prefix}encoder.layer.0.attention.self.query projection"
            )));
        }
        if hidden % heads != 0 {
            return Err(FineTuneError::Weights(format!(
                "hidden size {hidden} is not a multiple of {heads} heads"
            )));
        }
        let bias: Vec<f32> = label_priors
            .iter()
            .map(|&p| {
                let p = p.clamp(1e-4, 1.0 - 1e-4);
                (p / (1.0 - p)).ln() as f32
            })
            .collect();
        if bias.len() != labels {
            return Err(FineTuneError::Options(format!(
                "{} label priors for {labels} labels",
                bias.len()
            )));
        }
        Ok(LoraBert {
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            heads,
            head_weight: Var::zeros((hidden, labels), DType::F32, &Device::Cpu)?,
            head_bias: Var::from_tensor(&Tensor::from_vec(bias, labels, &Device::Cpu)?)?,
        })
    }

    /// Every trained variable: the adapters', then the head's.
    fn trained_vars(&self) -> Vec<Var> {
        let mut vars = self.adapter_vars();
        vars.extend([self.head_weight.clone(), self.head_bias.clone()]);
        vars
    }

    /// The adapters' variables.
    fn adapter_vars(&self) -> Vec<Var> {
        self.projections()
            .flat_map(|p| [p.lora_a.clone(), p.lora_b.clone()])
            .collect()
    }

    fn projections(&self) -> impl Iterator<Item = &Projection> {
        self.layers.iter().flat_map(|l| {
            [
                &l.query,
                &l.key,
                &l.value,
                &l.attention_output,
                &l.intermediate,
                &l.output,
            ]
        })
    }

    /// The L2-normalised mean-pooled embeddings of a padded batch: `ids` and `mask` are
    /// `[batch, len]` (u32 and f32).
    pub fn embed(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        self.embed_with(ids, mask, None)
    }

    /// [`LoraBert::embed`], with dropout when training.
    pub fn embed_with(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        mut dropout: Option<&mut Dropout>,
    ) -> candle_core::Result<Tensor> {
        let mut drop = |t: Tensor| match dropout.as_deref_mut() {
            Some(d) => d.apply(&t),
            None => Ok(t),
        };
        let (batch, len) = ids.dims2()?;
        let hidden = self.word.dim(1)?;
        let words = self.word.index_select(&ids.flatten_all()?, 0)?;
        let positions = self.position.narrow(0, 0, len)?;
        let x = words
            .reshape((batch, len, hidden))?
            .broadcast_add(&positions)?
            .broadcast_add(&self.token_type.narrow(0, 0, 1)?)?;
        let mut x = drop(
            self.embedding_norm
                .forward(&x)?
                .reshape((batch * len, hidden))?,
        )?;
        let (heads, head_dim) = (self.heads, hidden / self.heads);
        // 0 where a token is kept, a large negative number where it is padding.
        let mask_bias = ((mask - 1.0)? * 1e9)?.reshape((batch, 1, 1, len))?;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((batch, len, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        for layer in &self.layers {
            let q = (split(layer.query.forward(&x)?)? * (1.0 / (head_dim as f64).sqrt()))?;
            let k = split(layer.key.forward(&x)?)?;
            let v = split(layer.value.forward(&x)?)?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&mask_bias)?;
            let p = drop(softmax_last_dim(&scores)?)?;
            let ctx = p
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((batch * len, hidden))?;
            let attended = (&x + drop(layer.attention_output.forward(&ctx)?)?)?;
            x = layer.attention_norm.forward(&attended)?;
            let up = layer.intermediate.forward(&x)?.gelu_erf()?;
            let out = (&x + drop(layer.output.forward(&up)?)?)?;
            x = layer.output_norm.forward(&out)?;
        }
        let x = x.reshape((batch, len, hidden))?;
        let m = mask.reshape((batch, len, 1))?;
        let pooled = x.broadcast_mul(&m)?.sum(1)?.broadcast_div(&m.sum(1)?)?;
        let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?;
        pooled.broadcast_div(&norm)
    }

    /// The head's logits for embeddings `[batch, hidden]`.
    pub fn logits(&self, embeddings: &Tensor) -> candle_core::Result<Tensor> {
        embeddings
            .matmul(self.head_weight.as_tensor())?
            .broadcast_add(self.head_bias.as_tensor())
    }

    /// The adapter as the runtime reads it.
    pub fn adapter(
        &self,
        metadata: std::collections::BTreeMap<String, String>,
    ) -> Result<LoraAdapter> {
        Ok(LoraAdapter {
            deltas: self
                .projections()
                .map(Projection::delta)
                .collect::<Result<_>>()?,
            metadata,
        })
    }

    /// The head as the ONNX writer takes it.
    pub fn head(&self) -> Result<Dense> {
        let w = self.head_weight.as_tensor();
        let (inputs, outputs) = w.dims2()?;
        Ok(Dense {
            inputs,
            outputs,
            weights: w.flatten_all()?.to_vec1()?,
            bias: self.head_bias.as_tensor().to_vec1()?,
        })
    }
}

/// Mean binary cross-entropy of `logits` against 0/1 `targets`, computed stably:
/// `max(x, 0) − x·y + log(1 + e^−|x|)`.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let loss = ((logits.relu()? - (logits * targets)?)? + softplus_neg_abs)?;
    loss.mean_all()
}

/// Token ids of one text, with special tokens.
pub type TokenIds = Vec<u32>;

/// Padded `[batch, len]` ids and mask for the texts `rows` of `ids`.
pub fn pad_batch(ids: &[TokenIds], rows: &[usize]) -> candle_core::Result<(Tensor, Tensor)> {
    let len = rows.iter().map(|&r| ids[r].len()).max().unwrap_or(1).max(1);
    let mut flat = vec![0u32; rows.len() * len];
    let mut mask = vec![0f32; rows.len() * len];
    for (b, &r) in rows.iter().enumerate() {
        for (t, &id) in ids[r].iter().enumerate() {
            flat[b * len + t] = id;
            mask[b * len + t] = 1.0;
        }
    }
    Ok((
        Tensor::from_vec(flat, (rows.len(), len), &Device::Cpu)?,
        Tensor::from_vec(mask, (rows.len(), len), &Device::Cpu)?,
    ))
}

/// Batches of similar length: rows sorted by length, cut into `batch_size` runs.
pub fn length_batches(ids: &[TokenIds], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&r| (ids[r].len(), r));
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// What one epoch did.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: usize,
    pub mean_loss: f64,
    pub seconds: f64,
}

/// Trains the model in place.
pub struct Trainer {
    pub model: LoraBert,
    adapter_opt: AdamW,
    head_opt: AdamW,
    options: FineTuneOptions,
    step: usize,
    total_steps: usize,
    dropout: Dropout,
    /// Every trained variable with its moving average, when `options.ema` > 0.
    averages: Vec<(Var, Tensor)>,
}

impl Trainer {
    pub fn new(model: LoraBert, options: FineTuneOptions, train_rows: usize) -> Result<Self> {
        options.validate()?;
        let adapter_opt = AdamW::new(
            model.adapter_vars(),
            ParamsAdamW {
                lr: options.learning_rate,
                weight_decay: options.weight_decay,
                ..Default::default()
            },
        )?;
        let head_opt = AdamW::new(
            vec![model.head_weight.clone(), model.head_bias.clone()],
            ParamsAdamW {
                lr: options.head_learning_rate,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let steps_per_epoch = train_rows.div_ceil(options.batch_size);
        let averages = if options.ema > 0.0 {
            model
                .trained_vars()
                .into_iter()
                .map(|v| {
                    let t = v.as_tensor().detach().copy()?;
                    Ok((v, t))
                })
                .collect::<candle_core::Result<_>>()?
        } else {
            Vec::new()
        };
        Ok(Trainer {
            model,
            adapter_opt,
            head_opt,
            total_steps: steps_per_epoch * options.epochs,
            dropout: Dropout::new(options.dropout, options.seed ^ 0xd50b_0a7c),
            options,
            step: 0,
            averages,
        })
    }

    /// Moves each average towards its variable: `a ← d·a + (1−d)·v`, with `d` ramped up over
    /// the first steps as TensorFlow's `ExponentialMovingAverage` does, so early weights fade.
    fn update_averages(&mut self) -> candle_core::Result<()> {
        let s = self.step as f64;
        let d = self.options.ema.min((1.0 + s) / (10.0 + s));
        for (v, a) in &mut self.averages {
            // Detached: an average built from a variable would otherwise record the op, and
            // each step's average would keep every earlier one alive (24 GB by epoch 3).
            *a = ((&*a * d)? + (v.as_tensor().detach() * (1.0 - d))?)?.detach();
        }
        Ok(())
    }

    /// Whether every average is a plain tensor, holding no record of the steps behind it.
    pub fn averages_are_detached(&self) -> bool {
        self.averages.iter().all(|(_, a)| !a.track_op())
    }

    /// Runs `f` with the averaged weights in the model (the trained ones when there is no
    /// average), then puts the trained ones back.
    pub fn with_averaged_weights<R, E: From<candle_core::Error>>(
        &self,
        f: impl FnOnce(&Self) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        let trained: Vec<Tensor> = self
            .averages
            .iter()
            .map(|(v, a)| {
                let t = v.as_tensor().copy()?;
                v.set(a)?;
                Ok(t)
            })
            .collect::<candle_core::Result<_>>()?;
        let out = f(self);
        for ((v, _), t) in self.averages.iter().zip(&trained) {
            v.set(t)?;
        }
        out
    }

    /// Linear warm-up, then the schedule's fall to zero at the last step.
    fn lr_factor(&self) -> f64 {
        let (s, w, t) = (
            self.step as f64,
            self.options.warmup_steps as f64,
            self.total_steps as f64,
        );
        if s < w {
            (s + 1.0) / w
        } else {
            self.options.schedule.factor((s - w) / (t - w).max(1.0))
        }
    }

    /// One pass over the training rows in a shuffled order of length batches; `progress` is
    /// called after each step with (step in epoch, steps in epoch, loss).
    pub fn epoch(
        &mut self,
        epoch: usize,
        ids: &[TokenIds],
        targets: &[f32],
        labels: usize,
        progress: &mut dyn FnMut(usize, usize, f64),
    ) -> Result<EpochReport> {
        let started = std::time::Instant::now();
        let mut batches = length_batches(ids, self.options.batch_size);
        let mut rng = SplitMix64::new(self.options.seed ^ (epoch as u64).wrapping_mul(0x9e37));
        rng.shuffle(&mut batches);
        let mut loss_sum = 0.0;
        let steps = batches.len();
        for (i, rows) in batches.iter().enumerate() {
            let (tok, mask) = pad_batch(ids, rows)?;
            let y: Vec<f32> = rows
                .iter()
                .flat_map(|&r| targets[r * labels..(r + 1) * labels].iter().copied())
                .collect();
            let y = Tensor::from_vec(y, (rows.len(), labels), &Device::Cpu)?;
            let emb = self
                .model
                .embed_with(&tok, &mask, Some(&mut self.dropout))?;
            let loss = bce_with_logits(&self.model.logits(&emb)?, &y)?;
            let grads = loss.backward()?;
            let f = self.lr_factor();
            self.adapter_opt
                .set_learning_rate(self.options.learning_rate * f);
            self.head_opt
                .set_learning_rate(self.options.head_learning_rate * f);
            self.adapter_opt.step(&grads)?;
            self.head_opt.step(&grads)?;
            self.step += 1;
            self.update_averages()?;
            let l = f64::from(loss.to_scalar::<f32>()?);
            loss_sum += l;
            progress(i + 1, steps, l);
        }
        Ok(EpochReport {
            epoch,
            mean_loss: loss_sum / steps.max(1) as f64,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Sigmoid scores `[rows, labels]` of texts, in row order, without gradients.
    pub fn scores(&self, ids: &[TokenIds], batch_size: usize) -> Result<Vec<f32>> {
        let labels = self.model.head_bias.as_tensor().dim(0)?;
        let mut out = vec![0f32; ids.len() * labels];
        for rows in length_batches(ids, batch_size) {
            let (tok, mask) = pad_batch(ids, &rows)?;
            let emb = self.model.embed(&tok, &mask)?.detach();
            let s = candle_nn::ops::sigmoid(&self.model.logits(&emb)?)?.to_vec2::<f32>()?;
            for (r, row) in rows.iter().zip(s) {
                out[r * labels..(r + 1) * labels].copy_from_slice(&row);
            }
        }
        Ok(out)
    }

    /// Embeddings `[rows, hidden]` of texts, in row order, without gradients.
    pub fn embeddings(&self, ids: &[TokenIds], batch_size: usize) -> Result<Vec<f32>> {
        let hidden = self.model.word.dim(1)?;
        let mut out = vec![0f32; ids.len() * hidden];
        for rows in length_batches(ids, batch_size) {
            let (tok, mask) = pad_batch(ids, &rows)?;
            let e = self.model.embed(&tok, &mask)?.to_vec2::<f32>()?;
            for (r, row) in rows.iter().zip(e) {
                out[r * hidden..(r + 1) * hidden].copy_from_slice(&row);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(values: Vec<f32>, shape: (usize, usize)) -> Var {
        Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// `ours(x)` and `theirs(x)` agree in value and in the gradient of a weighted sum.
    fn same_values_and_gradients(
        x: &Var,
        weights: &Tensor,
        ours: Tensor,
        theirs: Tensor,
        tolerance: f32,
    ) {
        assert!(max_diff(&ours, &theirs) < 1e-6);
        let g_ours = (ours * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_theirs = (theirs * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (a, b) = (
            g_ours.get(x.as_tensor()).unwrap(),
            g_theirs.get(x.as_tensor()).unwrap(),
        );
        assert!(max_diff(a, b) < tolerance);
    }

    #[test]
    fn custom_ops_give_candles_own_values_and_gradients() {
        let cpu = &Device::Cpu;
        let x = var(
            (0..12).map(|i| (i as f32 * 0.7).sin() * 3.0).collect(),
            (3, 4),
        );
        let w =
            Tensor::from_vec((0..8).map(|i| i as f32 * 0.1 - 0.3).collect(), (4, 2), cpu).unwrap();
        let weights = Tensor::from_vec(vec![1f32, -2., 0.5, 3., 1., -1.], (3, 2), cpu).unwrap();
        let frozen = x
            .as_tensor()
            .apply_op1(FrozenMatmul { w: w.clone() })
            .unwrap();
        let plain = x.as_tensor().matmul(&w).unwrap();
        same_values_and_gradients(&x, &weights, frozen, plain, 1e-6);

        let weights =
            Tensor::from_vec((0..12).map(|i| (i % 5) as f32 - 2.0).collect(), (3, 4), cpu).unwrap();
        let ours = softmax_last_dim(x.as_tensor()).unwrap();
        let theirs = candle_nn::ops::softmax(x.as_tensor(), 1).unwrap();
        same_values_and_gradients(&x, &weights, ours, theirs, 1e-5);
    }

    #[test]
    fn bce_is_stable_and_matches_its_definition() {
        let z = Tensor::from_vec(
            vec![-50f32, -1.0, 0.0, 2.0, 60.0, 0.5],
            (2, 3),
            &Device::Cpu,
        )
        .unwrap();
        let y =
            Tensor::from_vec(vec![0f32, 1.0, 0.0, 1.0, 0.0, 1.0], (2, 3), &Device::Cpu).unwrap();
        let got = bce_with_logits(&z, &y).unwrap().to_scalar::<f32>().unwrap();
        // Naively in f64 where that is exact enough; z = 60 with y = 0 costs 60 + e^-60.
        let naive = |z: f64, y: f64| {
            let p = 1.0 / (1.0 + (-z).exp());
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        };
        let want = (naive(-50.0, 0.0)
            + naive(-1.0, 1.0)
            + naive(0.0, 0.0)
            + naive(2.0, 1.0)
            + 60.0
            + naive(0.5, 1.0))
            / 6.0;
        assert!((f64::from(got) - want).abs() < 1e-4, "{got} vs {want}");
    }

    #[test]
    fn schedules_fall_from_one_to_zero() {
        for schedule in [Schedule::Linear, Schedule::Cosine] {
            assert_eq!(schedule.factor(0.0), 1.0);
            assert!(schedule.factor(1.0).abs() < 1e-12);
            assert!((schedule.factor(0.5) - 0.5).abs() < 1e-12, "{schedule:?}");
            let xs: Vec<f64> = (0..=20).map(|i| schedule.factor(i as f64 / 20.0)).collect();
            assert!(xs.windows(2).all(|w| w[1] < w[0]), "{schedule:?}: {xs:?}");
        }
        // Cosine stays higher early and lower late.
        assert!(Schedule::Cosine.factor(0.25) > Schedule::Linear.factor(0.25));
        assert!(Schedule::Cosine.factor(0.75) < Schedule::Linear.factor(0.75));
        assert_eq!(Schedule::from_name("cosine"), Some(Schedule::Cosine));
        assert_eq!(Schedule::from_name("step"), None);
    }

    #[test]
    fn dropout_repeats_with_its_seed_and_keeps_the_mean() {
        let x = Tensor::ones((100, 100), DType::F32, &Device::Cpu).unwrap();
        let a = Dropout::new(0.1, 7).apply(&x).unwrap();
        let b = Dropout::new(0.1, 7).apply(&x).unwrap();
        assert_eq!(max_diff(&a, &b), 0.0);
        let values = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let zeros = values.iter().filter(|v| **v == 0.0).count();
        assert!(
            (800..1200).contains(&zeros),
            "{zeros} of 10,000 dropped at p = 0.1"
        );
        let kept = 1.0 / 0.9;
        assert!(values.iter().all(|v| *v == 0.0 || (*v - kept).abs() < 1e-6));
        assert_eq!(max_diff(&Dropout::new(0.0, 7).apply(&x).unwrap(), &x), 0.0);
    }

    #[test]
    fn options_out_of_range_are_refused() {
        for bad in [
            FineTuneOptions {
                dropout: 0.95,
                ..Default::default()
            },
            FineTuneOptions {
                ema: 1.0,
                ..Default::default()
            },
            FineTuneOptions {
                ema: -0.1,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn batches_cover_every_row_once_sorted_by_length() {
        let ids: Vec<TokenIds> = [5, 1, 3, 3, 9, 2, 7].iter().map(|&n| vec![1; n]).collect();
        let batches = length_batches(&ids, 3);
        let mut seen: Vec<usize> = batches.concat();
        let lens: Vec<usize> = seen.iter().map(|&r| ids[r].len()).collect();
        assert!(lens.windows(2).all(|w| w[0] <= w[1]), "{lens:?}");
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        let (tok, mask) = pad_batch(&ids, &batches[2]).unwrap();
        assert_eq!(tok.dims(), &[1, 9]);
        assert_eq!(mask.sum_all().unwrap().to_scalar::<f32>().unwrap(), 9.0);
    }
}
