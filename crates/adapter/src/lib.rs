//! The LoRA adapter file: safetensors in PEFT's layout, read and written without tract, so
//! that `emotions-finetune` writes what the runtime reads.
//!
//! `<target>.lora_A.weight` `[r, in]` and `<target>.lora_B.weight` `[out, r]`, f32, with the
//! scale `alpha / r` already multiplied into `B`. A target names a projection by its stem (or
//! a suffix of it), e.g. `encoder.layer.0.attention.self.query`; the runtime finds it in the
//! encoder's graph by shape (`emotions_runtime`'s adapter pass).
//!
//! ```
//! use emotions_adapter::{LoraAdapter, LowRankDelta};
//!
//! let adapter = LoraAdapter {
//!     deltas: vec![LowRankDelta {
//!         target: "layer.0.query".into(),
//!         rank: 1,
//!         inputs: 2,
//!         outputs: 2,
//!         a: vec![1.0, 2.0],
//!         b: vec![0.5, -1.0],
//!     }],
//!     metadata: Default::default(),
//! };
//! let back = LoraAdapter::from_safetensors(&adapter.to_safetensors(), "a.safetensors")?;
//! assert_eq!(back, adapter);
//! assert_eq!(back.deltas[0].dense_transposed(), [0.5, -1.0, 1.0, -2.0]);
//! # Ok::<(), emotions_adapter::AdapterError>(())
//! ```

use std::collections::{BTreeMap, HashMap};

/// A malformed adapter file, or one that does not fit the encoder. Displays as
/// `origin: kind`.
#[derive(Debug)]
pub struct AdapterError {
    /// The file (or what stands for it).
    pub origin: String,
    pub kind: AdapterErrorKind,
}

impl std::fmt::Display for AdapterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin, self.kind)
    }
}

impl std::error::Error for AdapterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// The kinds of [`AdapterError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterErrorKind {
    /// What is wrong, in words that name the tensor.
    #[error("{0}")]
    Malformed(String),
}

impl AdapterError {
    /// `message` about `origin`.
    pub fn malformed(origin: &str, message: impl Into<String>) -> Self {
        AdapterError {
            origin: origin.to_string(),
            kind: AdapterErrorKind::Malformed(message.into()),
        }
    }
}

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
        // Each element sums its r products in order t = 0, 1, ... from zero, as a dot product
        // would, but a row at a time over B's transpose: contiguous loops that vectorise (the
        // strided dot products were a fifth of a cold start), with the same bits.
        let mut b_t = vec![0f32; r * n];
        for (j, b_row) in self.b.chunks_exact(r.max(1)).enumerate().take(n) {
            for (t, &v) in b_row.iter().enumerate() {
                b_t[t * n + j] = v;
            }
        }
        let mut out = vec![0f32; k * n];
        for (i, row) in out.chunks_exact_mut(n.max(1)).enumerate().take(k) {
            for (t, b_row) in b_t.chunks_exact(n.max(1)).enumerate().take(r) {
                let a = self.a[t * k + i];
                row.iter_mut().zip(b_row).for_each(|(o, &b)| *o += b * a);
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

impl LoraAdapter {
    /// Reads a safetensors adapter (f32 tensors only). Every `lora_A` needs its `lora_B`, with
    /// matching ranks, and every value must be finite.
    pub fn from_safetensors(bytes: &[u8], origin: &str) -> Result<Self, AdapterError> {
        let err = |m: String| AdapterError::malformed(origin, m);
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

    /// The weighted sum of adapters' updates, `Σ wᵢ·Bᵢ·Aᵢ` per target, as one adapter: the
    /// ranks add up (each `A` is kept, each `B` scaled by its weight), so the sum is exact, not
    /// a low-rank approximation of it. A target missing from some adapters is zero there.
    /// `origin` names the result in errors; a target whose shape differs between adapters,
    /// or a weight that is not finite, is refused. The metadata is left empty.
    pub fn weighted_sum(parts: &[(&LoraAdapter, f32)], origin: &str) -> Result<Self, AdapterError> {
        let err = |m: String| AdapterError::malformed(origin, m);
        let mut deltas: Vec<LowRankDelta> = Vec::new();
        for (i, (adapter, weight)) in parts.iter().enumerate() {
            if !weight.is_finite() {
                return Err(err(format!(
                    "adapter {}: expected a finite weight, found {weight}",
                    i + 1
                )));
            }
            for d in &adapter.deltas {
                let scaled_b: Vec<f32> = d.b.iter().map(|v| v * weight).collect();
                match deltas.iter_mut().find(|s| s.target == d.target) {
                    None => deltas.push(LowRankDelta {
                        b: scaled_b,
                        ..d.clone()
                    }),
                    Some(sum) if (sum.inputs, sum.outputs) != (d.inputs, d.outputs) => {
                        return Err(err(format!(
                            "{}: adapter {} has shape [{}, {}], an earlier one [{}, {}]",
                            d.target,
                            i + 1,
                            d.outputs,
                            d.inputs,
                            sum.outputs,
                            sum.inputs
                        )));
                    }
                    Some(sum) => {
                        // A stacks rows; B, [outputs, rank] row-major, gains columns.
                        sum.a.extend_from_slice(&d.a);
                        let rank = sum.rank + d.rank;
                        let mut b = Vec::with_capacity(sum.outputs * rank);
                        for (old, new) in sum
                            .b
                            .chunks_exact(sum.rank)
                            .zip(scaled_b.chunks_exact(d.rank))
                        {
                            b.extend_from_slice(old);
                            b.extend_from_slice(new);
                        }
                        sum.b = b;
                        sum.rank = rank;
                    }
                }
            }
        }
        Ok(LoraAdapter {
            deltas,
            metadata: BTreeMap::new(),
        })
    }

    /// Each update cut to at most `rank` (the best approximation in the Frobenius norm, by
    /// the SVD of `B·A`), with the share of each update's squared norm left out, per target in
    /// order. `B·A` is factored through the thin QR decompositions of `B` and `Aᵀ`, so only an
    /// `r × r` matrix is decomposed (one-sided Jacobi, in f64). Updates already within `rank`
    /// are kept as they are.
    pub fn truncated(&self, rank: usize) -> (LoraAdapter, Vec<f64>) {
        let mut dropped = Vec::new();
        let deltas = self
            .deltas
            .iter()
            .map(|d| {
                if d.rank <= rank {
                    dropped.push(0.0);
                    return d.clone();
                }
                let (out, lost) = truncate_delta(d, rank);
                dropped.push(lost);
                out
            })
            .collect();
        (
            LoraAdapter {
                deltas,
                metadata: self.metadata.clone(),
            },
            dropped,
        )
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

/// Thin QR of the `rows × cols` column-major matrix `m` by modified Gram-Schmidt: `Q`
/// (column-major, orthonormal columns, a zero column where `m` has no new direction) and `R`
/// (`cols × cols`, row-major).
fn thin_qr(mut m: Vec<f64>, rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut r = vec![0f64; cols * cols];
    let scale = m.iter().fold(0f64, |a, v| a.max(v.abs()));
    for j in 0..cols {
        for i in 0..j {
            let dot: f64 = (0..rows).map(|t| m[i * rows + t] * m[j * rows + t]).sum();
            r[i * cols + j] = dot;
            for t in 0..rows {
                m[j * rows + t] -= dot * m[i * rows + t];
            }
        }
        let norm = (0..rows)
            .map(|t| m[j * rows + t].powi(2))
            .sum::<f64>()
            .sqrt();
        r[j * cols + j] = norm;
        let column = &mut m[j * rows..(j + 1) * rows];
        if norm > 1e-12 * scale.max(f64::MIN_POSITIVE) {
            column.iter_mut().for_each(|v| *v /= norm);
        } else {
            column.iter_mut().for_each(|v| *v = 0.0);
            r[j * cols + j] = 0.0;
        }
    }
    (m, r)
}

/// One-sided Jacobi SVD of the `n × n` row-major `m`: `(U·S, V)`, both row-major, columns in
/// the order of decreasing singular value `‖(U·S)[:, j]‖`.
fn jacobi_svd(m: &[f64], n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut us = m.to_vec();
    let mut v: Vec<f64> = (0..n * n)
        .map(|i| f64::from(u8::from(i / n == i % n)))
        .collect();
    for _sweep in 0..60 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (mut alpha, mut beta, mut gamma) = (0f64, 0f64, 0f64);
                for i in 0..n {
                    let (x, y) = (us[i * n + p], us[i * n + q]);
                    alpha += x * x;
                    beta += y * y;
                    gamma += x * y;
                }
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let t = if zeta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for mat in [&mut us, &mut v] {
                    for i in 0..n {
                        let (x, y) = (mat[i * n + p], mat[i * n + q]);
                        mat[i * n + p] = c * x - s * y;
                        mat[i * n + q] = s * x + c * y;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let sigma: Vec<f64> = (0..n)
        .map(|j| (0..n).map(|i| us[i * n + j].powi(2)).sum::<f64>().sqrt())
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| sigma[b].total_cmp(&sigma[a]));
    let permute = |mat: &[f64]| -> Vec<f64> {
        (0..n * n)
            .map(|i| mat[(i / n) * n + order[i % n]])
            .collect()
    };
    let sorted: Vec<f64> = order.iter().map(|&j| sigma[j]).collect();
    (permute(&us), permute(&v), sorted)
}

/// `d` cut to `rank` by the SVD of `B·A`, and the share of its squared norm left out.
fn truncate_delta(d: &LowRankDelta, rank: usize) -> (LowRankDelta, f64) {
    let r = d.rank;
    // B's columns and Aᵀ's columns (A's rows), column-major.
    let b_cols: Vec<f64> = (0..r)
        .flat_map(|t| (0..d.outputs).map(move |j| (j, t)))
        .map(|(j, t)| f64::from(d.b[j * r + t]))
        .collect();
    let a_rows: Vec<f64> = d.a.iter().map(|&v| f64::from(v)).collect();
    let (qb, rb) = thin_qr(b_cols, d.outputs, r);
    let (qa, ra) = thin_qr(a_rows, d.inputs, r);
    // B·A = Qb·(Rb·Raᵀ)·Qaᵀ.
    let mut m = vec![0f64; r * r];
    for i in 0..r {
        for j in 0..r {
            m[i * r + j] = (0..r).map(|t| rb[i * r + t] * ra[j * r + t]).sum();
        }
    }
    let (us, v, sigma) = jacobi_svd(&m, r);
    let total: f64 = sigma.iter().map(|s| s * s).sum();
    let kept: f64 = sigma.iter().take(rank).map(|s| s * s).sum();
    let lost = if total > 0.0 {
        (total - kept).max(0.0) / total
    } else {
        0.0
    };
    // B' = Qb·(U·S)[:, ..rank]; A' = (Qa·V[:, ..rank])ᵀ.
    let mut b = vec![0f32; d.outputs * rank];
    for j in 0..d.outputs {
        for k in 0..rank {
            b[j * rank + k] = (0..r)
                .map(|t| qb[t * d.outputs + j] * us[t * r + k])
                .sum::<f64>() as f32;
        }
    }
    let mut a = vec![0f32; rank * d.inputs];
    for k in 0..rank {
        for i in 0..d.inputs {
            a[k * d.inputs + i] = (0..r)
                .map(|t| qa[t * d.inputs + i] * v[t * r + k])
                .sum::<f64>() as f32;
        }
    }
    (
        LowRankDelta {
            target: d.target.clone(),
            rank,
            inputs: d.inputs,
            outputs: d.outputs,
            a,
            b,
        },
        lost,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row-at-a-time product gives each element the bits of its dot product, summed in
    /// order from zero, on values whose rounding would show a different order.
    #[test]
    fn dense_transposed_matches_the_dot_products_to_the_bit() {
        let (rank, k, n) = (8, 37, 29);
        let value = |i: usize| ((i * 7919 % 1013) as f32 - 506.0) * 1.37e-3 + 1e-7 * i as f32;
        let delta = LowRankDelta {
            target: "t".into(),
            rank,
            inputs: k,
            outputs: n,
            a: (0..rank * k).map(value).collect(),
            b: (0..n * rank).map(|i| value(i + 5000)).collect(),
        };
        let got = delta.dense_transposed();
        assert_eq!(got.len(), k * n);
        for i in 0..k {
            for j in 0..n {
                let mut acc = 0f32;
                for t in 0..rank {
                    acc += delta.b[j * rank + t] * delta.a[t * k + i];
                }
                assert_eq!(got[i * n + j].to_bits(), acc.to_bits(), "({i}, {j})");
            }
        }
    }

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

    /// The summed adapter's dense update is the weighted sum of the parts' dense updates.
    #[test]
    fn weighted_sum_adds_the_dense_updates() {
        let first = LoraAdapter {
            deltas: vec![delta("q"), delta("k")],
            metadata: BTreeMap::new(),
        };
        let mut other_q = delta("q");
        other_q.rank = 1;
        other_q.a = vec![0.5, -2., 1.];
        other_q.b = vec![3., -0.75];
        let second = LoraAdapter {
            deltas: vec![other_q.clone()],
            metadata: BTreeMap::new(),
        };
        let sum = LoraAdapter::weighted_sum(&[(&first, 0.5), (&second, 0.25)], "sum").unwrap();
        assert_eq!(sum.deltas.len(), 2);
        assert_eq!(sum.deltas[0].rank, 3);
        let want: Vec<f32> = delta("q")
            .dense_transposed()
            .iter()
            .zip(other_q.dense_transposed())
            .map(|(a, b)| 0.5 * a + 0.25 * b)
            .collect();
        for (g, w) in sum.deltas[0].dense_transposed().iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{g} against {w}");
        }
        // "k" is only in the first: half of its update.
        let k: Vec<f32> = delta("k")
            .dense_transposed()
            .iter()
            .map(|v| v * 0.5)
            .collect();
        assert_eq!(sum.deltas[1].dense_transposed(), k);
        // What is written reads back (in the file's order of names).
        let mut back = LoraAdapter::from_safetensors(&sum.to_safetensors(), "sum").unwrap();
        back.deltas.sort_by(|a, b| b.target.cmp(&a.target));
        assert_eq!(back, sum);

        let mut wide = delta("q");
        wide.inputs = 2;
        wide.a = vec![1., 2., 3., 4.];
        let wide = LoraAdapter {
            deltas: vec![wide],
            metadata: BTreeMap::new(),
        };
        let e = LoraAdapter::weighted_sum(&[(&first, 0.5), (&wide, 0.5)], "sum")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("q: adapter 2 has shape [2, 2], an earlier one [2, 3]"),
            "{e}"
        );
        let e = LoraAdapter::weighted_sum(&[(&first, f32::NAN)], "sum")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a finite weight"), "{e}");
    }

    /// Cutting a sum of updates to a rank that holds it loses nothing; to a lower rank, it
    /// leaves out the smallest singular values, as reported.
    #[test]
    fn truncation_keeps_the_leading_singular_directions() {
        let value = |i: usize| ((i * 7919 % 1013) as f32 - 506.0) * 1.37e-3;
        let make = |rank: usize, seed: usize| LowRankDelta {
            target: "t".into(),
            rank,
            inputs: 23,
            outputs: 17,
            a: (0..rank * 23).map(|i| value(i + seed)).collect(),
            b: (0..17 * rank).map(|i| value(i + seed + 999)).collect(),
        };
        let one = |d: LowRankDelta| LoraAdapter {
            deltas: vec![d],
            metadata: BTreeMap::new(),
        };
        // Two rank-2 updates summed: rank 4 as stored, rank 4 in fact.
        let (x, y) = (one(make(2, 0)), one(make(2, 50)));
        let sum = LoraAdapter::weighted_sum(&[(&x, 0.5), (&y, 0.5)], "sum").unwrap();
        let dense = sum.deltas[0].dense_transposed();
        let norm2: f64 = dense.iter().map(|v| f64::from(*v).powi(2)).sum();
        let (same, lost) = sum.truncated(3);
        assert_eq!(same.deltas[0].rank, 3);
        // The best rank-3 error is the smallest singular value's share, and the cut reaches it.
        let err2: f64 = same.deltas[0]
            .dense_transposed()
            .iter()
            .zip(&dense)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum();
        assert!(lost[0] > 0.0 && lost[0] < 1.0, "{lost:?}");
        assert!(
            (err2 / norm2 - lost[0]).abs() < 1e-5,
            "{} vs {}",
            err2 / norm2,
            lost[0]
        );
        // A stacked rank-4 update whose second half repeats the first has rank 2: cutting to 2
        // keeps it whole.
        let doubled = LoraAdapter::weighted_sum(&[(&x, 0.5), (&x, 0.5)], "sum").unwrap();
        assert_eq!(doubled.deltas[0].rank, 4);
        let (cut, lost) = doubled.truncated(2);
        assert!(lost[0] < 1e-10, "{lost:?}");
        for (a, b) in cut.deltas[0]
            .dense_transposed()
            .iter()
            .zip(x.deltas[0].dense_transposed())
        {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Within the rank already: unchanged.
        assert_eq!(x.truncated(8).0, x);
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
