//! Head fusion: prove that every label's positive score is `sigmoid(x · w + b)` for the same
//! input `x`, and if so replace the graph by one `[D, 28]` matmul + bias + sigmoid.
//!
//! The proof walks the ONNX graph once, tracking for every tensor of shape `[N, K]` what each
//! of its `K` columns is as a function of `x`:
//!
//! - `Affine(w, b)`: `x · w + b`;
//! - `Sigmoid(w, b)`: `sigmoid(x · w + b)`;
//! - `Other`: anything else (e.g. `1 - sigmoid(...)`, which label outputs carry in column 0
//!   and which is never a score).
//!
//! Ops understood: LinearClassifier (LOGISTIC or NONE), MatMul, Gemm, Add, Sub, Sigmoid,
//! Concat, Slice, Gather and Identity along the column axis. Anything else, or a constant we
//! cannot read, means "not provably linear-logistic" and the caller runs the graph as it is.

use super::signature::{Columns, Signature};
use emotions_kernels::Isa;
use emotions_kernels::head::HeadKernel;
use emotions_labels::NUM_LABELS;
use std::collections::HashMap;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::axes::AxesMapping;
use tract_onnx::tract_core::ops::einsum::EinSum;

#[derive(Clone, Debug, PartialEq)]
enum Column {
    Affine { w: Vec<f32>, b: f32 },
    Sigmoid { w: Vec<f32>, b: f32 },
    Other,
}

/// A linear-logistic head: `scores = sigmoid(x · weights + bias)`, label order.
pub(crate) struct LinearLogistic {
    input_name: String,
    dim: usize,
    /// `[D, 28]`, row-major.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl LinearLogistic {
    /// The layer as the ONNX writer takes it.
    pub(crate) fn dense(&self) -> crate::export::Dense {
        crate::export::Dense {
            inputs: self.dim,
            outputs: NUM_LABELS,
            weights: self.weights.clone(),
            bias: self.bias.clone(),
        }
    }

    /// The optimised plan: a dedicated kernel, on `isa`.
    pub(crate) fn kernel(&self, isa: Isa) -> HeadKernel {
        HeadKernel::new(isa, self.dim, &self.weights, &self.bias)
    }

    /// The decluttered plan: the same function as a three-node tract graph.
    pub(crate) fn typed_model(&self) -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let batch = model.sym("N");
        let x = model.add_source(
            &self.input_name,
            f32::fact(&[batch.to_dim(), self.dim.to_dim()]),
        )?;
        let w = model.add_const(
            "fused.weights",
            Tensor::from_shape(&[self.dim, NUM_LABELS], &self.weights)?,
        )?;
        let b = model.add_const(
            "fused.bias",
            Tensor::from_shape(&[1, NUM_LABELS], &self.bias)?,
        )?;
        let axes = AxesMapping::for_numpy_matmul(2, false, false, false)?;
        let z = model.wire_node(
            "fused.matmul",
            EinSum::new(axes, f32::datum_type()),
            &[x, w],
        )?;
        let z = model.wire_node(
            "fused.bias_add",
            tract_onnx::tract_core::ops::math::add(),
            &[z[0], b],
        )?;
        let p = model.wire_node(
            "fused.sigmoid",
            tract_onnx::tract_core::ops::nn::sigmoid(),
            &z,
        )?;
        model.select_output_outlets(&p)?;
        Ok(model)
    }
}

/// Tensors we can see through: graph constants, or per-column functions of the input.
enum Value {
    Const(Tensor),
    Columns(Vec<Column>),
}

pub(crate) fn extract_linear_logistic(
    proto: &pb::ModelProto,
    sig: &Signature,
) -> Option<LinearLogistic> {
    let graph = proto.graph.as_ref()?;
    let dim = sig.input_dim;
    let mut values: HashMap<String, Value> = HashMap::new();
    for init in &graph.initializer {
        values.insert(init.name.clone(), Value::Const(const_tensor(init)?));
    }
    let identity = (0..dim)
        .map(|i| {
            let mut w = vec![0f32; dim];
            w[i] = 1.0;
            Column::Affine { w, b: 0.0 }
        })
        .collect();
    values.insert(sig.input_name.clone(), Value::Columns(identity));

    for node in &graph.node {
        let outs = eval_node(node, &values, dim)?;
        for (name, v) in node.output.iter().zip(outs) {
            if let Some(v) = v {
                values.insert(name.clone(), v);
            }
        }
    }

    let mut weights = vec![0f32; dim * NUM_LABELS];
    let mut bias = vec![0f32; NUM_LABELS];
    for label in 0..NUM_LABELS {
        let column = match &sig.columns {
            Columns::PerLabel => match values.get(&sig.outputs[label])? {
                Value::Columns(cols) if cols.len() == 2 => &cols[1],
                _ => return None,
            },
            Columns::Single { width, column_of } => match values.get(&sig.outputs[0])? {
                Value::Columns(cols) if cols.len() == *width => &cols[column_of[label]],
                _ => return None,
            },
            Columns::Fused => return None,
        };
        let Column::Sigmoid { w, b } = column else {
            return None;
        };
        for (i, wi) in w.iter().enumerate() {
            weights[i * NUM_LABELS + label] = *wi;
        }
        bias[label] = *b;
    }
    Some(LinearLogistic {
        input_name: sig.input_name.clone(),
        dim,
        weights,
        bias,
    })
}

fn const_tensor(t: &pb::TensorProto) -> Option<Tensor> {
    use pb::tensor_proto::DataType;
    // Only numeric types we use; tract's loader panics on some exotic ones.
    let wanted = [
        DataType::Float,
        DataType::Double,
        DataType::Int64,
        DataType::Int32,
    ];
    if !wanted.iter().any(|d| *d as i32 == t.data_type) || !t.external_data.is_empty() {
        return None;
    }
    let tensor =
        tract_onnx::tensor::load_tensor(&tract_onnx::data_resolver::MmapDataResolver, t, None)
            .ok()?;
    match tensor.datum_type() {
        DatumType::F32 | DatumType::I64 => Some(tensor),
        DatumType::F64 | DatumType::I32 => tensor.cast_to::<f32>().ok().map(|c| c.into_owned()),
        _ => None,
    }
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_i(node: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_f(node: &pb::NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

fn f32s(t: &Tensor) -> Option<Vec<f32>> {
    Some(
        t.cast_to::<f32>()
            .ok()?
            .to_plain_array_view::<f32>()
            .ok()?
            .iter()
            .copied()
            .collect(),
    )
}

fn i64s(t: &Tensor) -> Option<Vec<i64>> {
    Some(
        t.cast_to::<i64>()
            .ok()?
            .to_plain_array_view::<i64>()
            .ok()?
            .iter()
            .copied()
            .collect(),
    )
}

/// `cols · m + c` where `m` is `[k_in, k_out]` row-major; only affine columns combine.
fn affine_map(cols: &[Column], m: &[f32], k_out: usize, dim: usize) -> Option<Vec<Column>> {
    if m.len() != cols.len() * k_out {
        return None;
    }
    let mut out = vec![(vec![0f32; dim], 0f32); k_out];
    for (i, col) in cols.iter().enumerate() {
        let Column::Affine { w, b } = col else {
            return None;
        };
        for (k, (ow, ob)) in out.iter_mut().enumerate() {
            let coef = m[i * k_out + k];
            if coef != 0.0 {
                ow.iter_mut().zip(w).for_each(|(o, x)| *o += coef * x);
                *ob += coef * b;
            }
        }
    }
    Some(
        out.into_iter()
            .map(|(w, b)| Column::Affine { w, b })
            .collect(),
    )
}

/// Adds a constant broadcast along rows (scalar, `[K]` or `[1, K]`), times `sign`.
fn add_row_const(cols: &[Column], c: &Tensor, sign: f32) -> Option<Vec<Column>> {
    let shape = c.shape();
    let k = cols.len();
    let ok_shape = c.len() == 1 || shape == [k] || shape == [1, k];
    if !ok_shape {
        return None;
    }
    let c = f32s(c)?;
    cols.iter()
        .enumerate()
        .map(|(i, col)| match col {
            Column::Affine { w, b } => Some(Column::Affine {
                w: w.clone(),
                b: b + sign * c[if c.len() == 1 { 0 } else { i }],
            }),
            _ => None,
        })
        .collect()
}

fn column_axis_ok(axis: i64) -> bool {
    axis == 1 || axis == -1
}

/// Evaluates one node symbolically; `None` means "cannot see through this graph".
fn eval_node(
    node: &pb::NodeProto,
    values: &HashMap<String, Value>,
    dim: usize,
) -> Option<Vec<Option<Value>>> {
    let input = |ix: usize| {
        node.input
            .get(ix)
            .filter(|n| !n.is_empty())
            .and_then(|n| values.get(n))
    };
    let columns = |ix: usize| match input(ix) {
        Some(Value::Columns(c)) => Some(c),
        _ => None,
    };
    let constant = |ix: usize| match input(ix) {
        Some(Value::Const(t)) => Some(t),
        _ => None,
    };
    let one = |v: Vec<Column>| Some(vec![Some(Value::Columns(v))]);
    match node.op_type.as_str() {
        "Constant" => {
            let t = attr(node, "value")?.t.as_ref()?;
            Some(vec![Some(Value::Const(const_tensor(t)?))])
        }
        "Identity" => match input(0)? {
            Value::Columns(c) => one(c.clone()),
            Value::Const(t) => Some(vec![Some(Value::Const(t.clone()))]),
        },
        "MatMul" => {
            let m = constant(1)?;
            let [k_in, k_out] = m.shape() else {
                return None;
            };
            let cols = columns(0)?;
            (cols.len() == *k_in).then_some(())?;
            one(affine_map(cols, &f32s(m)?, *k_out, dim)?)
        }
        "Gemm" => {
            if attr_i(node, "transA", 0) != 0 {
                return None;
            }
            let (alpha, beta) = (attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0));
            let b = constant(1)?;
            let [r, c] = b.shape() else { return None };
            let mut m = f32s(b)?;
            let (k_in, k_out) = if attr_i(node, "transB", 0) != 0 {
                let mut t = vec![0f32; m.len()];
                for i in 0..*r {
                    for j in 0..*c {
                        t[j * r + i] = m[i * c + j];
                    }
                }
                m = t;
                (*c, *r)
            } else {
                (*r, *c)
            };
            m.iter_mut().for_each(|x| *x *= alpha);
            let cols = columns(0)?;
            (cols.len() == k_in).then_some(())?;
            let mut out = affine_map(cols, &m, k_out, dim)?;
            if let Some(bias) = constant(2) {
                let scaled = Tensor::from_shape(
                    bias.shape(),
                    &f32s(bias)?.iter().map(|x| x * beta).collect::<Vec<_>>(),
                )
                .ok()?;
                out = add_row_const(&out, &scaled, 1.0)?;
            } else if node.input.get(2).is_some_and(|n| !n.is_empty()) {
                return None;
            }
            one(out)
        }
        "Add" => match (input(0)?, input(1)?) {
            (Value::Columns(c), Value::Const(t)) | (Value::Const(t), Value::Columns(c)) => {
                one(add_row_const(c, t, 1.0)?)
            }
            _ => None,
        },
        "Sub" => match (input(0)?, input(1)?) {
            (Value::Columns(c), Value::Const(t)) => one(add_row_const(c, t, -1.0)?),
            // `1 - sigmoid`: the negative class, never read as a score.
            (Value::Const(_), Value::Columns(c)) => one(vec![Column::Other; c.len()]),
            _ => None,
        },
        "Sigmoid" => one(columns(0)?
            .iter()
            .map(|c| match c {
                Column::Affine { w, b } => Column::Sigmoid {
                    w: w.clone(),
                    b: *b,
                },
                _ => Column::Other,
            })
            .collect()),
        "Concat" => {
            column_axis_ok(attr_i(node, "axis", 0)).then_some(())?;
            let mut out = Vec::new();
            for ix in 0..node.input.len() {
                out.extend(columns(ix)?.iter().cloned());
            }
            one(out)
        }
        "Slice" => {
            let cols = columns(0)?;
            let (starts, ends, axes, steps) = if node.input.len() > 1 {
                let get = |ix: usize| constant(ix).and_then(i64s);
                (
                    get(1)?,
                    get(2)?,
                    if node.input.len() > 3 {
                        get(3)?
                    } else {
                        vec![0]
                    },
                    if node.input.len() > 4 {
                        get(4)?
                    } else {
                        vec![1]
                    },
                )
            } else {
                let ints = |n: &str| attr(node, n).map(|a| a.ints.clone());
                (
                    ints("starts")?,
                    ints("ends")?,
                    ints("axes").unwrap_or(vec![0]),
                    vec![1],
                )
            };
            let ([start], [end], [axis], [step]) = (&starts[..], &ends[..], &axes[..], &steps[..])
            else {
                return None;
            };
            (column_axis_ok(*axis) && *step == 1).then_some(())?;
            let k = cols.len() as i64;
            let clamp = |v: i64| if v < 0 { (v + k).max(0) } else { v.min(k) } as usize;
            let (s, e) = (clamp(*start), clamp(*end));
            one(cols.get(s..e.max(s))?.to_vec())
        }
        "Gather" => {
            column_axis_ok(attr_i(node, "axis", 0)).then_some(())?;
            let cols = columns(0)?;
            let idx = constant(1)?;
            (idx.rank() == 1).then_some(())?;
            let k = cols.len() as i64;
            let picked = i64s(idx)?
                .into_iter()
                .map(|i| cols.get(if i < 0 { i + k } else { i } as usize).cloned())
                .collect::<Option<Vec<_>>>()?;
            one(picked)
        }
        "LinearClassifier" => {
            let cols = columns(0)?;
            let coefficients = &attr(node, "coefficients")?.floats;
            let intercepts = attr(node, "intercepts")
                .map(|a| a.floats.clone())
                .unwrap_or_default();
            let post =
                attr(node, "post_transform").map(|a| String::from_utf8_lossy(&a.s).into_owned());
            let logistic = match post.as_deref() {
                None | Some("NONE") => false,
                Some("LOGISTIC") => true,
                _ => return None,
            };
            // A zero-width input (a Slice of no columns) has no linear form to prove.
            let models = coefficients.len().checked_div(cols.len())?;
            (models * cols.len() == coefficients.len() && models > 0).then_some(())?;
            (intercepts.is_empty() || intercepts.len() == models).then_some(())?;
            let n_classes = attr(node, "classlabels_ints")
                .map(|a| a.ints.len())
                .filter(|&n| n > 0)
                .or_else(|| attr(node, "classlabels_strings").map(|a| a.strings.len()))?;
            // coefficients are [models, D]; as a matmul matrix they are [D, models].
            let mut m = vec![0f32; coefficients.len()];
            for k in 0..models {
                for i in 0..cols.len() {
                    m[i * models + k] = coefficients[k * cols.len() + i];
                }
            }
            let mut z = affine_map(cols, &m, models, dim)?;
            if !intercepts.is_empty() {
                z = add_row_const(&z, &Tensor::from_shape(&[models], &intercepts).ok()?, 1.0)?;
            }
            let squash = |c: Column| match (c, logistic) {
                (Column::Affine { w, b }, true) => Column::Sigmoid { w, b },
                (c, _) => c,
            };
            let scores = if n_classes == 2 && models == 1 && attr_i(node, "multi_class", 0) == 0 {
                // Binary layout: [1 - p, p] (LOGISTIC) or [-z, z] (NONE).
                vec![Column::Other, squash(z.remove(0))]
            } else if n_classes == models {
                z.into_iter().map(squash).collect()
            } else {
                return None;
            };
            Some(vec![None, Some(Value::Columns(scores))])
        }
        _ => None,
    }
}
