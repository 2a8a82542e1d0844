//! Low-rank adapters (LoRA) for an encoder's projections, merged into the weights at load.
//!
//! A projection is found by its shape in the graph, not by the exporter's tensor names:
//! `Add(MatMul(x, W), b)` with `W` an f32 initializer (after dequantisation is folded) and `b`
//! an initializer named `<stem>.bias`. Its name is `<stem>`, e.g.
//! `encoder.layer.0.attention.self.query`, whatever `W` is called in the file.
//!
//! The adapter file is safetensors, in PEFT's layout: `<target>.lora_A.weight` `[r, in]` and
//! `<target>.lora_B.weight` `[out, r]`, f32, with the scale `alpha / r` already multiplied into
//! `B`. A target matches the one projection whose stem is it or ends with `.<target>`. The
//! merged weight is `W + (B·A)ᵀ` (ONNX's `W` is `[in, out]`).

use super::dynamic_quant::floats;
use super::fold::{self, ONNX_FLOAT, ONNX_INT8};
use super::int8_matmul::INT8_MATMUL;
use super::madd;
use crate::RuntimeError;
use crate::f32_isa::F32Isa;
use std::collections::{BTreeMap, HashMap};
use tract_onnx::pb;

/// One projection's low-rank update.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRankDelta {
    /// The projection's stem, or a suffix of it, e.g. `encoder.layer.0.attention.self.query`.
    pub target: String,
    pub rank: usize,
    pub inputs: usize,
    pub outputs: usize,
    /// `[rank, inputs]`, row-major.
    pub a: Vec<f32>,
    /// `[outputs, rank]`, row-major, scale included.
    pub b: Vec<f32>,
}

impl LowRankDelta {
    /// `(B·A)ᵀ` as `[inputs, outputs]`, row-major: what is added to the ONNX weight.
    pub fn dense_transposed(&self) -> Vec<f32> {
        let (r, k, n) = (self.rank, self.inputs, self.outputs);
        let mut out = vec![0f32; k * n];
        for i in 0..k {
            let row = &mut out[i * n..(i + 1) * n];
            for (j, o) in row.iter_mut().enumerate() {
                let mut acc = 0f32;
                for t in 0..r {
                    acc += self.b[j * r + t] * self.a[t * k + i];
                }
                *o = acc;
            }
        }
        out
    }
}

/// A set of low-rank updates, and the file's metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoraAdapter {
    pub deltas: Vec<LowRankDelta>,
    pub metadata: BTreeMap<String, String>,
}

/// One named f32 tensor of an encoder, as [`encoder_weights`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn adapter_error(origin: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Adapter {
        origin: origin.to_string(),
        message: message.into(),
    }
}

impl LoraAdapter {
    /// Reads a safetensors adapter (f32 tensors only). Every `lora_A` needs its `lora_B`, with
    /// matching ranks, and every value must be finite.
    pub fn from_safetensors(bytes: &[u8], origin: &str) -> Result<Self, RuntimeError> {
        let err = |m: String| adapter_error(origin, m);
        let header_len = bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| {
                err(format!(
                    "expected a safetensors file, found {} bytes",
                    bytes.len()
                ))
            })?;
        let data_start = usize::try_from(header_len)
            .ok()
            .and_then(|h| h.checked_add(8))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                err(format!(
                    "header of {header_len} bytes does not fit in the {}-byte file",
                    bytes.len()
                ))
            })?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..data_start])
                .map_err(|e| err(format!("header is not a JSON object: {e}")))?;
        let data = &bytes[data_start..];
        let mut metadata = BTreeMap::new();
        let mut tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
        for (name, entry) in header {
            if name == "__metadata__" {
                for (k, v) in entry.as_object().into_iter().flatten() {
                    let v = v
                        .as_str()
                        .ok_or_else(|| err(format!("metadata '{k}' is not a string")))?;
                    metadata.insert(k.clone(), v.to_string());
                }
                continue;
            }
            let dtype = entry.get("dtype").and_then(|d| d.as_str());
            if dtype != Some("F32") {
                return Err(err(format!(
                    "tensor '{name}': expected dtype F32, found {}",
                    dtype.unwrap_or("none")
                )));
            }
            let shape: Option<Vec<usize>> = entry
                .get("shape")
                .and_then(|s| s.as_array())
                .and_then(|s| s.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
            let offsets: Option<Vec<usize>> = entry
                .get("data_offsets")
                .and_then(|s| s.as_array())
                .and_then(|s| s.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
            let (Some(shape), Some(offsets)) = (shape, offsets) else {
                return Err(err(format!(
                    "tensor '{name}': missing shape or data_offsets"
                )));
            };
            let len = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .and_then(|n| n.checked_mul(4));
            let [start, end] = offsets[..] else {
                return Err(err(format!(
                    "tensor '{name}': data_offsets must be [start, end]"
                )));
            };
            if start > end || end > data.len() || len != Some(end - start) {
                return Err(err(format!(
                    "tensor '{name}': shape {shape:?} does not match bytes {start}..{end} of {}",
                    data.len()
                )));
            }
            let values: Vec<f32> = data[start..end]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                return Err(err(format!(
                    "tensor '{name}' holds {bad}; values must be finite"
                )));
            }
            tensors.insert(name, (shape, values));
        }
        let mut targets: Vec<String> = tensors
            .keys()
            .map(|n| {
                n.strip_suffix(".lora_A.weight")
                    .or_else(|| n.strip_suffix(".lora_B.weight"))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        err(format!(
                            "tensor '{n}': expected names ending in .lora_A.weight or .lora_B.weight"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        targets.sort();
        targets.dedup();
        let mut deltas = Vec::with_capacity(targets.len());
        for target in targets {
            let take = |part: &str| tensors.get(&format!("{target}.{part}.weight"));
            let (Some((a_shape, a)), Some((b_shape, b))) = (take("lora_A"), take("lora_B")) else {
                return Err(err(format!("'{target}' needs both lora_A and lora_B")));
            };
            let (&[rank, inputs], &[outputs, b_rank]) = (&a_shape[..], &b_shape[..]) else {
                return Err(err(format!(
                    "'{target}': expected 2-d lora_A and lora_B, found {a_shape:?} and {b_shape:?}"
                )));
            };
            if rank != b_rank || rank == 0 {
                return Err(err(format!(
                    "'{target}': lora_A is {a_shape:?} and lora_B {b_shape:?}; expected [r, in] and [out, r] with r ≥ 1"
                )));
            }
            deltas.push(LowRankDelta {
                target,
                rank,
                inputs,
                outputs,
                a: a.clone(),
                b: b.clone(),
            });
        }
        Ok(LoraAdapter { deltas, metadata })
    }

    /// The safetensors bytes [`LoraAdapter::from_safetensors`] reads back.
    pub fn to_safetensors(&self) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        if !self.metadata.is_empty() {
            header.insert(
                "__metadata__".into(),
                serde_json::to_value(&self.metadata).expect("strings"),
            );
        }
        let mut data: Vec<u8> = Vec::new();
        let mut push = |name: String, shape: [usize; 2], values: &[f32]| {
            let start = data.len();
            data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            header.insert(
                name,
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
            );
        };
        for d in &self.deltas {
            push(
                format!("{}.lora_A.weight", d.target),
                [d.rank, d.inputs],
                &d.a,
            );
            push(
                format!("{}.lora_B.weight", d.target),
                [d.outputs, d.rank],
                &d.b,
            );
        }
        let mut head = serde_json::to_vec(&header).expect("JSON");
        // safetensors pads the header with spaces to 8 bytes.
        while !head.len().is_multiple_of(8) {
            head.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + head.len() + data.len());
        out.extend((head.len() as u64).to_le_bytes());
        out.extend(head);
        out.extend(data);
        out
    }
}

/// A `MatMul`, or an int8 projection that [`int8_matmuls`](super::int8_matmul::int8_matmuls)
/// rewrote from one.
fn is_projection(node: &pb::NodeProto) -> bool {
    node.op_type == "MatMul" || node.op_type == INT8_MATMUL
}

fn dims(t: &pb::TensorProto) -> Option<Vec<usize>> {
    t.dims.iter().map(|&d| usize::try_from(d).ok()).collect()
}

/// `(stem, initializer index of W)` for every `Add(MatMul(x, W), <stem>.bias)` of a folded
/// graph, in node order.
fn projections(graph: &pb::GraphProto) -> Vec<(String, usize)> {
    let init_ix: HashMap<&str, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut adds_of: HashMap<&str, Vec<&pb::NodeProto>> = HashMap::new();
    for node in graph.node.iter().filter(|n| n.op_type == "Add") {
        for i in &node.input {
            adds_of.entry(i.as_str()).or_default().push(node);
        }
    }
    let mut found = Vec::new();
    for mm in graph.node.iter().filter(|n| is_projection(n)) {
        let (Some(w), Some(out)) = (mm.input.get(1), mm.output.first()) else {
            continue;
        };
        let Some(&w_ix) = init_ix.get(w.as_str()) else {
            continue;
        };
        // f32 weights, or an int8 projection's values (their shape is the weights').
        let int8 = mm.op_type == INT8_MATMUL && graph.initializer[w_ix].data_type == ONNX_INT8;
        if graph.initializer[w_ix].data_type != ONNX_FLOAT && !int8 {
            continue;
        }
        let stem = adds_of
            .get(out.as_str())
            .into_iter()
            .flatten()
            .find_map(|add| {
                add.input
                    .iter()
                    .filter(|i| *i != out && init_ix.contains_key(i.as_str()))
                    .find_map(|i| i.strip_suffix(".bias"))
            });
        if let Some(stem) = stem {
            found.push((stem.to_string(), w_ix));
        }
    }
    found
}

/// For each delta of `adapter`, the initializer index of its projection's weight.
fn matched_weights(
    graph: &pb::GraphProto,
    adapter: &LoraAdapter,
    origin: &str,
) -> Result<Vec<usize>, RuntimeError> {
    let err = |m: String| adapter_error(origin, m);
    let found = projections(graph);
    let mut weights = Vec::with_capacity(adapter.deltas.len());
    for delta in &adapter.deltas {
        let suffix = format!(".{}", delta.target);
        let matches: Vec<&(String, usize)> = found
            .iter()
            .filter(|(stem, _)| *stem == delta.target || stem.ends_with(&suffix))
            .collect();
        let &[(stem, w_ix)] = &matches[..] else {
            return Err(err(format!(
                "adapter target '{}' matches {} projections of the encoder (expected one; it has {})",
                delta.target,
                matches.len(),
                found.len()
            )));
        };
        let w = &graph.initializer[*w_ix];
        if dims(w).as_deref() != Some(&[delta.inputs, delta.outputs][..]) {
            return Err(err(format!(
                "adapter target '{}' is [{}, {}] but the encoder's {stem} weight is {:?}",
                delta.target, delta.inputs, delta.outputs, w.dims
            )));
        }
        if weights.contains(w_ix) {
            return Err(err(format!("adapter targets {stem} twice")));
        }
        weights.push(*w_ix);
    }
    Ok(weights)
}

/// Adds every delta of `adapter` to its projection's weight in a folded graph: the exact
/// mode, where the merged f32 weights are what onnxruntime would run.
pub(crate) fn merge(
    model: &mut pb::ModelProto,
    adapter: &LoraAdapter,
    origin: &str,
) -> Result<(), RuntimeError> {
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| adapter_error(origin, "the model has no graph"))?;
    for (delta, w_ix) in adapter
        .deltas
        .iter()
        .zip(matched_weights(graph, adapter, origin)?)
    {
        let w = &mut graph.initializer[w_ix];
        let mut values = floats(w)
            .ok_or_else(|| adapter_error(origin, format!("{}: weight is not f32", delta.target)))?;
        for (v, d) in values.iter_mut().zip(delta.dense_transposed()) {
            *v += d;
        }
        w.float_data.clear();
        w.raw_data = super::fold::le_bytes(&values);
    }
    Ok(())
}

/// Marks a projection that also adds a low-rank term: its matmul node and its weight's
/// initializer are renamed `<name><LOW_RANK_MARK><index into the sides>`, which the packed
/// projection reads (the weight may reach it under another name, folded with a reshape).
/// (tract drops what follows a `#` in node names.)
pub(crate) const LOW_RANK_MARK: &str = ".low_rank_side_";

/// A projection's low-rank term `x · Aᵀ · Bᵀ`, computed in f32 beside integer weights.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LowRankSide {
    pub rank: usize,
    pub k: usize,
    pub n: usize,
    /// `Aᵀ`, `[k, padded]`, each row zero-padded to `padded` lanes so the inner loop is whole
    /// vectors.
    at: Vec<f32>,
    padded: usize,
    /// `Bᵀ`, `[rank, n]`.
    bt: Vec<f32>,
}

/// Rows per parallel task.
const SIDE_ROWS: usize = 64;

impl LowRankSide {
    fn new(d: &LowRankDelta) -> Self {
        let padded = d.rank.div_ceil(16) * 16;
        let mut at = vec![0f32; d.inputs * padded];
        for t in 0..d.rank {
            for j in 0..d.inputs {
                at[j * padded + t] = d.a[t * d.inputs + j];
            }
        }
        let mut bt = vec![0f32; d.rank * d.outputs];
        for j in 0..d.outputs {
            for t in 0..d.rank {
                bt[t * d.outputs + j] = d.b[j * d.rank + t];
            }
        }
        LowRankSide {
            rank: d.rank,
            k: d.inputs,
            n: d.outputs,
            at,
            padded,
            bt,
        }
    }

    /// `out[i] += (x[i] · Aᵀ) · Bᵀ` for `m` rows, spread over `pool` when given.
    pub fn add_to(&self, x: &[f32], m: usize, out: &mut [f32], pool: Option<&rayon::ThreadPool>) {
        self.add_to_with(F32Isa::detect(), x, m, out, pool)
    }

    pub(crate) fn add_to_with(
        &self,
        isa: F32Isa,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        pool: Option<&rayon::ThreadPool>,
    ) {
        use rayon::prelude::*;
        let (x, out) = (&x[..m * self.k], &mut out[..m * self.n]);
        match pool {
            Some(pool) if m > SIDE_ROWS => pool.install(|| {
                x.par_chunks(SIDE_ROWS * self.k)
                    .zip(out.par_chunks_mut(SIDE_ROWS * self.n))
                    .for_each(|(xs, os)| self.rows(isa, xs, os))
            }),
            _ => self.rows(isa, x, out),
        }
    }

    fn rows(&self, isa: F32Isa, x: &[f32], out: &mut [f32]) {
        match isa {
            // SAFETY: the CPU runs the ISA (checked here: a test may force one), and the bodies
            // only index slices.
            #[cfg(target_arch = "x86_64")]
            F32Isa::Avx512 if isa.available() => unsafe { self.rows_avx512(x, out) },
            #[cfg(target_arch = "x86_64")]
            F32Isa::Avx2Fma if isa.available() => unsafe { self.rows_avx2(x, out) },
            _ => self.rows_generic::<false>(x, out),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn rows_avx512(&self, x: &[f32], out: &mut [f32]) {
        self.rows_generic::<true>(x, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2(&self, x: &[f32], out: &mut [f32]) {
        self.rows_generic::<true>(x, out)
    }

    /// Four rows at a time share each load of `Aᵀ`, with the sums for `x · Aᵀ` and each
    /// 16-column block of the output held in registers (a sum kept in memory made every step
    /// wait on the store before it).
    #[inline(always)]
    fn rows_generic<const FMA: bool>(&self, x: &[f32], out: &mut [f32]) {
        const ROWS: usize = 4;
        let (k, n, p) = (self.k, self.n, self.padded);
        let rows = x.len() / k;
        let mut u = vec![0f32; ROWS * p];
        let mut i = 0;
        while i < rows {
            let take = ROWS.min(rows - i);
            u.iter_mut().for_each(|v| *v = 0.0);
            for lane in (0..p).step_by(16) {
                let mut acc = [[0f32; 16]; ROWS];
                for (j, a) in self.at.chunks_exact(p).enumerate() {
                    let a: &[f32; 16] = a[lane..lane + 16].try_into().expect("16 lanes");
                    for (r, acc) in acc.iter_mut().enumerate().take(take) {
                        let xv = x[(i + r) * k + j];
                        for t in 0..16 {
                            acc[t] = madd::<FMA>(xv, a[t], acc[t]);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate().take(take) {
                    u[r * p + lane..r * p + lane + 16].copy_from_slice(acc);
                }
            }
            for r in 0..take {
                let (ur, orow) = (
                    &u[r * p..r * p + self.rank],
                    &mut out[(i + r) * n..(i + r + 1) * n],
                );
                let mut c = 0;
                while c + 16 <= n {
                    let mut acc: [f32; 16] = orow[c..c + 16].try_into().expect("16 columns");
                    for (t, &ut) in ur.iter().enumerate() {
                        let b = &self.bt[t * n + c..t * n + c + 16];
                        for l in 0..16 {
                            acc[l] = madd::<FMA>(ut, b[l], acc[l]);
                        }
                    }
                    orow[c..c + 16].copy_from_slice(&acc);
                    c += 16;
                }
                for (cc, o) in orow.iter_mut().enumerate().skip(c) {
                    for (t, &ut) in ur.iter().enumerate() {
                        *o = madd::<FMA>(ut, self.bt[t * n + cc], *o);
                    }
                }
            }
            i += take;
        }
    }
}

/// Leaves the projections' weights as they are (so an int8 grid stays exact for the integer
/// kernels) and marks each for a low-rank term computed beside it in f32. Returns the terms.
pub(crate) fn attach(
    model: &mut pb::ModelProto,
    adapter: &LoraAdapter,
    origin: &str,
) -> Result<Vec<std::sync::Arc<LowRankSide>>, RuntimeError> {
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| adapter_error(origin, "the model has no graph"))?;
    let weights = matched_weights(graph, adapter, origin)?;
    let mut sides = Vec::with_capacity(weights.len());
    for (index, (delta, w_ix)) in adapter.deltas.iter().zip(weights).enumerate() {
        let old = graph.initializer[w_ix].name.clone();
        let new = format!("{old}{LOW_RANK_MARK}{index}");
        for node in &mut graph.node {
            if is_projection(node) && node.input.get(1) == Some(&old) {
                let base = if node.name.is_empty() {
                    node.output.first().cloned().unwrap_or_default()
                } else {
                    node.name.clone()
                };
                node.name = format!("{base}{LOW_RANK_MARK}{index}");
            }
            for i in node.input.iter_mut().filter(|i| **i == old) {
                *i = new.clone();
            }
        }
        graph.initializer[w_ix].name = new;
        sides.push(std::sync::Arc::new(LowRankSide::new(delta)));
    }
    Ok(sides)
}

/// The low-rank term a weight node's name marks, if any.
pub(crate) fn side_of<'s>(
    weight_name: &str,
    sides: &'s [std::sync::Arc<LowRankSide>],
) -> Option<&'s std::sync::Arc<LowRankSide>> {
    let (_, index) = weight_name.rsplit_once(LOW_RANK_MARK)?;
    let digits: String = index.chars().take_while(char::is_ascii_digit).collect();
    sides.get(digits.parse::<usize>().ok()?)
}

/// Every f32 weight of an encoder file, dequantised, for training on it: projections are named
/// `<stem>.weight` (`[in, out]`, as the graph multiplies), dequantised tables by their int8
/// tensor's name without its `_q`/`_quantized` suffix, other initializers by their own name.
pub fn encoder_weights(bytes: &[u8], origin: &str) -> Result<Vec<NamedTensor>, RuntimeError> {
    let mut proto =
        <pb::ModelProto as prost::Message>::decode(bytes).map_err(|e| RuntimeError::Decode {
            origin: origin.to_string(),
            source: e.into(),
        })?;
    crate::limits::check_model(&proto, origin, crate::limits::MAX_ENCODER_NODES)?;
    let aliases = proto
        .graph
        .as_ref()
        .map(fold::dequantised_names)
        .unwrap_or_default();
    fold::fold_proto_dequantisation(&mut proto);
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| adapter_error(origin, "the model has no graph"))?;
    let projection_of: HashMap<usize, String> = projections(graph)
        .into_iter()
        .map(|(stem, ix)| (ix, format!("{stem}.weight")))
        .collect();
    let mut out = Vec::new();
    for (ix, t) in graph.initializer.iter().enumerate() {
        let (Some(data), Some(shape)) = (floats(t), dims(t)) else {
            continue;
        };
        let name = match (projection_of.get(&ix), aliases.get(&t.name)) {
            (Some(p), _) => p.clone(),
            (None, Some(q)) => q
                .strip_suffix("_quantized")
                .or_else(|| q.strip_suffix("_q"))
                .unwrap_or(q)
                .to_string(),
            (None, None) => t.name.clone(),
        };
        out.push(NamedTensor { name, shape, data });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(target: &str) -> LowRankDelta {
        LowRankDelta {
            target: target.into(),
            rank: 2,
            inputs: 3,
            outputs: 2,
            a: vec![1., 2., 3., 4., 5., 6.],
            b: vec![0.5, -1., 2., 0.25],
        }
    }

    #[test]
    fn safetensors_round_trip_and_dense_delta() {
        let adapter = LoraAdapter {
            deltas: vec![delta("layer.0.query")],
            metadata: [("rank".to_string(), "2".to_string())].into(),
        };
        let bytes = adapter.to_safetensors();
        let back = LoraAdapter::from_safetensors(&bytes, "a.safetensors").unwrap();
        assert_eq!(back, adapter);
        // (B·A)ᵀ[i][j] = Σ_t B[j][t]·A[t][i]
        let d = adapter.deltas[0].dense_transposed();
        assert_eq!(
            d,
            vec![0.5 - 4., 2. + 1., 1. - 5., 4. + 1.25, 1.5 - 6., 6. + 1.5]
        );
    }

    #[test]
    fn the_side_term_is_the_dense_delta() {
        let d = delta("q");
        let side = LowRankSide::new(&d);
        let dense = d.dense_transposed();
        let x = [0.5f32, -1.0, 2.0, 3.0, 0.25, -0.75];
        let mut out = vec![1f32; 4];
        side.add_to(&x, 2, &mut out, None);
        for i in 0..2 {
            for j in 0..2 {
                let want: f32 = 1.0 + (0..3).map(|k| x[i * 3 + k] * dense[k * 2 + j]).sum::<f32>();
                assert!(
                    (out[i * 2 + j] - want).abs() < 1e-5,
                    "{i},{j}: {} {want}",
                    out[i * 2 + j]
                );
            }
        }
        let sides = vec![std::sync::Arc::new(side)];
        assert!(side_of(&format!("node_MatMul_4{LOW_RANK_MARK}0.2"), &sides).is_some());
        assert!(side_of(&format!("node_MatMul_4{LOW_RANK_MARK}1"), &sides).is_none());
        assert!(side_of("node_MatMul_4", &sides).is_none());
    }

    /// Every ISA the CPU has, forced, with and without a pool, against the portable loops.
    #[test]
    fn every_isa_path_of_the_side_term_agrees() {
        let d = LowRankDelta {
            target: "t".into(),
            rank: 19,
            inputs: 37,
            outputs: 45,
            a: (0..19 * 37)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.05)
                .collect(),
            b: (0..45 * 19)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.03)
                .collect(),
        };
        let side = LowRankSide::new(&d);
        let m = 150;
        let x: Vec<f32> = (0..m * 37)
            .map(|i| ((i * 3 % 17) as f32 - 8.0) * 0.1)
            .collect();
        let mut want = vec![0.5f32; m * 45];
        side.add_to_with(F32Isa::Portable, &x, m, &mut want, None);
        let dense = d.dense_transposed();
        for i in [0, 77, m - 1] {
            for j in [0, 44] {
                let exact: f32 = 0.5
                    + (0..37)
                        .map(|k| x[i * 37 + k] * dense[k * 45 + j])
                        .sum::<f32>();
                assert!((want[i * 45 + j] - exact).abs() < 1e-4);
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for isa in F32Isa::all_available() {
            for pool in [None, Some(&pool)] {
                let mut got = vec![0.5f32; m * 45];
                side.add_to_with(isa, &x, m, &mut got, pool);
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-5, "{isa:?} pool={}: {worst}", pool.is_some());
            }
        }
    }

    #[test]
    fn broken_files_name_what_is_wrong() {
        let good = LoraAdapter {
            deltas: vec![delta("q")],
            metadata: BTreeMap::new(),
        }
        .to_safetensors();
        let msg = |b: &[u8]| {
            LoraAdapter::from_safetensors(b, "x.safetensors")
                .unwrap_err()
                .to_string()
        };
        assert!(
            msg(&good[..5]).contains("expected a safetensors file"),
            "{}",
            msg(&good[..5])
        );
        assert!(msg(&good[..good.len() - 4]).contains("does not match bytes"));
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(msg(&huge).contains("does not fit"));
        let mut nan = good.clone();
        let n = nan.len();
        nan[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(msg(&nan).contains("must be finite"), "{}", msg(&nan));
        let mut renamed = good.clone();
        let at = renamed
            .windows(6)
            .position(|w| w == b"lora_B")
            .expect("lora_B in the header");
        renamed[at + 5] = b'C';
        assert!(
            msg(&renamed).contains("expected names ending"),
            "{}",
            msg(&renamed)
        );
    }
}
