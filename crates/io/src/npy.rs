//! The subset of the `.npy` format that embeddings and scores need: 2-D, little-endian
//! f32 (or f64, narrowed), C or Fortran order.

use crate::{Embeddings, IoError, IoErrorKind};
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

fn npy_err(origin: &str, message: impl Into<String>) -> IoError {
    IoError::new(
        origin,
        IoErrorKind::Npy {
            message: message.into(),
        },
    )
}

/// What a `.npy` header says about the array after it.
pub(crate) struct Header {
    pub(crate) rows: usize,
    pub(crate) dim: usize,
    /// Bytes per element: 4 (f32) or 8 (f64).
    pub(crate) width: usize,
    pub(crate) fortran: bool,
    /// Offset of the first data byte.
    data_start: usize,
}

impl Header {
    fn data_len(&self) -> usize {
        self.rows * self.dim * self.width
    }
}

/// The bytes needed before the header text: magic, version, header length.
const PREAMBLE: usize = 12;

/// Parses the header from the start of a file; `bytes` may hold more than the header, or
/// (for a short file) less than [`PREAMBLE`].
fn parse_header(bytes: &[u8], origin: &str) -> Result<Header, IoError> {
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
    rows.checked_mul(dim)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| npy_err(origin, format!("shape {shape} is too large")))?;
    Ok(Header {
        rows,
        dim,
        width,
        fortran,
        data_start,
    })
}

fn size_error(origin: &str, h: &Header, found: usize) -> IoError {
    npy_err(
        origin,
        format!(
            "shape ({}, {}) needs {} data bytes, found {found} (truncated or padded file)",
            h.rows,
            h.dim,
            h.data_len()
        ),
    )
}

/// Decodes little-endian elements into `out`; `first` is the index of `out[0]` in the whole
/// array, for naming a non-finite value's row and column.
fn decode_into(
    body: &[u8],
    h: &Header,
    out: &mut [f32],
    first: usize,
    origin: &str,
) -> Result<(), IoError> {
    if h.width == 4 {
        for (o, b) in out.iter_mut().zip(body.chunks_exact(4)) {
            *o = f32::from_le_bytes(b.try_into().unwrap());
        }
    } else {
        for (o, b) in out.iter_mut().zip(body.chunks_exact(8)) {
            *o = f64::from_le_bytes(b.try_into().unwrap()) as f32;
        }
    }
    if !h.fortran {
        check_finite(out, first, h.dim, origin)?;
    }
    Ok(())
}

fn check_finite(data: &[f32], first: usize, dim: usize, origin: &str) -> Result<(), IoError> {
    match data.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(IoError::new(
            origin,
            IoErrorKind::NonFinite {
                row: (first + i) / dim,
                column: (first + i) % dim,
                found: data[i].to_string(),
            },
        )),
    }
}

/// Fortran order to C order, then the finite check (which names rows in C terms).
fn finish(mut data: Vec<f32>, h: &Header, origin: &str) -> Result<Embeddings, IoError> {
    if h.fortran {
        let mut c_order = vec![0f32; data.len()];
        for c in 0..h.dim {
            for r in 0..h.rows {
                c_order[r * h.dim + c] = data[c * h.rows + r];
            }
        }
        data = c_order;
        check_finite(&data, 0, h.dim, origin)?;
    }
    Ok(Embeddings {
        rows: h.rows,
        dim: h.dim,
        data,
    })
}

/// Parses a `.npy` file held in memory into `[N, D]` f32 rows. NaN and infinities are errors
/// naming the row and column.
pub fn read_npy_f32(bytes: &[u8], origin: &str) -> Result<Embeddings, IoError> {
    let h = parse_header(bytes, origin)?;
    let body = &bytes[h.data_start..];
    if body.len() != h.data_len() {
        return Err(size_error(origin, &h, body.len()));
    }
    let mut data = vec![0f32; h.rows * h.dim];
    decode_into(body, &h, &mut data, 0, origin)?;
    finish(data, &h, origin)
}

/// Reads a `.npy` file like [`read_npy_f32`], streaming the data straight into the result: one
/// copy of the array in memory, not two.
pub fn read_npy_file(path: &Path) -> Result<Embeddings, IoError> {
    let origin = path.display().to_string();
    let origin = origin.as_str();
    let mut file = std::fs::File::open(path).map_err(|e| IoError::io(origin, e))?;
    let file_len = file.metadata().map_err(|e| IoError::io(origin, e))?.len();
    let mut head = Vec::new();
    (&mut file)
        .take(PREAMBLE as u64)
        .read_to_end(&mut head)
        .map_err(|e| IoError::io(origin, e))?;
    // The header length sits in the preamble; read up to the end of the header.
    let header_end = match head.get(6) {
        Some(1) if head.len() >= 10 => 10 + u16::from_le_bytes([head[8], head[9]]) as usize,
        Some(2 | 3) if head.len() >= 12 => {
            12 + u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize
        }
        _ => head.len(),
    };
    if header_end > head.len() {
        (&mut file)
            .take((header_end - head.len()) as u64)
            .read_to_end(&mut head)
            .map_err(|e| IoError::io(origin, e))?;
    }
    let h = parse_header(&head, origin)?;
    let body_len = (file_len as usize).saturating_sub(h.data_start);
    if body_len != h.data_len() {
        return Err(size_error(origin, &h, body_len));
    }
    let mut data = vec![0f32; h.rows * h.dim];
    // Bytes already read past the header (only when the preamble overran a tiny header).
    let mut done = 0;
    let spill = head.get(h.data_start..).unwrap_or(&[]);
    if !spill.is_empty() {
        let n = spill.len() / h.width;
        decode_into(spill, &h, &mut data[..n], 0, origin)?;
        done = n;
    }
    // Chunks small enough to stay in cache between the read and the decode.
    const CHUNK: usize = 1 << 18;
    let mut buf = vec![0u8; CHUNK * h.width];
    while done < data.len() {
        let n = CHUNK.min(data.len() - done);
        let bytes = &mut buf[..n * h.width];
        file.read_exact(bytes).map_err(|e| IoError::io(origin, e))?;
        decode_into(bytes, &h, &mut data[done..done + n], done, origin)?;
        done += n;
    }
    finish(data, &h, origin)
}

/// The rest of a stream after its header, read once (a pipe cannot be reopened), as the whole
/// array: for a Fortran-order array, whose rows are not contiguous. Memory grows with the bytes
/// that are there, not with the rows the header claims.
pub(crate) fn read_rest(
    reader: &mut impl Read,
    h: &Header,
    origin: &str,
) -> Result<Embeddings, IoError> {
    let len = h.data_len();
    let mut body = Vec::new();
    reader
        .take(len as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| IoError::io(origin, e))?;
    if body.len() != len {
        return Err(size_error(origin, h, body.len()));
    }
    let mut data = vec![0f32; h.rows * h.dim];
    decode_into(&body, h, &mut data, 0, origin)?;
    drop(body);
    finish(data, h, origin)
}

/// Reads and parses the header from the start of a stream, leaving it at the first data byte.
pub(crate) fn read_header(reader: &mut impl Read, origin: &str) -> Result<Header, IoError> {
    let truncated = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            npy_err(origin, "truncated header")
        } else {
            IoError::io(origin, e)
        }
    };
    let mut head = vec![0u8; 10];
    reader.read_exact(&mut head).map_err(truncated)?;
    if &head[..6] != MAGIC {
        return Err(npy_err(origin, "missing the \\x93NUMPY magic"));
    }
    let header_end = match head[6] {
        1 => 10 + u16::from_le_bytes([head[8], head[9]]) as usize,
        2 | 3 => {
            head.resize(12, 0);
            reader.read_exact(&mut head[10..]).map_err(truncated)?;
            12 + u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize
        }
        v => return Err(npy_err(origin, format!("unsupported format version {v}"))),
    };
    // A header is a short dict; anything longer than this is not one.
    if header_end > 1 << 20 {
        return Err(npy_err(origin, format!("a {header_end}-byte header")));
    }
    let start = head.len();
    head.resize(header_end, 0);
    reader.read_exact(&mut head[start..]).map_err(truncated)?;
    parse_header(&head, origin)
}

/// Row `row` of a C-order array from its bytes, checked to be finite.
pub(crate) fn decode_row(
    bytes: &[u8],
    h: &Header,
    row: usize,
    origin: &str,
) -> Result<Vec<f32>, IoError> {
    let mut out = vec![0f32; h.dim];
    decode_into(bytes, h, &mut out, row * h.dim, origin)?;
    Ok(out)
}

/// Writes a `[rows, cols]` f32 `.npy` row block by row block when the number of rows is not
/// known up front: the header has room for any count, and [`NpyWriter::commit`] rewrites it
/// with the rows written so far. The file must be seekable (a regular file, not a pipe).
///
/// A run killed between commits leaves a valid `.npy` of every committed row (and perhaps
/// some bytes after them, which numpy ignores and [`NpyWriter::resume`] cuts off).
pub struct NpyWriter {
    file: std::io::BufWriter<std::fs::File>,
    origin: String,
    cols: usize,
    rows: usize,
}

/// Header bytes of a streamed `.npy`: enough for any row count, a multiple of 64.
const STREAM_HEADER: usize = 128;

fn not_seekable(origin: &str, e: std::io::Error) -> IoError {
    npy_err(
        origin,
        format!(
            "cannot seek ({e}): .npy output is written with its header patched after every chunk, so it needs a regular file, not a pipe; write JSON Lines to a pipe instead"
        ),
    )
}

impl NpyWriter {
    pub fn create(path: &Path, cols: usize) -> Result<Self, IoError> {
        use std::io::Seek;
        let origin = path.display().to_string();
        let mut file = std::fs::File::create(path).map_err(|e| IoError::io(&origin, e))?;
        if let Err(e) = file.seek(std::io::SeekFrom::Start(0)) {
            return Err(not_seekable(&origin, e));
        }
        let mut writer = NpyWriter {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            origin,
            cols,
            rows: 0,
        };
        writer.write_header()?;
        Ok(writer)
    }

    /// Reopens a `.npy` an interrupted run left, to append to it: its header's row count is
    /// what is kept, and anything after those rows is cut off. A missing file is created.
    /// [`NpyWriter::rows`] then says how many input rows to skip.
    pub fn resume(path: &Path, cols: usize) -> Result<Self, IoError> {
        use std::io::Seek;
        let origin = path.display().to_string();
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::create(path, cols),
            Err(e) => return Err(IoError::io(&origin, e)),
        };
        let len = file.metadata().map_err(|e| IoError::io(&origin, e))?.len();
        if len == 0 {
            // Closed before `create` opens it again. (WebAssembly's `File` has no `Drop`.)
            #[cfg_attr(target_family = "wasm", allow(clippy::drop_non_drop))]
            drop(file);
            return Self::create(path, cols);
        }
        let h = read_header(&mut file, &origin)?;
        if h.fortran || h.width != 4 || h.data_start != STREAM_HEADER {
            return Err(npy_err(
                &origin,
                "cannot resume: not a .npy that emotions streams (f32, C order, 128-byte header)",
            ));
        }
        if h.dim != cols {
            return Err(IoError::new(
                &origin,
                IoErrorKind::Columns {
                    expected: cols,
                    found: h.dim,
                },
            ));
        }
        let end = (STREAM_HEADER + h.data_len()) as u64;
        if len < end {
            return Err(size_error(&origin, &h, len as usize - STREAM_HEADER));
        }
        file.set_len(end).map_err(|e| IoError::io(&origin, e))?;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| not_seekable(&origin, e))?;
        Ok(NpyWriter {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            origin,
            cols,
            rows: h.rows,
        })
    }

    fn write_header(&mut self) -> Result<(), IoError> {
        let mut header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
            self.rows, self.cols
        );
        let len = STREAM_HEADER - MAGIC.len() - 4;
        header.push_str(&" ".repeat(len - 1 - header.len()));
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        self.file
            .write_all(&out)
            .map_err(|e| IoError::io(&self.origin, e))
    }

    /// Appends rows (`data.len()` a multiple of the width). They count once committed.
    pub fn write_rows(&mut self, data: &[f32]) -> Result<(), IoError> {
        if !data.len().is_multiple_of(self.cols.max(1)) {
            return Err(npy_err(
                &self.origin,
                format!("{} values are not whole rows of {}", data.len(), self.cols),
            ));
        }
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.file
            .write_all(&bytes)
            .map_err(|e| IoError::io(&self.origin, e))?;
        self.rows += data.len() / self.cols.max(1);
        Ok(())
    }

    /// Rows written so far (with [`NpyWriter::resume`], those the file already held too).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Makes every row written so far part of the file: the rows reach the file first, then
    /// the header that counts them, so that the header never counts a row that is not there.
    pub fn commit(&mut self) -> Result<(), IoError> {
        use std::io::Seek;
        let io = |e| IoError::io(&self.origin, e);
        self.file.flush().map_err(io)?;
        self.file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        self.write_header()?;
        self.file
            .flush()
            .map_err(|e| IoError::io(&self.origin, e))?;
        self.file
            .seek(std::io::SeekFrom::End(0))
            .map_err(|e| IoError::io(&self.origin, e))?;
        Ok(())
    }

    /// Commits and closes: the file is then a complete `.npy` of every row written.
    pub fn finish(mut self) -> Result<(), IoError> {
        self.commit()
    }
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
    out.extend(data.iter().flat_map(|x| x.to_le_bytes()));
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
    fn streaming_file_reader_agrees_with_the_in_memory_one() {
        let dir = std::env::temp_dir().join(format!("emotions-npy-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // More than one read chunk, so a value in the second chunk is named correctly.
        let (rows, dim) = (1000, 384);
        let data: Vec<f32> = (0..rows * dim)
            .map(|i| (i % 977) as f32 * 0.25 - 3.0)
            .collect();
        let path = dir.join("big.npy");
        write_npy_f32(&path, rows, dim, &data).unwrap();
        let streamed = read_npy_file(&path).unwrap();
        assert_eq!((streamed.rows(), streamed.dim()), (rows, dim));
        assert_eq!(streamed.data(), data);

        let mut bad = data.clone();
        bad[900 * dim + 5] = f32::NAN;
        write_npy_f32(&path, rows, dim, &bad).unwrap();
        let err = read_npy_file(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("row 900, column 5: expected a finite number, found NaN"),
            "{err}"
        );

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = read_npy_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("needs 1536000 data bytes, found 1535997"),
            "{err}"
        );

        for (descr, fortran, body) in [
            (
                "<f8",
                false,
                [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect::<Vec<_>>(),
            ),
            ("<f4", true, f32_bytes(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0])),
        ] {
            let bytes = npy(descr, fortran, "(2, 3)", &body);
            std::fs::write(&path, &bytes).unwrap();
            let e = read_npy_file(&path).unwrap();
            assert_eq!(
                e.data(),
                [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                "{descr} fortran={fortran}"
            );
            assert_eq!(e, read_npy_f32(&bytes, "x").unwrap());
        }
        std::fs::write(&path, b"\x93NUM").unwrap();
        assert!(
            read_npy_file(&path)
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        std::fs::remove_dir_all(&dir).unwrap();
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

    #[test]
    fn streamed_writes_patch_the_row_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.npy");
        let mut w = NpyWriter::create(&path, 2).unwrap();
        w.write_rows(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        w.write_rows(&[5.0, 6.0]).unwrap();
        assert!(w.write_rows(&[7.0]).is_err());
        assert_eq!(w.rows(), 3);
        w.finish().unwrap();
        let e = read_npy_file(&path).unwrap();
        assert_eq!((e.rows(), e.dim()), (3, 2));
        assert_eq!(e.data(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // Same bytes as the one-shot writer, but for the header's padding.
        let whole = dir.path().join("w.npy");
        write_npy_f32(&whole, 3, 2, e.data()).unwrap();
        assert_eq!(read_npy_file(&whole).unwrap(), e);
    }

    #[test]
    fn a_pipe_is_refused_for_streamed_npy() {
        // A FIFO is the pipe case on Unix.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("p.npy");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return;
        }
        // Opening a FIFO for writing blocks until a reader opens it.
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo))
        };
        let err = NpyWriter::create(&fifo, 2).err().unwrap();
        assert!(err.to_string().contains("needs a regular file"), "{err}");
        let _ = reader.join();
    }
}

#[cfg(test)]
mod fifo_tests {
    #[test]
    fn a_fortran_array_from_a_fifo_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.npy");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return;
        }
        // [[1, 2, 3], [4, 5, 6]] in Fortran order: columns stored one after the other.
        let header = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n";
        let mut bytes = super::MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for x in [1f32, 4., 2., 5., 3., 6.] {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        // The writer writes once and closes: a second open would block for ever.
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, bytes))
        };
        let rows: Vec<Vec<f32>> = crate::embedding_rows(fifo.to_str().unwrap(), Some(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        writer.join().unwrap().unwrap();
        assert_eq!(rows, [[1., 2., 3.], [4., 5., 6.]]);
    }
}
