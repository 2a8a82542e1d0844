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
