//! A one-hidden-layer head: `sigmoid(relu(x·W1 + b1)·W2 + b2)`, all labels at once, trained
//! with Adam on mean binary cross-entropy plus an L2 penalty (scikit-learn's `MLPClassifier`
//! objective), in minibatches, stopping early on a development split's loss.
//!
//! Deterministic: the initialisation and the minibatch order come from `seed`, and every sum is
//! taken in a fixed order whatever the number of threads.

use crate::{Dense, SplitMix64 as Rng, TrainError};

/// Options for [`fit_mlp`]. Checked by [`MlpOptions::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct MlpOptions {
    /// Hidden units.
    pub hidden: usize,
    pub learning_rate: f64,
    /// L2 penalty on the weights (scikit-learn's `alpha`), divided by the rows of a batch.
    pub alpha: f64,
    pub batch_size: usize,
    /// Epochs at most.
    pub max_epochs: usize,
    /// Stop after this many epochs without a lower development loss; the best epoch's
    /// weights are kept.
    pub patience: usize,
    pub seed: u64,
    /// Threads for the matrix products.
    pub jobs: usize,
}

impl Default for MlpOptions {
    fn default() -> Self {
        MlpOptions {
            hidden: 512,
            learning_rate: 1e-3,
            alpha: 1e-4,
            batch_size: 200,
            max_epochs: 200,
            patience: 10,
            seed: 20261128,
            jobs: 1,
        }
    }
}

impl MlpOptions {
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Shape(format!("MLP options: {m}")));
        if self.hidden == 0 || self.batch_size == 0 || self.max_epochs == 0 || self.jobs == 0 {
            return bad("hidden units, batch size, epochs and jobs must be ≥ 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("the learning rate must be a positive number");
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return bad("alpha must be ≥ 0");
        }
        Ok(())
    }
}

/// A trained MLP head and how training went.
#[derive(Debug, Clone)]
pub struct MlpModel {
    pub hidden: Dense,
    pub output: Dense,
    /// Epochs run, and the one whose weights were kept.
    pub epochs: usize,
    pub best_epoch: usize,
    /// Mean binary cross-entropy on the development rows after each epoch.
    pub dev_loss: Vec<f64>,
}

/// `c[m×n] = a[m×k] · b[k×n]` (+ `bias` per column), rows of `c` split over `jobs` threads.
fn matmul(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    jobs: usize,
) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    let rows_per = m.div_ceil(jobs.max(1)).max(1);
    std::thread::scope(|s| {
        for (chunk, a_rows) in c.chunks_mut(rows_per * n).zip(a.chunks(rows_per * k)) {
            s.spawn(move || {
                for (ci, ai) in chunk.chunks_exact_mut(n).zip(a_rows.chunks_exact(k)) {
                    if let Some(bias) = bias {
                        ci.copy_from_slice(bias);
                    }
                    for (&x, bk) in ai.iter().zip(b.chunks_exact(n)) {
                        if x != 0.0 {
                            for (c, w) in ci.iter_mut().zip(bk) {
                                *c += x * w;
                            }
                        }
                    }
                }
            });
        }
    });
    c
}

/// `c[k×n] = a[m×k]ᵀ · b[m×n]`, rows of `c` split over `jobs` threads.
fn matmul_tn(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, jobs: usize) -> Vec<f32> {
    let mut c = vec![0f32; k * n];
    let rows_per = k.div_ceil(jobs.max(1)).max(1);
    std::thread::scope(|s| {
        for (part, chunk) in c.chunks_mut(rows_per * n).enumerate() {
            s.spawn(move || {
                let first = part * rows_per;
                for i in 0..m {
                    let (ai, bi) = (&a[i * k..(i + 1) * k], &b[i * n..(i + 1) * n]);
                    for (r, cr) in chunk.chunks_exact_mut(n).enumerate() {
                        let x = ai[first + r];
                        if x != 0.0 {
                            for (c, v) in cr.iter_mut().zip(bi) {
                                *c += x * v;
                            }
                        }
                    }
                }
            });
        }
    });
    c
}

/// `c[m×k] = a[m×n] · b[k×n]ᵀ`.
fn matmul_nt(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * k];
    for (ci, ai) in c.chunks_exact_mut(k).zip(a.chunks_exact(n)) {
        for (cv, bj) in ci.iter_mut().zip(b.chunks_exact(n)) {
            *cv = ai.iter().zip(bj).map(|(x, y)| x * y).sum();
        }
    }
    c
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Mean over rows and labels of the binary cross-entropy of logits `z` against `gold`.
fn bce(z: &[f32], gold: &[bool]) -> f64 {
    let total: f64 = z
        .iter()
        .zip(gold)
        .map(|(&z, &y)| {
            let z = f64::from(z);
            z.max(0.0) - if y { z } else { 0.0 } + (-z.abs()).exp().ln_1p()
        })
        .sum();
    total / z.len().max(1) as f64
}

struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    fn new(len: usize) -> Self {
        Adam {
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    fn step(&mut self, w: &mut [f32], g: &[f32], lr: f64, t: i32) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let step = (lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t))) as f32;
        for i in 0..w.len() {
            self.m[i] = 0.9 * self.m[i] + 0.1 * g[i];
            self.v[i] = 0.999 * self.v[i] + 0.001 * g[i] * g[i];
            w[i] -= step * self.m[i] / (self.v[i].sqrt() + eps as f32);
        }
    }
}

impl MlpModel {
    /// Positive scores, `rows * labels`.
    pub fn predict(&self, x: &[f32], rows: usize, jobs: usize) -> Vec<f32> {
        self.forward(x, rows, jobs)
            .1
            .into_iter()
            .map(sigmoid)
            .collect()
    }

    /// The hidden activations (`rows * hidden`) and the logits (`rows * labels`).
    fn forward(&self, x: &[f32], rows: usize, jobs: usize) -> (Vec<f32>, Vec<f32>) {
        let (d, h, l) = (self.hidden.inputs, self.hidden.outputs, self.output.outputs);
        let mut a = matmul(
            x,
            &self.hidden.weights,
            Some(&self.hidden.bias),
            rows,
            d,
            h,
            jobs,
        );
        a.iter_mut().for_each(|v| *v = v.max(0.0));
        let z = matmul(
            &a,
            &self.output.weights,
            Some(&self.output.bias),
            rows,
            h,
            l,
            jobs,
        );
        (a, z)
    }
}

/// Fits an MLP head on `rows` embeddings of width `dim` (`x`, row-major) with `gold`
/// (`rows * labels`), stopping early on the development rows `dev_x`/`dev_gold`.
/// `progress(epoch, dev_loss)` is called after each epoch.
#[allow(clippy::too_many_arguments)]
pub fn fit_mlp(
    x: &[f32],
    rows: usize,
    dim: usize,
    gold: &[bool],
    dev_x: &[f32],
    dev_gold: &[bool],
    labels: usize,
    options: &MlpOptions,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<MlpModel, TrainError> {
    options.validate()?;
    let dev_rows = dev_gold.len() / labels.max(1);
    if x.len() != rows * dim || gold.len() != rows * labels || dev_x.len() != dev_rows * dim {
        return Err(TrainError::Shape(format!(
            "MLP: {} values for {rows} rows of {dim}, {} gold for {labels} labels, {} dev values for {dev_rows} rows",
            x.len(),
            gold.len(),
            dev_x.len()
        )));
    }
    if rows == 0 || dev_rows == 0 {
        return Err(TrainError::Shape(
            "MLP: no training or no development rows".into(),
        ));
    }
    let (h, jobs) = (options.hidden, options.jobs);
    let mut rng = Rng::new(options.seed);
    // Glorot-uniform, as scikit-learn initialises ReLU and logistic layers.
    let init = |rng: &mut Rng, fan_in: usize, fan_out: usize, gain: f64| -> Vec<f32> {
        let bound = gain * (6.0 / (fan_in + fan_out) as f64).sqrt();
        (0..fan_in * fan_out).map(|_| rng.uniform(bound)).collect()
    };
    let mut model = MlpModel {
        hidden: Dense {
            inputs: dim,
            outputs: h,
            weights: init(&mut rng, dim, h, 1.0),
            bias: (0..h)
                .map(|_| rng.uniform((6.0 / (dim + h) as f64).sqrt()))
                .collect(),
        },
        output: Dense {
            inputs: h,
            outputs: labels,
            weights: init(&mut rng, h, labels, 2f64.sqrt()),
            bias: (0..labels)
                .map(|_| rng.uniform(2f64.sqrt() * (6.0 / (h + labels) as f64).sqrt()))
                .collect(),
        },
        epochs: 0,
        best_epoch: 0,
        dev_loss: vec![],
    };
    let mut opt = [
        Adam::new(dim * h),
        Adam::new(h),
        Adam::new(h * labels),
        Adam::new(labels),
    ];
    let mut order: Vec<usize> = (0..rows).collect();
    let mut best: Option<(f64, MlpModel)> = None;
    let mut t = 0i32;
    for epoch in 1..=options.max_epochs {
        rng.shuffle(&mut order);
        for batch in order.chunks(options.batch_size) {
            let b = batch.len();
            let xb: Vec<f32> = batch
                .iter()
                .flat_map(|&r| &x[r * dim..(r + 1) * dim])
                .copied()
                .collect();
            let (a, z) = model.forward(&xb, b, jobs);
            // d(mean over rows of summed label losses)/dz, as scikit-learn scales it.
            let mut dz = vec![0f32; b * labels];
            for (r, &row) in batch.iter().enumerate() {
                for l in 0..labels {
                    let y = if gold[row * labels + l] { 1.0 } else { 0.0 };
                    dz[r * labels + l] = (sigmoid(z[r * labels + l]) - y) / b as f32;
                }
            }
            let l2 = (options.alpha / b as f64) as f32;
            let mut g_w2 = matmul_tn(&a, &dz, b, h, labels, jobs);
            for (g, w) in g_w2.iter_mut().zip(&model.output.weights) {
                *g += l2 * w;
            }
            let g_b2: Vec<f32> = (0..labels)
                .map(|l| (0..b).map(|r| dz[r * labels + l]).sum())
                .collect();
            let mut da = matmul_nt(&dz, &model.output.weights, b, labels, h);
            for (d, a) in da.iter_mut().zip(&a) {
                if *a <= 0.0 {
                    *d = 0.0;
                }
            }
            let mut g_w1 = matmul_tn(&xb, &da, b, dim, h, jobs);
            for (g, w) in g_w1.iter_mut().zip(&model.hidden.weights) {
                *g += l2 * w;
            }
            let g_b1: Vec<f32> = (0..h)
                .map(|j| (0..b).map(|r| da[r * h + j]).sum())
                .collect();
            t += 1;
            let lr = options.learning_rate;
            opt[0].step(&mut model.hidden.weights, &g_w1, lr, t);
            opt[1].step(&mut model.hidden.bias, &g_b1, lr, t);
            opt[2].step(&mut model.output.weights, &g_w2, lr, t);
            opt[3].step(&mut model.output.bias, &g_b2, lr, t);
        }
        let loss = bce(&model.forward(dev_x, dev_rows, jobs).1, dev_gold);
        if !loss.is_finite() {
            return Err(TrainError::Shape(format!(
                "MLP: the development loss is {loss} after epoch {epoch}; lower the learning rate"
            )));
        }
        model.epochs = epoch;
        model.dev_loss.push(loss);
        progress(epoch, loss);
        if best.as_ref().is_none_or(|(b, _)| loss < *b) {
            model.best_epoch = epoch;
            best = Some((loss, model.clone()));
        } else if epoch - best.as_ref().map_or(0, |(_, m)| m.best_epoch) >= options.patience {
            break;
        }
    }
    let (_, mut kept) = best.expect("at least one epoch ran");
    kept.epochs = model.epochs;
    kept.dev_loss = model.dev_loss;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two labels: x0 > 0 and "exactly one of x0, x1 > 0" (XOR, which no linear head fits).
    fn xor_data(n: usize, seed: u64) -> (Vec<f32>, Vec<bool>) {
        let mut rng = Rng::new(seed);
        let mut x = Vec::new();
        let mut gold = Vec::new();
        for _ in 0..n {
            let (a, b) = (rng.uniform(1.0), rng.uniform(1.0));
            x.extend([a, b]);
            gold.extend([a > 0.0, (a > 0.0) != (b > 0.0)]);
        }
        (x, gold)
    }

    #[test]
    fn learns_xor_and_stops_on_the_dev_loss_deterministically() {
        let (x, gold) = xor_data(2000, 1);
        let (dx, dgold) = xor_data(500, 2);
        let options = MlpOptions {
            hidden: 16,
            learning_rate: 1e-2,
            batch_size: 50,
            max_epochs: 60,
            patience: 5,
            jobs: 2,
            ..Default::default()
        };
        let fit = |jobs| {
            let o = MlpOptions {
                jobs,
                ..options.clone()
            };
            fit_mlp(&x, 2000, 2, &gold, &dx, &dgold, 2, &o, &mut |_, _| {}).unwrap()
        };
        let m = fit(2);
        let p = m.predict(&dx, 500, 1);
        let accuracy = |label: usize| {
            (0..500)
                .filter(|&r| (p[r * 2 + label] >= 0.5) == dgold[r * 2 + label])
                .count() as f64
                / 500.0
        };
        assert!(accuracy(0) > 0.95, "{}", accuracy(0));
        assert!(accuracy(1) > 0.9, "xor {}", accuracy(1));
        assert_eq!(m.dev_loss.len(), m.epochs);
        let best = m.dev_loss[m.best_epoch - 1];
        assert!(m.dev_loss.iter().all(|&l| l >= best));
        // Threads do not change a bit.
        let one = fit(1);
        assert_eq!(one.hidden.weights, m.hidden.weights);
        assert_eq!(one.output.bias, m.output.bias);
    }

    #[test]
    fn bad_options_and_shapes_are_errors() {
        let (x, gold) = xor_data(10, 1);
        let run = |o: &MlpOptions, rows: usize| {
            fit_mlp(&x, rows, 2, &gold, &x, &gold, 2, o, &mut |_, _| {})
        };
        let zero = MlpOptions {
            hidden: 0,
            ..Default::default()
        };
        assert!(run(&zero, 10).unwrap_err().to_string().contains("≥ 1"));
        let nan = MlpOptions {
            learning_rate: f64::NAN,
            ..Default::default()
        };
        assert!(
            run(&nan, 10)
                .unwrap_err()
                .to_string()
                .contains("learning rate")
        );
        assert!(
            run(&MlpOptions::default(), 9)
                .unwrap_err()
                .to_string()
                .contains("9 rows")
        );
    }

    #[test]
    fn products_match_their_definitions() {
        let (m, k, n) = (5, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.25).collect();
        let c = matmul(&a, &b, None, m, k, n, 2);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
        let d: Vec<f32> = (0..m * n).map(|i| i as f32 - 7.0).collect();
        let tn = matmul_tn(&a, &d, m, k, n, 3);
        let nt = matmul_nt(&d, &b, m, n, k);
        for t in 0..k {
            for j in 0..n {
                let want: f32 = (0..m).map(|i| a[i * k + t] * d[i * n + j]).sum();
                assert!((tn[t * n + j] - want).abs() < 1e-4);
            }
        }
        for i in 0..m {
            for t in 0..k {
                let want: f32 = (0..n).map(|j| d[i * n + j] * b[t * n + j]).sum();
                assert!((nt[i * k + t] - want).abs() < 1e-4);
            }
        }
    }
}
