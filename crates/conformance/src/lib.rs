//! Conformance helpers: compare tract's outputs with onnxruntime's reference outputs, element
//! by element, against a named tolerance that reports the worst element.
//!
//! ```
//! use emotions_conformance::AbsTolerance;
//! let report = AbsTolerance(1e-6).compare(&[0.5, 0.25], &[0.5, 0.2500001], 2).unwrap();
//! assert_eq!((report.worst.row, report.worst.column), (0, 1));
//! assert!(AbsTolerance(1e-9).compare(&[0.5, 0.25], &[0.5, 0.2500001], 2).is_err());
//! ```

#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;

/// The fixtures directory of this crate.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Reads a fixture `.npy` as `[rows, cols]` f32.
pub fn read_fixture(relative: &str) -> emotions_io::Embeddings {
    let path = fixtures_dir().join(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    emotions_io::read_npy_f32(&bytes, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"))
}

/// The element with the largest absolute difference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Worst {
    pub row: usize,
    pub column: usize,
    pub got: f32,
    pub want: f32,
    pub diff: f32,
}

/// The outcome of an element-by-element comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    pub tolerance: f32,
    pub elements: usize,
    pub worst: Worst,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.worst;
        write!(
            f,
            "{} elements, max |got - want| = {:.3e} (tolerance {:.0e}) at row {}, column {}: got {}, want {}",
            self.elements, w.diff, self.tolerance, w.row, w.column, w.got, w.want
        )
    }
}

/// Why a comparison failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    Shape { got: usize, want: usize },
    OverTolerance(Report),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Shape { got, want } => write!(f, "got {got} elements, want {want}"),
            Mismatch::OverTolerance(r) => write!(f, "over tolerance: {r}"),
        }
    }
}

/// Every element must satisfy `|got - want| <= self.0`; NaN never does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbsTolerance(pub f32);

impl AbsTolerance {
    /// Compares row-major matrices of `columns` columns, element by element.
    pub fn compare(&self, got: &[f32], want: &[f32], columns: usize) -> Result<Report, Mismatch> {
        if got.len() != want.len()
            || got.is_empty()
            || columns == 0
            || !got.len().is_multiple_of(columns)
        {
            return Err(Mismatch::Shape {
                got: got.len(),
                want: want.len(),
            });
        }
        let mut worst: Option<Worst> = None;
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            // NaN anywhere is infinitely wrong.
            let diff = match (g - w).abs() {
                d if d.is_nan() => f32::INFINITY,
                d => d,
            };
            if worst.is_none_or(|worst| diff > worst.diff) {
                worst = Some(Worst {
                    row: i / columns,
                    column: i % columns,
                    got: g,
                    want: w,
                    diff,
                });
            }
        }
        let report = Report {
            tolerance: self.0,
            elements: got.len(),
            worst: worst.expect("non-empty"),
        };
        if report.worst.diff > self.0 {
            Err(Mismatch::OverTolerance(report))
        } else {
            Ok(report)
        }
    }
}

/// Cosine similarity of two vectors, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The go_emotions data beside the repository (`../shared/data/go_emotions`).
pub fn go_emotions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/go_emotions")
}

/// The default encoder's folder in the repository.
pub fn minilm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/minilm")
}

/// FNV-1a 64 of token ids as u32 little-endian bytes (as `gen_encoder.py` computes it).
pub fn fnv1a64(ids: &[u32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ids.iter().flat_map(|id| id.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The variable that thins the encoder cases' fixture texts to every N-th one, for runs under
/// emulation (`scripts/arm/test.sh` sets it); unset, every text is compared.
pub const EVERY_NTH_TEXT: &str = "EMOTIONS_CONFORMANCE_EVERY";

/// The indices of the fixture texts to compare out of `len`: all, or every N-th from the first
/// when [`EVERY_NTH_TEXT`] is N.
///
/// # Panics
/// When the variable is set to anything but a positive integer: a typo must not thin a run
/// silently.
pub fn sampled_indices(len: usize) -> Vec<usize> {
    let step = match std::env::var(EVERY_NTH_TEXT) {
        Err(_) => 1,
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{EVERY_NTH_TEXT} is '{v}', expected a positive integer")),
    };
    (0..len).step_by(step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_worst_element_not_the_first() {
        let want = [0.0f32; 6];
        let got = [1e-7, 0.0, 0.0, 0.0, 5e-7, 2e-7];
        let r = AbsTolerance(1e-6).compare(&got, &want, 3).unwrap();
        assert_eq!((r.worst.row, r.worst.column, r.worst.got), (1, 1, 5e-7));
        let Err(Mismatch::OverTolerance(r)) = AbsTolerance(4e-7).compare(&got, &want, 3) else {
            panic!("5e-7 is over 4e-7")
        };
        assert_eq!((r.worst.row, r.worst.column), (1, 1));
    }

    #[test]
    fn nan_and_shape_mismatches_fail() {
        let Err(Mismatch::OverTolerance(r)) =
            AbsTolerance(1.0).compare(&[0.0, f32::NAN], &[0.0, 0.0], 2)
        else {
            panic!("NaN must fail")
        };
        assert_eq!(r.worst.column, 1);
        assert!(matches!(
            AbsTolerance(1.0).compare(&[0.0], &[0.0, 0.0], 1),
            Err(Mismatch::Shape { .. })
        ));
    }
}
