//! A BERT-family sentence encoder: `tokenizers` for the text, tract for the ONNX graph, then
//! pooling as sentence-transformers does.
//!
//! It reads the usual sentence-transformers folder: `model.onnx` (or `onnx/model.onnx`),
//! `tokenizer.json`, `config.json`, `sentence_bert_config.json` (`max_seq_length`),
//! `modules.json` (Normalize or not) and `1_Pooling/config.json` (CLS, mean, max or
//! mean-sqrt-len pooling).
//!
//! Speed, measured on all-MiniLM-L6-v2 int8 (see the README):
//! - constant dequantisation (int8 `Cast` → `Mul` by a scale) is folded into f32 weights once at
//!   load, instead of on every run;
//! - texts are sorted by token count and batched, and each batch is padded only to a length
//!   bucket, never to the longest text of the whole input;
//! - a plan is optimised per concrete `(batch, sequence bucket)` shape and cached.
//!
//! ```no_run
//! let encoder = emotions_encoder::Encoder::from_dir("models/minilm")?;
//! let embeddings = encoder.embed(&["I love this", "so sad"])?;
//! assert_eq!(embeddings.len(), 2 * encoder.dim());
//! # Ok::<(), emotions_encoder::EncoderError>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;

mod attention;
mod config;
mod fold;
mod gelu;
mod linear;
mod pattern;
mod softmax;
pub use config::Pooling;

/// Everything that can go wrong loading or running an encoder.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("{dir}: encoder folder is missing {file}")]
    MissingFile { dir: String, file: String },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    #[error("{file}: cannot load the tokenizer: {message}")]
    Tokenizer { file: String, message: String },
    #[error("cannot tokenize text {index}: {message}")]
    Tokenize { index: usize, message: String },
    #[error("{origin}: the ONNX graph is not a BERT-style encoder: {message}")]
    Signature { origin: String, message: String },
    #[error("{origin}: tract could not {stage} the encoder: {message}")]
    Tract {
        origin: String,
        stage: &'static str,
        message: String,
    },
}

fn tract_err(origin: &str, stage: &'static str, e: impl std::fmt::Display) -> EncoderError {
    EncoderError::Tract {
        origin: origin.to_string(),
        stage,
        message: format!("{e:#}"),
    }
}

/// The encoder's files in memory, for encoders compiled into a binary.
#[derive(Clone, Copy)]
pub struct EncoderFiles<'a> {
    /// Shown in errors and reports, e.g. `"all-MiniLM-L6-v2 (embedded)"`.
    pub name: &'a str,
    pub model_onnx: &'a [u8],
    pub tokenizer_json: &'a [u8],
    pub config_json: &'a str,
    pub sentence_bert_config_json: &'a str,
    pub modules_json: &'a str,
    pub pooling_config_json: &'a str,
}

/// Tunables with defaults that suit a 2-core machine.
#[derive(Debug, Clone, Copy)]
pub struct EncoderOptions {
    /// Texts per forward pass (after sorting by length).
    pub batch_size: usize,
    /// Which shapes get their own optimised plan.
    pub plans: PlanShapes,
    /// Batches run at once, each on its own thread with a single-threaded tract. Results do not
    /// depend on it.
    pub workers: usize,
}

/// How many parts of the encoder graph run on this crate's fused ops rather than tract's
/// generic ones. An encoder whose graph the rewrites do not recognise still runs, more slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GraphRewrites {
    /// Exact GELU chains turned into one pass.
    pub gelu: usize,
    /// Self-attention blocks (scores, mask, softmax, values) turned into one op.
    pub attention: usize,
    /// Matmuls by constant weights (with their bias and residual adds) whose weights are packed
    /// once at load.
    pub linear: usize,
}

/// Which shapes get their own optimised plan. The projections (weights packed once at load) and
/// attention are shape-free ops of this crate, so a symbolic plan runs as fast as a concrete
/// one and pads nothing; buckets remain for graphs those rewrites do not match, where tract's
/// own matmuls are much faster with concrete shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanShapes {
    /// One plan per (batch size, sequence bucket), texts padded up to the bucket.
    Buckets,
    /// One plan for every shape, batch and sequence left symbolic, texts padded to the longest
    /// of their batch only.
    Symbolic,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            batch_size: 32,
            plans: PlanShapes::Symbolic,
            workers: 1,
        }
    }
}

/// Sequence lengths plans are made for; a batch is padded up to the next one. Short texts
/// dominate go_emotions, so the small buckets are fine-grained.
const SEQUENCE_BUCKETS: [usize; 24] = [
    8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 80, 96, 128, 160, 192, 224, 256,
    384, 512,
];

/// A sentence encoder. `Send + Sync`; plans are cached per shape and shared.
pub struct Encoder {
    name: String,
    tokenizer: tokenizers::Tokenizer,
    max_seq_length: usize,
    pooling: Pooling,
    normalize: bool,
    dim: usize,
    options: EncoderOptions,
    inputs: InputLayout,
    /// Decluttered, dequantisation folded, with symbolic batch and sequence.
    base: TypedModel,
    batch_sym: Symbol,
    seq_sym: Symbol,
    plans: Mutex<HashMap<(usize, usize), PlanSlot>>,
    rewrites: GraphRewrites,
}

/// One shape's plan, optimised on first use. Each slot has its own lock so that optimising one
/// shape does not block runs at another.
type PlanSlot = Arc<Mutex<Option<Arc<TypedRunnableModel>>>>;

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("name", &self.name)
            .field("dim", &self.dim)
            .field("max_seq_length", &self.max_seq_length)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .finish()
    }
}

/// Which graph inputs exist, in graph order.
#[derive(Debug, Clone)]
struct InputLayout {
    order: Vec<InputKind>,
    output_slot: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum InputKind {
    InputIds,
    AttentionMask,
    TokenTypeIds,
}

/// Sets how many threads tract's matrix products use, process-wide (1 = single-threaded).
pub fn set_threads(threads: usize) {
    use tract_linalg::multithread::{Executor, set_default_executor};
    set_default_executor(if threads > 1 {
        Executor::multithread(threads)
    } else {
        Executor::SingleThread
    });
}

/// Token ids of one text, after truncation, with special tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

impl Encoder {
    /// Loads a sentence-transformers folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, EncoderError> {
        Self::from_dir_with(dir, EncoderOptions::default())
    }

    /// Loads a sentence-transformers folder with options.
    pub fn from_dir_with(
        dir: impl AsRef<Path>,
        options: EncoderOptions,
    ) -> Result<Self, EncoderError> {
        let dir = dir.as_ref();
        let shown = dir.display().to_string();
        let need = |rel: &str| -> Result<PathBuf, EncoderError> {
            let p = dir.join(rel);
            if p.is_file() {
                Ok(p)
            } else {
                Err(EncoderError::MissingFile {
                    dir: shown.clone(),
                    file: rel.to_string(),
                })
            }
        };
        let model_path = need("model.onnx")
            .or_else(|_| need("onnx/model.onnx"))
            .map_err(|_| EncoderError::MissingFile {
                dir: shown.clone(),
                file: "model.onnx (or onnx/model.onnx)".into(),
            })?;
        let read = |p: PathBuf| {
            std::fs::read(&p).map_err(|source| EncoderError::Io {
                path: p.display().to_string(),
                source,
            })
        };
        let text = |p: PathBuf| {
            String::from_utf8(read(p.clone())?).map_err(|_| EncoderError::Config {
                file: p.display().to_string(),
                message: "not UTF-8".into(),
            })
        };
        let tokenizer_json = read(need("tokenizer.json")?)?;
        let config_json = text(need("config.json")?)?;
        let sbert = text(need("sentence_bert_config.json")?)?;
        let modules = text(need("modules.json")?)?;
        let pooling = text(need("1_Pooling/config.json")?)?;
        let model_onnx = read(model_path)?;
        let name = dir
            .file_name()
            .map_or(shown.clone(), |n| n.to_string_lossy().into_owned());
        let files = EncoderFiles {
            name: &name,
            model_onnx: &model_onnx,
            tokenizer_json: &tokenizer_json,
            config_json: &config_json,
            sentence_bert_config_json: &sbert,
            modules_json: &modules,
            pooling_config_json: &pooling,
        };
        Self::load(files, options, Some(dir))
    }

    /// Loads an encoder from files in memory.
    pub fn from_files(files: EncoderFiles<'_>) -> Result<Self, EncoderError> {
        Self::load(files, EncoderOptions::default(), None)
    }

    /// Loads an encoder from files in memory, with options.
    pub fn from_files_with(
        files: EncoderFiles<'_>,
        options: EncoderOptions,
    ) -> Result<Self, EncoderError> {
        Self::load(files, options, None)
    }

    fn load(
        files: EncoderFiles<'_>,
        options: EncoderOptions,
        dir: Option<&Path>,
    ) -> Result<Self, EncoderError> {
        let at = |f: &str| {
            dir.map_or(format!("{} ({f})", files.name), |d| {
                d.join(f).display().to_string()
            })
        };
        let cfg = config::EncoderConfig::parse(&files, &at)?;
        let mut tokenizer =
            tokenizers::Tokenizer::from_bytes(files.tokenizer_json).map_err(|e| {
                EncoderError::Tokenizer {
                    file: at("tokenizer.json"),
                    message: e.to_string(),
                }
            })?;
        // sentence-transformers truncates to max_seq_length and pads per batch, whatever the
        // tokenizer file says; we pad ourselves.
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: cfg.max_seq_length,
                ..Default::default()
            }))
            .map_err(|e| EncoderError::Tokenizer {
                file: at("tokenizer.json"),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None);

        let origin = at("model.onnx");
        let (base, inputs, batch_sym, seq_sym, rewrites) =
            load_graph(files.model_onnx, &origin, cfg.hidden_size)?;
        Ok(Encoder {
            name: files.name.to_string(),
            tokenizer,
            max_seq_length: cfg.max_seq_length,
            pooling: cfg.pooling,
            normalize: cfg.normalize,
            dim: cfg.hidden_size,
            options,
            inputs,
            base,
            batch_sym,
            seq_sym,
            plans: Mutex::new(HashMap::new()),
            rewrites,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// Tokenizes one text as the encoder will: special tokens added, truncated to
    /// `max_seq_length`.
    pub fn tokenize(&self, text: &str) -> Result<Tokens, EncoderError> {
        self.encode(0, text)
    }

    /// Tokenizes text number `index` (named in errors).
    fn encode(&self, index: usize, text: &str) -> Result<Tokens, EncoderError> {
        let enc = self
            .tokenizer
            .encode_fast(text, true)
            .map_err(|e| EncoderError::Tokenize {
                index,
                message: e.to_string(),
            })?;
        Ok(Tokens {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
        })
    }

    /// Embeds texts: `texts.len() * dim()` values, row `i` for text `i`.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<f32>, EncoderError> {
        self.embed_with_progress(texts, &mut |_| {})
    }

    /// Every text's tokens, and the text indices longest first: batches are runs of that order.
    /// Longest first, so the costly batches start early and parallel workers finish together.
    fn tokens_longest_first<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<(Vec<Tokens>, Vec<usize>), EncoderError> {
        let tokens = texts
            .iter()
            .enumerate()
            .map(|(index, t)| self.encode(index, t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut order: Vec<usize> = (0..tokens.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].ids.len()));
        Ok((tokens, order))
    }

    /// Embeds texts, calling `progress(done)` after each batch with the number of texts done.
    pub fn embed_with_progress<S: AsRef<str>>(
        &self,
        texts: &[S],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>, EncoderError> {
        let (tokens, order) = self.tokens_longest_first(texts)?;
        let chunks: Vec<&[usize]> = order.chunks(self.options.batch_size.max(1)).collect();
        let mut out = vec![0f32; texts.len() * self.dim];
        let mut done = 0;
        let mut place = |chunk: &[usize], pooled: &[f32], done: &mut usize| {
            for (row, &i) in chunk.iter().enumerate() {
                out[i * self.dim..(i + 1) * self.dim]
                    .copy_from_slice(&pooled[row * self.dim..(row + 1) * self.dim]);
            }
            *done += chunk.len();
            progress(*done);
        };
        let workers = self.options.workers.clamp(1, chunks.len().max(1));
        if workers == 1 {
            for chunk in &chunks {
                let batch: Vec<&Tokens> = chunk.iter().map(|&i| &tokens[i]).collect();
                place(chunk, &self.run_batch(&batch)?, &mut done);
            }
            return Ok(out);
        }
        // Data parallelism: each worker runs whole batches with a single-threaded tract, which
        // scales better than splitting every matrix product across threads.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Vec<f32>, EncoderError>)>();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let (tx, next, chunks, tokens) = (tx.clone(), &next, &chunks, &tokens);
                scope.spawn(move || {
                    use tract_linalg::multithread::{Executor, multithread_tract_scope};
                    multithread_tract_scope(Executor::SingleThread, || {
                        loop {
                            let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(chunk) = chunks.get(c) else { break };
                            let batch: Vec<&Tokens> = chunk.iter().map(|&i| &tokens[i]).collect();
                            let result = self.run_batch(&batch);
                            let failed = result.is_err();
                            if tx.send((c, result)).is_err() || failed {
                                break;
                            }
                        }
                    })
                });
            }
            drop(tx);
            for (c, result) in rx {
                match result {
                    Ok(pooled) => place(chunks[c], &pooled, &mut done),
                    Err(e) => {
                        // Stop handing out work; the others finish their current batch.
                        next.store(chunks.len(), std::sync::atomic::Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The shape a batch runs at: its size, and its longest text rounded up to a bucket. The
    /// plan key is `(0, 0)` for the symbolic plan.
    fn bucket(&self, batch: usize, longest: usize) -> ((usize, usize), (usize, usize)) {
        match self.options.plans {
            PlanShapes::Symbolic => ((batch, longest), (0, 0)),
            PlanShapes::Buckets => {
                let seq = SEQUENCE_BUCKETS
                    .iter()
                    .copied()
                    .find(|&b| b >= longest)
                    .unwrap_or(longest);
                ((batch, seq), (batch, seq))
            }
        }
    }

    fn plan(&self, shape: (usize, usize)) -> Result<Arc<TypedRunnableModel>, EncoderError> {
        let slot = self
            .plans
            .lock()
            .expect("plan cache lock")
            .entry(shape)
            .or_default()
            .clone();
        let mut slot = slot.lock().expect("plan slot lock");
        if let Some(plan) = slot.as_ref() {
            return Ok(plan.clone());
        }
        let subs = if shape == (0, 0) {
            HashMap::new()
        } else {
            HashMap::from([
                (self.batch_sym.clone(), shape.0.to_dim()),
                (self.seq_sym.clone(), shape.1.to_dim()),
            ])
        };
        let origin = &self.name;
        let plan = self
            .base
            .set_symbols(&subs)
            .map_err(|e| tract_err(origin, "specialise", e))?
            .into_optimized()
            .map_err(|e| tract_err(origin, "optimise", e))?
            .into_runnable()
            .map_err(|e| tract_err(origin, "plan", e))?;
        *slot = Some(plan.clone());
        Ok(plan)
    }

    /// Which parts of the graph the load-time rewrites matched.
    ///
    /// ```no_run
    /// let encoder = emotions_encoder::Encoder::from_dir("models/minilm")?;
    /// assert_eq!(encoder.rewrites().attention, 6); // one per layer of MiniLM-L6
    /// # Ok::<(), emotions_encoder::EncoderError>(())
    /// ```
    pub fn rewrites(&self) -> GraphRewrites {
        self.rewrites
    }

    /// Shapes with an optimised plan cached so far.
    pub fn cached_shapes(&self) -> Vec<(usize, usize)> {
        let mut shapes: Vec<_> = self
            .plans
            .lock()
            .expect("plan cache lock")
            .keys()
            .copied()
            .collect();
        shapes.sort();
        shapes
    }

    /// Time spent per op type over the batches `texts` makes, single-threaded, for
    /// performance work (`examples/op_profile.rs`): `(op name, total, calls)`, largest first.
    #[doc(hidden)]
    pub fn op_profile<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<Vec<(String, std::time::Duration, usize)>, EncoderError> {
        let (tokens, order) = self.tokens_longest_first(texts)?;
        let mut totals: HashMap<String, (std::time::Duration, usize)> = HashMap::new();
        for chunk in order.chunks(self.options.batch_size.max(1)) {
            let batch: Vec<&Tokens> = chunk.iter().map(|&i| &tokens[i]).collect();
            let (key, inputs) = self.batch_inputs(&batch)?;
            let plan = self.plan(key)?;
            let mut state = plan.spawn().map_err(|e| tract_err(&self.name, "run", e))?;
            state
                .run_plan_with_eval(inputs, |ctx, op_state, node, input| {
                    let start = std::time::Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, input);
                    // Layers aggregated: digits dropped from the node name.
                    let name: String = node.name.chars().filter(|c| !c.is_ascii_digit()).collect();
                    let e = totals
                        .entry(format!("{} {name}", node.op.name()))
                        .or_default();
                    e.0 += start.elapsed();
                    e.1 += 1;
                    out
                })
                .map_err(|e| tract_err(&self.name, "run", e))?;
        }
        let mut rows: Vec<_> = totals.into_iter().map(|(k, (t, n))| (k, t, n)).collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        Ok(rows)
    }

    /// The plan key and padded input tensors for a batch.
    fn batch_inputs(
        &self,
        batch: &[&Tokens],
    ) -> Result<((usize, usize), TVec<TValue>), EncoderError> {
        let longest = batch.iter().map(|t| t.ids.len()).max().unwrap_or(0).max(1);
        let ((b, s), key) = self.bucket(batch.len(), longest);
        let mut ids = vec![0i64; b * s];
        let mut mask = vec![0i64; b * s];
        let mut types = vec![0i64; b * s];
        for (row, t) in batch.iter().enumerate() {
            for (j, (&id, &ty)) in t.ids.iter().zip(&t.type_ids).enumerate() {
                ids[row * s + j] = id as i64;
                mask[row * s + j] = 1;
                types[row * s + j] = ty as i64;
            }
        }
        let tensor = |v: &[i64]| Tensor::from_shape(&[b, s], v).map(|t| t.into_tvalue());
        let inputs = self
            .inputs
            .order
            .iter()
            .map(|k| match k {
                InputKind::InputIds => tensor(&ids),
                InputKind::AttentionMask => tensor(&mask),
                InputKind::TokenTypeIds => tensor(&types),
            })
            .collect::<TractResult<TVec<_>>>()
            .map_err(|e| tract_err(&self.name, "build inputs for", e))?;
        Ok((key, inputs))
    }

    fn run_batch(&self, batch: &[&Tokens]) -> Result<Vec<f32>, EncoderError> {
        let (key, inputs) = self.batch_inputs(batch)?;
        let outputs = self
            .plan(key)?
            .run(inputs)
            .map_err(|e| tract_err(&self.name, "run", e))?;
        let hidden = outputs[self.inputs.output_slot]
            .to_plain_array_view::<f32>()
            .map_err(|e| tract_err(&self.name, "read the output of", e))?;
        let hidden = hidden
            .into_dimensionality::<tract_ndarray::Ix3>()
            .map_err(|e| tract_err(&self.name, "read the output of", e))?;
        let mut pooled = vec![0f32; batch.len() * self.dim];
        for (row, t) in batch.iter().enumerate() {
            let out = &mut pooled[row * self.dim..(row + 1) * self.dim];
            let tokens = hidden.slice(tract_ndarray::s![row, ..t.ids.len(), ..]);
            self.pooling.pool(tokens, out);
            if self.normalize {
                let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                out.iter_mut().for_each(|x| *x /= norm);
            }
        }
        Ok(pooled)
    }
}

/// Parses the graph, checks it is an encoder, declutters it and folds dequantisation.
fn load_graph(
    bytes: &[u8],
    origin: &str,
    hidden: usize,
) -> Result<(TypedModel, InputLayout, Symbol, Symbol, GraphRewrites), EncoderError> {
    let sig = |message: String| EncoderError::Signature {
        origin: origin.to_string(),
        message,
    };
    let mut proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| sig(format!("not a valid ONNX file: {e:#}")))?;
    fold::fold_proto_dequantisation(&mut proto);
    let model = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .map_err(|e| tract_err(origin, "parse", e))?;
    let names: Vec<String> = model
        .input_outlets()
        .map_err(|e| tract_err(origin, "parse", e))?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    let order = names
        .iter()
        .map(|n| match n.as_str() {
            "input_ids" => Ok(InputKind::InputIds),
            "attention_mask" => Ok(InputKind::AttentionMask),
            "token_type_ids" => Ok(InputKind::TokenTypeIds),
            other => Err(sig(format!(
                "unexpected input '{other}' (expected input_ids, attention_mask, token_type_ids)"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !order.contains(&InputKind::InputIds) || !order.contains(&InputKind::AttentionMask) {
        return Err(sig(format!(
            "inputs {names:?} lack input_ids or attention_mask"
        )));
    }
    let output_names: Vec<&str> = proto
        .graph
        .as_ref()
        .map(|g| g.output.iter().map(|o| o.name.as_str()).collect())
        .unwrap_or_default();
    let output_slot = output_names
        .iter()
        .position(|n| *n == "last_hidden_state" || *n == "token_embeddings")
        .unwrap_or(0);

    // Symbolic batch and sequence, whatever the file calls them.
    let mut model = model;
    let (batch, seq) = (model.sym("batch"), model.sym("sequence"));
    for ix in 0..order.len() {
        model
            .set_input_fact(ix, i64::fact(&[batch.to_dim(), seq.to_dim()]).into())
            .map_err(|e| tract_err(origin, "type the inputs of", e))?;
    }
    let mut typed = model
        .into_typed()
        .map_err(|e| tract_err(origin, "type", e))?;
    let out_fact = typed
        .output_fact(output_slot)
        .map_err(|e| tract_err(origin, "type", e))?;
    if out_fact.rank() != 3 || out_fact.shape[2] != hidden.to_dim() {
        return Err(sig(format!(
            "output {output_slot} is {out_fact:?}, expected [batch, sequence, {hidden}]"
        )));
    }
    fold::fold_constant_dequantisation(&mut typed)
        .map_err(|e| tract_err(origin, "fold the weights of", e))?;
    let mut typed = typed
        .into_decluttered()
        .map_err(|e| tract_err(origin, "declutter", e))?;
    softmax::replace_softmax(&mut typed)
        .map_err(|e| tract_err(origin, "rewrite the softmax of", e))?;
    let rewrites = GraphRewrites {
        gelu: gelu::fuse_gelu(&mut typed).map_err(|e| tract_err(origin, "fuse the GELUs of", e))?,
        // Attention first: it traces Q, K and V back to the projections' bias adds.
        attention: attention::fuse_attention(&mut typed)
            .map_err(|e| tract_err(origin, "fuse the attention of", e))?,
        linear: linear::pack_linears(&mut typed)
            .map_err(|e| tract_err(origin, "pack the weights of", e))?,
    };
    Ok((
        typed,
        InputLayout { order, output_slot },
        batch,
        seq,
        rewrites,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Encoder>();
    }

    #[test]
    fn missing_files_are_named() {
        let dir = std::env::temp_dir().join(format!("emotions-enc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = Encoder::from_dir(&dir).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("encoder folder is missing model.onnx (or onnx/model.onnx)"),
            "{err}"
        );
        std::fs::write(dir.join("model.onnx"), b"x").unwrap();
        let err = Encoder::from_dir(&dir).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("encoder folder is missing tokenizer.json"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
