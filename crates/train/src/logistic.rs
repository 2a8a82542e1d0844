//! L2-regularised binary logistic regression, one model per label, fitted with L-BFGS.
//!
//! Per label the objective is scikit-learn's `LogisticRegression(C)` divided by `n`:
//!
//! `f(w, b) = (1/n) Σ_i s_i · logloss(y_i, σ(x_i·w + b)) + ||w||² / (2·C·n)`
//!
//! (`s_i` the class weight of `y_i`; the intercept is not penalised), so the minimiser is the
//! same as scikit-learn's. Stops when `max |∇f| <= tol`, or after `max_iter` iterations.

/// Class weighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassWeight {
    /// Every sample weighs 1.
    None,
    /// `n / (2 · n_class)` per class, as scikit-learn's `"balanced"`.
    Balanced,
}

impl ClassWeight {
    /// The name used on the command line and in head metadata.
    pub fn name(self) -> &'static str {
        match self {
            ClassWeight::None => "none",
            ClassWeight::Balanced => "balanced",
        }
    }

    /// The class weighting with this [`name`](ClassWeight::name).
    pub fn from_name(name: &str) -> Option<ClassWeight> {
        [ClassWeight::None, ClassWeight::Balanced]
            .into_iter()
            .find(|w| w.name() == name)
    }
}

/// Training options.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Inverse regularisation strength, per label (one value for all, or one per label).
    pub c: Vec<f64>,
    pub class_weight: ClassWeight,
    pub max_iter: usize,
    /// Stop when the largest gradient component is at most this.
    pub tol: f64,
    /// Threads fitting labels in parallel; results do not depend on it.
    pub jobs: usize,
    /// L-BFGS memory.
    pub history: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            c: vec![1.0],
            class_weight: ClassWeight::None,
            max_iter: 1000,
            tol: 1e-6,
            jobs: 1,
            history: 10,
        }
    }
}

/// Why a fit is invalid.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error("{rows} rows of {dim} need {expected} values, found {found}")]
    Shape {
        rows: usize,
        dim: usize,
        expected: usize,
        found: usize,
    },
    #[error("{found} label rows for {rows} embedding rows")]
    Labels { rows: usize, found: usize },
    #[error("C must be positive and finite, found {0}")]
    BadC(f64),
    #[error("expected one C or {labels} (one per label), found {found}")]
    CCount { labels: usize, found: usize },
    #[error("no training rows")]
    Empty,
}

/// How one label's fit ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convergence {
    pub iterations: usize,
    pub converged: bool,
    /// Largest gradient component at the end.
    pub grad_max: f64,
    pub objective: f64,
}

/// A fitted linear-logistic multi-label model: `P(label k | x) = σ(x·w_k + b_k)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub dim: usize,
    /// `[labels][dim]`.
    pub weights: Vec<Vec<f64>>,
    pub bias: Vec<f64>,
    pub convergence: Vec<Convergence>,
}

impl LinearModel {
    pub fn labels(&self) -> usize {
        self.bias.len()
    }

    /// Positive probabilities, `rows * labels` row-major, computed in f64 and rounded to f32.
    pub fn predict(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * self.labels());
        for row in x.chunks_exact(self.dim).take(rows) {
            for (w, b) in self.weights.iter().zip(&self.bias) {
                out.push(sigmoid(dot(row, w) + b) as f32);
            }
        }
        out
    }
}

/// Fits one logistic regression per label column of `y` (`rows * labels` booleans).
///
/// ```
/// use emotions_train::{fit, TrainOptions};
/// // y = [x > 0]: separable, so a weak penalty (large C) gives a large positive weight.
/// let x: Vec<f32> = (-50..50).map(|i| i as f32 / 50.0).collect();
/// let y: Vec<bool> = x.iter().map(|v| *v > 0.0).collect();
/// let weak = fit(&x, 100, 1, &y, 1, &TrainOptions { c: vec![100.0], ..Default::default() }).unwrap();
/// let strong = fit(&x, 100, 1, &y, 1, &TrainOptions { c: vec![0.01], ..Default::default() }).unwrap();
/// assert!(weak.convergence[0].converged && strong.convergence[0].converged);
/// assert!(weak.weights[0][0] > 10.0 * strong.weights[0][0] && strong.weights[0][0] > 0.0);
/// ```
pub fn fit(
    x: &[f32],
    rows: usize,
    dim: usize,
    y: &[bool],
    labels: usize,
    options: &TrainOptions,
) -> Result<LinearModel, FitError> {
    if rows.checked_mul(dim) != Some(x.len()) {
        return Err(FitError::Shape {
            rows,
            dim,
            expected: rows * dim,
            found: x.len(),
        });
    }
    if y.len() != rows * labels {
        return Err(FitError::Labels {
            rows,
            found: y.len() / labels.max(1),
        });
    }
    if rows == 0 {
        return Err(FitError::Empty);
    }
    if options.c.len() != 1 && options.c.len() != labels {
        return Err(FitError::CCount {
            labels,
            found: options.c.len(),
        });
    }
    if let Some(&c) = options.c.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
        return Err(FitError::BadC(c));
    }
    // f64 rows: the line search compares objectives that differ in the 10th digit.
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let fit_label = |k: usize| {
        let yk: Vec<bool> = (0..rows).map(|i| y[i * labels + k]).collect();
        let c = if options.c.len() == 1 {
            options.c[0]
        } else {
            options.c[k]
        };
        fit_one(&x64, rows, dim, &yk, c, options)
    };
    let jobs = options.jobs.clamp(1, labels.max(1));
    let mut results: Vec<Option<(Vec<f64>, f64, Convergence)>> = vec![None; labels];
    if jobs == 1 {
        for (k, r) in results.iter_mut().enumerate() {
            *r = Some(fit_label(k));
        }
    } else {
        // Labels are independent and each fit is deterministic, so any schedule gives the same model.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done = std::sync::Mutex::new(&mut results);
        std::thread::scope(|s| {
            for _ in 0..jobs {
                s.spawn(|| {
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if k >= labels {
                            break;
                        }
                        let r = fit_label(k);
                        done.lock().expect("results lock")[k] = Some(r);
                    }
                });
            }
        });
    }
    let mut model = LinearModel {
        dim,
        weights: vec![],
        bias: vec![],
        convergence: vec![],
    };
    for r in results {
        let (w, b, conv) = r.expect("every label fitted");
        model.weights.push(w);
        model.bias.push(b);
        model.convergence.push(conv);
    }
    Ok(model)
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(z))`, without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

fn dot<T: Copy + Into<f64>>(a: &[T], b: &[f64]) -> f64 {
    // Four accumulators let the compiler vectorise.
    let mut acc = [0f64; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..4 {
            acc[l] += x[l].into() * y[l];
        }
    }
    let tail: f64 = ar.iter().zip(br).map(|(x, y)| (*x).into() * y).sum();
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// One label's objective and gradient (`grad` is `[w..., b]`).
struct Objective<'a> {
    x: &'a [f64],
    rows: usize,
    dim: usize,
    y: &'a [bool],
    weight: [f64; 2],
    l2: f64,
}

impl Objective<'_> {
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let (w, b) = (&theta[..self.dim], theta[self.dim]);
        grad.fill(0.0);
        let mut loss = 0.0;
        for i in 0..self.rows {
            let xi = &self.x[i * self.dim..(i + 1) * self.dim];
            let z = dot(xi, w) + b;
            let (yi, s) = if self.y[i] {
                (1.0, self.weight[1])
            } else {
                (0.0, self.weight[0])
            };
            loss += s * if self.y[i] { softplus(-z) } else { softplus(z) };
            let r = s * (sigmoid(z) - yi);
            for (g, x) in grad[..self.dim].iter_mut().zip(xi) {
                *g += r * x;
            }
            grad[self.dim] += r;
        }
        let n = self.rows as f64;
        let mut reg = 0.0;
        for (g, wj) in grad[..self.dim].iter_mut().zip(w) {
            *g = *g / n + self.l2 * wj;
            reg += wj * wj;
        }
        grad[self.dim] /= n;
        loss / n + 0.5 * self.l2 * reg
    }
}

fn fit_one(
    x: &[f64],
    rows: usize,
    dim: usize,
    y: &[bool],
    c: f64,
    o: &TrainOptions,
) -> (Vec<f64>, f64, Convergence) {
    let n = rows as f64;
    let positives = y.iter().filter(|v| **v).count() as f64;
    let weight = match o.class_weight {
        ClassWeight::None => [1.0, 1.0],
        ClassWeight::Balanced if positives > 0.0 && positives < n => {
            [n / (2.0 * (n - positives)), n / (2.0 * positives)]
        }
        ClassWeight::Balanced => [1.0, 1.0],
    };
    let f = Objective {
        x,
        rows,
        dim,
        y,
        weight,
        l2: 1.0 / (c * n),
    };
    let p = dim + 1;
    let mut theta = vec![0.0; p];
    let mut grad = vec![0.0; p];
    let mut fx = f.eval(&theta, &mut grad);
    let max_abs = |g: &[f64]| g.iter().fold(0f64, |m, v| m.max(v.abs()));
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    let (mut new_theta, mut new_grad) = (vec![0.0; p], vec![0.0; p]);
    let mut iterations = 0;
    let mut converged = max_abs(&grad) <= o.tol;
    while !converged && iterations < o.max_iter {
        iterations += 1;
        // Two-loop recursion: direction = -H·g.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, yv, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(yv).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = history
            .back()
            .map_or(1.0 / max_abs(&grad).max(1.0), |(s, yv, _)| {
                dot(s, yv) / dot(yv, yv)
            });
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, yv, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let bcoef = rho * dot(yv, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(qi, si)| *qi += (a - bcoef) * si);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&grad, &dir);
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            history.clear();
            dir = grad.iter().map(|g| -g).collect();
            slope = -dot(&grad, &grad);
        }
        // Backtracking line search with the Armijo condition.
        let mut step = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            new_theta
                .iter_mut()
                .zip(&theta)
                .zip(&dir)
                .for_each(|((n, t), d)| *n = t + step * d);
            let fnew = f.eval(&new_theta, &mut new_grad);
            if fnew <= fx + 1e-4 * step * slope {
                let s: Vec<f64> = new_theta.iter().zip(&theta).map(|(a, b)| a - b).collect();
                let yv: Vec<f64> = new_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &yv);
                if sy > 1e-12 {
                    if history.len() == o.history {
                        history.pop_front();
                    }
                    history.push_back((s, yv, 1.0 / sy));
                }
                std::mem::swap(&mut theta, &mut new_theta);
                std::mem::swap(&mut grad, &mut new_grad);
                fx = fnew;
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        converged = max_abs(&grad) <= o.tol;
        if !accepted {
            // No decrease representable in f64: as close as this precision allows.
            break;
        }
    }
    let b = theta[dim];
    theta.truncate(dim);
    (
        theta,
        b,
        Convergence {
            iterations,
            converged,
            grad_max: max_abs(&grad),
            objective: fx,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels drawn from a known logistic model; with plenty of data and a weak penalty the fit
    /// recovers its weights.
    #[test]
    fn recovers_a_known_model() {
        let (rows, dim) = (20_000, 3);
        let true_w = [[2.0, -1.0, 0.5], [-0.5, 0.0, 1.5]];
        let true_b = [-0.5, 0.25];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..rows {
            let row: Vec<f64> = (0..dim).map(|_| uniform() * 4.0 - 2.0).collect();
            for (w, b) in true_w.iter().zip(true_b) {
                let p = sigmoid(dot(&row, w) + b);
                y.push(uniform() < p);
            }
            x.extend(row.iter().map(|v| *v as f32));
        }
        let o = TrainOptions {
            c: vec![1e6],
            ..Default::default()
        };
        let m = fit(&x, rows, dim, &y, 2, &o).unwrap();
        for k in 0..2 {
            assert!(m.convergence[k].converged, "{:?}", m.convergence[k]);
            for (j, (got, want)) in m.weights[k].iter().zip(&true_w[k]).enumerate() {
                assert!((got - want).abs() < 0.1, "label {k} w{j}: {got} vs {want}");
            }
            assert!(
                (m.bias[k] - true_b[k]).abs() < 0.1,
                "label {k} b: {}",
                m.bias[k]
            );
        }
    }

    /// The optimum of a tiny problem, checked against its closed form: with one constant
    /// feature x = 1, no intercept effect, balanced data... solved by the stationarity condition.
    #[test]
    fn gradient_vanishes_at_the_solution() {
        let x = [0.0f32, 1.0, 2.0, 3.0, 0.5, 1.5];
        let y = [false, false, true, true, true, false];
        let o = TrainOptions {
            c: vec![0.7],
            tol: 1e-10,
            ..Default::default()
        };
        let m = fit(&x, 6, 1, &y, 1, &o).unwrap();
        // Stationarity: Σ (p_i - y_i) x_i / n + w / (C n) = 0 and Σ (p_i - y_i) = 0.
        let p: Vec<f64> = x
            .iter()
            .map(|&v| sigmoid(v as f64 * m.weights[0][0] + m.bias[0]))
            .collect();
        let r: Vec<f64> = p
            .iter()
            .zip(y)
            .map(|(p, y)| p - if y { 1.0 } else { 0.0 })
            .collect();
        let gw: f64 =
            r.iter().zip(x).map(|(r, x)| r * x as f64).sum::<f64>() + m.weights[0][0] / 0.7;
        let gb: f64 = r.iter().sum();
        assert!(gw.abs() < 1e-8 && gb.abs() < 1e-8, "{gw} {gb}");
    }

    #[test]
    fn parallel_fit_is_identical() {
        let rows = 500;
        let x: Vec<f32> = (0..rows * 4)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let y: Vec<bool> = (0..rows * 3).map(|i| (i * 31) % 7 < 3).collect();
        let serial = fit(&x, rows, 4, &y, 3, &TrainOptions::default()).unwrap();
        let parallel = fit(
            &x,
            rows,
            4,
            &y,
            3,
            &TrainOptions {
                jobs: 3,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(serial, parallel);
    }

    #[test]
    fn bad_options_are_errors() {
        let o = TrainOptions {
            c: vec![0.0],
            ..Default::default()
        };
        assert_eq!(
            fit(&[0.0], 1, 1, &[true], 1, &o).unwrap_err(),
            FitError::BadC(0.0)
        );
        assert!(matches!(
            fit(&[0.0, 1.0], 1, 1, &[true], 1, &TrainOptions::default()),
            Err(FitError::Shape { .. })
        ));
        let o = TrainOptions {
            c: vec![1.0, 2.0],
            ..Default::default()
        };
        assert!(matches!(
            fit(&[0.0], 1, 1, &[true, false, true], 3, &o),
            Err(FitError::CCount { .. })
        ));
    }
}
