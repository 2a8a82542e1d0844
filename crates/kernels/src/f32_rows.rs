//! The exact mode's projections: tract-linalg's f32 matmul on weights packed once at load, for
//! any number of rows.
//!
//! tract picks a matmul kernel from a plan's shapes; with the token count symbolic it falls
//! back to one meant for single-token decoding, and a plan per shape repacks every weight.
//! [`F32Weights::pack`] asks tract-linalg once for the kernel a concrete plan would use, packs
//! the weights for it, and [`F32Weights::run`] runs any row count with them.

use crate::{KernelError, KernelErrorKind};
use std::sync::Arc;
use tract_data::internal::TensorView;
use tract_data::prelude::*;
use tract_linalg::BinOp;
use tract_linalg::mmm::{AsInputValue, FusedSpec, MMMInputValue, MatMatMul, Query};

/// Rows per matmul the kernel is chosen for: a batch of 32 texts of 24 tokens.
const TYPICAL_ROWS: usize = 768;

/// `W` (`k × n`) packed for tract-linalg's f32 kernel.
#[derive(Debug, Clone)]
pub struct F32Weights {
    kernel: Box<dyn MatMatMul>,
    packing: usize,
    packed: Arc<Box<dyn MMMInputValue>>,
    k: usize,
    n: usize,
}

impl F32Weights {
    /// Packs `matrix` (f32 `[k, n]`), or `None` when tract-linalg has no kernel for it.
    pub fn pack(matrix: &Tensor) -> Result<Option<F32Weights>, KernelError> {
        let &[k, n] = matrix.shape() else {
            return Ok(None);
        };
        let query = Query {
            weight: f32::datum_type().into(),
            activation: f32::datum_type(),
            accumulators: tvec![f32::datum_type()],
            store: Some(f32::datum_type()),
            allow_extractor: false,
            m: Some(TYPICAL_ROWS),
            k: Some(k),
            n: Some(n),
        };
        let Some((kernel, packing, None)) = tract_linalg::MmmDispatch::native().pick(&query) else {
            return Ok(None);
        };
        let packed = kernel.packings()[packing]
            .1
            .prepare_one(matrix, 0, 1)
            .map_err(KernelError::linalg)?;
        Ok(Some(F32Weights {
            kernel,
            packing,
            packed: Arc::new(packed),
            k,
            n,
        }))
    }

    /// The tract-linalg kernel's name, for `-v` and graph dumps.
    pub fn kernel_name(&self) -> &str {
        self.kernel.name()
    }

    /// Identifies the packed weights (two ops sharing them are the same op).
    pub fn id(&self) -> *const () {
        Arc::as_ptr(&self.packed) as *const ()
    }

    /// `y = x · W (+ bias) (+ residual)` for `m` rows: `x` is f32 `[.., k]` with `m` rows,
    /// `y` and `residual` f32 with `m` rows of `n`, `bias` f32 `[n]`. Rows are split over the
    /// current pool in whole kernel panels once the product is worth it.
    pub fn run(
        &self,
        x: &Tensor,
        m: usize,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
        y: &mut Tensor,
    ) -> Result<(), KernelError> {
        let f32_of = |t: &Tensor, len: usize| t.datum_type() == f32::datum_type() && t.len() == len;
        let fits = f32_of(x, m * self.k)
            && f32_of(y, m * self.n)
            && residual.is_none_or(|r| f32_of(r, m * self.n))
            && bias.is_none_or(|b| f32_of(b, self.n));
        if !fits {
            return Err(KernelError::new(KernelErrorKind::Operands {
                message: format!(
                    "f32 rows: operands do not fit {m} rows of [{}, {}]",
                    self.k, self.n
                ),
            }));
        }
        let y: &Tensor = y;
        let rows = |first: usize, len: usize| {
            // SAFETY: the rows lie inside x, y and the residual, contiguous f32 tensors of m
            // rows (checked above); each call writes its own rows of y.
            unsafe { self.rows(x, y, bias, residual, first, len) }
        };
        let pool = crate::pool::current();
        let threads = pool.as_ref().map_or(1, |p| p.current_num_threads());
        let part = part_rows(m, self.k * self.n, self.kernel.mr(), threads);
        match pool {
            Some(pool) if part < m => pool.install(|| {
                use rayon::prelude::*;
                (0..m.div_ceil(part)).into_par_iter().try_for_each(|p| {
                    let first = p * part;
                    rows(first, part.min(m - first))
                })
            }),
            _ => rows(0, m),
        }
    }

    /// Rows `first..first + len` of the product.
    ///
    /// # Safety
    /// `x`, `y` and `residual` are contiguous row-major f32 tensors of at least `first + len`
    /// rows (`k` values in `x`, `n` in the others), and no other thread writes these rows of
    /// `y`.
    unsafe fn rows(
        &self,
        x: &Tensor,
        y: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
        first: usize,
        len: usize,
    ) -> Result<(), KernelError> {
        let (k, n) = (self.k, self.n);
        let kernel = &*self.kernel;
        let (x_shape, x_strides) = ([len, k], [k as isize, 1]);
        let (y_shape, y_strides) = ([len, n], [n as isize, 1]);
        let (x_at, y_at) = ((first * k * 4) as isize, (first * n * 4) as isize);
        // SAFETY (all three views): in bounds, by the caller's contract.
        let rows = unsafe { TensorView::from_bytes(x, x_at, &x_shape, &x_strides) };
        let a = kernel.packings()[self.packing]
            .0
            .prepare_one_view(&rows, 1, 0)
            .map_err(KernelError::linalg)?;
        let out = unsafe { TensorView::from_bytes(y, y_at, &y_shape, &y_strides) };
        let residual =
            residual.map(|r| unsafe { TensorView::from_bytes(r, y_at, &y_shape, &y_strides) });
        // SAFETY: the store is y's (and the residual's) row-major f32 layout, and covers
        // exactly these rows of y, which only this call writes.
        unsafe {
            let store = kernel.c_from_data_and_strides(4, n as isize, 1);
            let mut ops: TVec<FusedSpec> = tvec![FusedSpec::AddMatMul {
                a: AsInputValue::Borrowed(&*a),
                b: AsInputValue::Borrowed(&**self.packed),
                packing: self.packing,
            }];
            if let Some(bias) = bias {
                ops.push(FusedSpec::BinPerCol(bias.view(), BinOp::Add));
            }
            if let Some(r) = &residual {
                ops.push(FusedSpec::AddUnicast(store.wrap(r)));
            }
            ops.push(FusedSpec::Store(store.wrap(&out)));
            kernel.run(len, n, &ops).map_err(KernelError::linalg)
        }
    }
}

/// How many rows each thread's part of an `m`-row product takes: whole kernel panels of `mr`
/// rows, one part per thread, once the product is worth splitting (tract's own threshold,
/// 2^21 multiply-adds); `m` when it is not.
pub(crate) fn part_rows(m: usize, macs_per_row: usize, mr: usize, threads: usize) -> usize {
    if threads < 2 || m * macs_per_row < 1 << 21 {
        return m;
    }
    let parts = threads.min(m / mr).max(1);
    m.div_ceil(parts).next_multiple_of(mr).min(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_in_whole_panels_once_worth_it() {
        // Too few multiply-adds, one thread, or one panel: one part.
        assert_eq!(part_rows(8, 384 * 384, 16, 2), 8);
        assert_eq!(part_rows(1000, 384 * 384, 16, 1), 1000);
        assert_eq!(part_rows(16, 384 * 384, 16, 2), 16);
        // Two threads: two parts of whole panels, the second shorter.
        assert_eq!(part_rows(100, 384 * 384, 16, 2), 64);
        // No more parts than whole panels: one part of 20 rows; two of 32 and 8, not four.
        assert_eq!(part_rows(20, 384 * 1536, 16, 4), 20);
        assert_eq!(part_rows(40, 384 * 1536, 16, 4), 32);
    }

    /// Against f64, alone and split over a pool (to the bit the same).
    #[test]
    fn packed_rows_match_f64_alone_and_pooled() -> Result<(), KernelError> {
        let (m, k, n) = (150, 96, 160);
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 37) % 19) as f32 / 9.0 - 1.0)
            .collect();
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 53) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let r: Vec<f32> = (0..m * n)
            .map(|i| ((i * 29) % 13) as f32 / 6.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 0.5).collect();
        let tensor = |v: &[f32], shape: &[usize]| Tensor::from_shape(shape, v).unwrap();
        let weights = F32Weights::pack(&tensor(&w, &[k, n]))?.expect("a kernel");
        let (xt, rt, bt) = (tensor(&x, &[m, k]), tensor(&r, &[m, n]), tensor(&b, &[n]));
        let run = || {
            let mut y = tensor(&vec![f32::NAN; m * n], &[m, n]);
            weights
                .run(&xt, m, Some(&bt), Some(&rt), &mut y)
                .map(|()| y)
        };
        let alone = crate::pool::single_threaded(run)?;
        let pooled = crate::pool::with_threads(2, run)?;
        let (alone, pooled) = (
            alone.try_as_plain_ram().unwrap(),
            pooled.try_as_plain_ram().unwrap(),
        );
        let (alone, pooled) = (
            alone.as_slice::<f32>().unwrap(),
            pooled.as_slice::<f32>().unwrap(),
        );
        assert!(
            alone
                .iter()
                .zip(pooled)
                .all(|(a, p)| a.to_bits() == p.to_bits())
        );
        for (i, g) in alone.iter().enumerate() {
            let (row, col) = (i / n, i % n);
            let want: f64 = (0..k)
                .map(|j| x[row * k + j] as f64 * w[j * n + col] as f64)
                .sum::<f64>()
                + b[col] as f64
                + r[i] as f64;
            assert!(
                (*g as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{i}: {g} vs {want}"
            );
        }
        // Operands that do not fit are an error, not a wild write.
        let mut short = tensor(&[0.0; 4], &[2, 2]);
        assert!(weights.run(&xt, m, None, None, &mut short).is_err());
        Ok(())
    }
}
