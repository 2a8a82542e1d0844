//! The subset of the `.npy` format that embeddings and scores need: 2-D, little-endian
//! f32 (or f64, narrowed), C or Fortran order.

use crate::{Embeddings, IoError};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

fn npy_err(origin: &str, message: impl Into<String>) -> IoError {
    IoError::Npy {
        origin: origin.to_string(),
        message: message.into(),
    }
}

/// Parses a `.npy` file held in memory into `[N, D]` f32 rows. NaN and infinities are errors
/// naming the row and column.
pub fn read_npy_f32(bytes: &[u8], origin: &str) -> Result<Embeddings, IoError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(npy_err(origin, "missing the \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(npy_err(origin, "truncated header"));
            }
            (
                u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
                12,
            )
        }
        v => return Err(npy_err(origin, format!("unsupported format version {v}"))),
    };
    let data_start = header_start + header_len;
    let header = bytes
        .get(header_start..data_start)
        .ok_or_else(|| npy_err(origin, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| npy_err(origin, "header is not text"))?;
    let descr =
        dict_value(header, "descr").ok_or_else(|| npy_err(origin, "header has no 'descr'"))?;
    let fortran = dict_value(header, "fortran_order")
        .ok_or_else(|| npy_err(origin, "header has no 'fortran_order'"))?;
    let shape =
        dict_value(header, "shape").ok_or_else(|| npy_err(origin, "header has no 'shape'"))?;
    let fortran = match fortran {
        "False" => false,
        "True" => true,
        other => return Err(npy_err(origin, format!("bad fortran_order {other}"))),
    };
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| npy_err(origin, format!("bad shape {shape}")))?;
    let [rows, dim] = dims[..] else {
        return Err(npy_err(
            origin,
            format!("expected a 2-D array [N, D], found shape {shape}"),
        ));
    };
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let width = match descr {
        "<f4" => 4,
        "<f8" => 8,
        other => {
            return Err(npy_err(
                origin,
                format!(
                    "expected little-endian float32 ('<f4') or float64 ('<f8'), found '{other}'"
                ),
            ));
        }
    };
    let count = rows
        .checked_mul(dim)
        .ok_or_else(|| npy_err(origin, format!("shape {shape} is too large")))?;
    let body = &bytes[data_start..];
    if body.len() != count * width {
        return Err(npy_err(
            origin,
            format!(
                "shape {shape} needs {} data bytes, found {} (truncated or padded file)",
                count * width,
                body.len()
            ),
        ));
    }
    let flat: Vec<f32> = if width == 4 {
        body.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect()
    };
    let data = if fortran {
        let mut c_order = vec![0f32; count];
        for c in 0..dim {
            for r in 0..rows {
                c_order[r * dim + c] = flat[c * rows + r];
            }
        }
        c_order
    } else {
        flat
    };
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(IoError::NonFinite {
            origin: origin.to_string(),
            row: i / dim,
            column: i % dim,
            found: data[i].to_string(),
        });
    }
    Ok(Embeddings { rows, dim, data })
}

/// Finds `'key': value` in a numpy header dict; values here are a quoted string, a bool or a
/// tuple, which is all the format writes.
fn dict_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let start = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header[start + key.len() + 2..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

/// Writes a row-major `[rows, cols]` f32 matrix as `.npy` (format 1.0, C order).
///
/// # Panics
/// If `data.len() != rows * cols`.
pub fn write_npy_f32(path: &Path, rows: usize, cols: usize, data: &[f32]) -> Result<(), IoError> {
    assert_eq!(data.len(), rows * cols, "npy data must be rows * cols");
    let origin = path.display().to_string();
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Pad so that magic + version + length + header + newline is a multiple of 64.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(64 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    let mut file = std::fs::File::create(path).map_err(|e| IoError::io(&origin, e))?;
    file.write_all(&out).map_err(|e| IoError::io(&origin, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n",
            if fortran { "True" } else { "False" }
        );
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    fn f32_bytes(xs: &[f32]) -> Vec<u8> {
        xs.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn round_trips_through_the_writer() {
        let path = std::env::temp_dir().join(format!("emotions-npy-{}.npy", std::process::id()));
        let data = [1.0f32, -2.5, 3.25, 0.0, 1e-30, 7.0];
        write_npy_f32(&path, 2, 3, &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            (bytes.len() - data.len() * 4) % 64,
            0,
            "header is 64-byte aligned"
        );
        let e = read_npy_f32(&bytes, "p").unwrap();
        assert_eq!((e.rows(), e.dim()), (2, 3));
        assert_eq!(e.data(), data);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn reads_fortran_order_and_f64() {
        // [[1, 2, 3], [4, 5, 6]] stored column by column.
        let e = read_npy_f32(
            &npy("<f4", true, "(2, 3)", &f32_bytes(&[1., 4., 2., 5., 3., 6.])),
            "p",
        )
        .unwrap();
        assert_eq!(e.data(), [1., 2., 3., 4., 5., 6.]);
        let body: Vec<u8> = [0.5f64, 1.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        let e = read_npy_f32(&npy("<f8", false, "(1, 2)", &body), "p").unwrap();
        assert_eq!(e.data(), [0.5, 1.5]);
    }

    #[test]
    fn rejects_bad_files_with_reasons() {
        let ok_body = f32_bytes(&[1., 2., 3., 4.]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"PK\x03\x04 not npy".to_vec(),
                "missing the \\x93NUMPY magic",
            ),
            (
                npy("<f4", false, "(2, 2)", &ok_body[..12]),
                "needs 16 data bytes, found 12",
            ),
            (npy("<i8", false, "(2, 2)", &ok_body), "found '<i8'"),
            (npy(">f4", false, "(2, 2)", &ok_body), "found '>f4'"),
            (
                npy("<f4", false, "(4,)", &ok_body),
                "expected a 2-D array [N, D], found shape (4,)",
            ),
            (
                npy("<f4", false, "(2, 2)", &f32_bytes(&[1., 2., f32::NAN, 4.])),
                "row 1, column 0: expected a finite number, found NaN",
            ),
            (
                npy(
                    "<f4",
                    false,
                    "(2, 2)",
                    &f32_bytes(&[1., f32::INFINITY, 0., 4.]),
                ),
                "row 0, column 1",
            ),
        ];
        for (bytes, want) in cases {
            let err = read_npy_f32(&bytes, "p").unwrap_err().to_string();
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
    }
}
