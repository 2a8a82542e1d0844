//! Row-by-row readers, for inputs too large to hold: texts, JSON Lines embeddings and `.npy`
//! embeddings, each an iterator of rows.
//!
//! A row that cannot be read (invalid UTF-8, bad JSON, a wrong width, a non-finite number) is an
//! `Err` that names its line or row, and reading can go on past it
//! ([`IoError::is_row_error`]). A failure of the source itself (an I/O error, a truncated
//! `.npy`) ends the iteration.

use crate::npy::{Header, decode_row, read_header};
use crate::{IoError, IoErrorKind, parse_embedding_line};
use std::io::{BufRead, Read};

/// The longest text line read: a text is cut to its model's window (256 tokens) anyway, and a
/// longer line is a wrong file (`/dev/zero`, a binary) more often than a text.
pub const MAX_TEXT_LINE_BYTES: usize = 256 << 20;

/// The longest JSON Lines row of `dim` numbers: 64 bytes a number (`-1.2345678901234567e-123`
/// and spaces is 26), plus room for an `{"embedding": ...}` wrapper and other fields.
pub fn max_embedding_line_bytes(dim: Option<usize>) -> usize {
    match dim {
        Some(d) => d.saturating_mul(64).saturating_add(64 << 10),
        // The first row sets the width: allow the widest a head accepts.
        None => 16_384 * 64 + (64 << 10),
    }
}

/// Lines of a reader, each at most `cap` bytes without its `\n`: a longer line ends the
/// reading with an error, having held no more than `cap` bytes of it.
struct CappedLines<R> {
    reader: R,
    cap: usize,
}

/// What one call of [`CappedLines::next_line`] found.
enum Line {
    Some(Vec<u8>),
    TooLong,
    End,
}

impl<R: BufRead> CappedLines<R> {
    fn next_line(&mut self) -> std::io::Result<Line> {
        let mut line = Vec::new();
        let mut any = false;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(if any { Line::Some(line) } else { Line::End });
            }
            any = true;
            let (take, done) = match memchr_newline(buf) {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if line.len() + take > self.cap {
                return Ok(Line::TooLong);
            }
            line.extend_from_slice(&buf[..take]);
            self.reader.consume(take + usize::from(done));
            if done {
                return Ok(Line::Some(line));
            }
        }
    }
}

fn memchr_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

fn too_long(origin: &str, line: usize, cap: usize, what: &str) -> IoError {
    IoError::new(
        origin,
        IoErrorKind::LineTooLong {
            line,
            cap,
            what: what.to_string(),
        },
    )
}

impl IoError {
    /// Whether this error is about one row only, so that the rows after it can still be read.
    pub fn is_row_error(&self) -> bool {
        matches!(
            self.kind,
            IoErrorKind::Line { .. } | IoErrorKind::Width { .. } | IoErrorKind::NonFinite { .. }
        )
    }
}

/// Texts, one per line, as [`crate::read_texts`] reads them.
/// A line longer than [`MAX_TEXT_LINE_BYTES`] ends the reading with an error.
pub struct TextRows<R> {
    lines: CappedLines<R>,
    origin: String,
    line: usize,
    done: bool,
}

impl<R: BufRead> TextRows<R> {
    pub fn new(reader: R, origin: &str) -> Self {
        Self::with_cap(reader, origin, MAX_TEXT_LINE_BYTES)
    }

    /// As [`TextRows::new`], with lines of at most `cap` bytes.
    pub fn with_cap(reader: R, origin: &str, cap: usize) -> Self {
        TextRows {
            lines: CappedLines { reader, cap },
            origin: origin.to_string(),
            line: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for TextRows<R> {
    type Item = Result<String, IoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.line += 1;
        let mut line = match self.lines.next_line() {
            Ok(Line::Some(line)) => line,
            Ok(Line::End) => return None,
            Ok(Line::TooLong) => {
                self.done = true;
                return Some(Err(too_long(
                    &self.origin,
                    self.line,
                    self.lines.cap,
                    "the most read for one text",
                )));
            }
            Err(e) => {
                self.done = true;
                return Some(Err(IoError::io(&self.origin, e)));
            }
        };
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(String::from_utf8(line).map_err(|e| {
            IoError::line(
                &self.origin,
                self.line,
                format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
            )
        }))
    }
}

/// JSON Lines embeddings, as [`crate::read_embeddings_jsonl`] reads them: every row
/// `expected_dim` wide, or as wide as the first good row.
/// A line longer than a row of that width can be ([`max_embedding_line_bytes`]) ends the
/// reading with an error.
pub struct JsonlRows<R> {
    lines: CappedLines<R>,
    origin: String,
    line: usize,
    dim: Option<usize>,
    done: bool,
}

impl<R: BufRead> JsonlRows<R> {
    pub fn new(reader: R, origin: &str, expected_dim: Option<usize>) -> Self {
        JsonlRows {
            lines: CappedLines {
                reader,
                cap: max_embedding_line_bytes(expected_dim),
            },
            origin: origin.to_string(),
            line: 0,
            dim: expected_dim,
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for JsonlRows<R> {
    type Item = Result<Vec<f32>, IoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.line += 1;
        let line = match self.lines.next_line() {
            Ok(Line::Some(line)) => line,
            Ok(Line::End) => return None,
            Ok(Line::TooLong) => {
                self.done = true;
                let what = match self.dim {
                    Some(d) => format!("more than a row of {d} numbers can need"),
                    None => "more than a row of numbers can need".to_string(),
                };
                return Some(Err(too_long(
                    &self.origin,
                    self.line,
                    self.lines.cap,
                    &what,
                )));
            }
            Err(e) => {
                self.done = true;
                return Some(Err(IoError::io(&self.origin, e)));
            }
        };
        let mut row = Vec::new();
        let parsed = parse_embedding_line(&line, &self.origin, self.line, &mut self.dim, &mut row);
        // The first good row fixes the width, and with it the longest line to read.
        self.lines.cap = max_embedding_line_bytes(self.dim);
        Some(parsed.map(|()| row))
    }
}

/// Rows read one at a time; each `Err` names its line or row.
pub type Rows<T> = Box<dyn Iterator<Item = Result<T, IoError>>>;

/// Rows of texts from a path (`-` for stdin), one per line.
pub fn text_rows(path: &str) -> Result<Rows<String>, IoError> {
    if path == "-" {
        return Ok(Box::new(TextRows::new(std::io::stdin().lock(), "stdin")));
    }
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
    Ok(Box::new(TextRows::new(
        std::io::BufReader::with_capacity(1 << 20, file),
        path,
    )))
}

/// Rows of embeddings from a path, as [`crate::read_embeddings`] reads them: `.npy` by
/// extension (streamed when in C order; a Fortran-order array is read whole, as it must be),
/// JSON Lines otherwise, `-` for JSON Lines on stdin.
pub fn embedding_rows(path: &str, expected_dim: Option<usize>) -> Result<Rows<Vec<f32>>, IoError> {
    if path == "-" {
        return Ok(Box::new(JsonlRows::new(
            std::io::stdin().lock(),
            "stdin",
            expected_dim,
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let is_npy = std::path::Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if !is_npy {
        return Ok(Box::new(JsonlRows::new(reader, path, expected_dim)));
    }
    let mut rows = NpyRows::new(reader, path, expected_dim)?;
    if !rows.header.fortran {
        return Ok(Box::new(rows));
    }
    // Read from the same stream: a FIFO reopened would start again, or block.
    let whole = crate::npy::read_rest(&mut rows.reader, &rows.header, path)?;
    let dim = whole.dim();
    let data = whole.into_data();
    Ok(Box::new(
        (0..data.len() / dim.max(1)).map(move |r| Ok(data[r * dim..(r + 1) * dim].to_vec())),
    ))
}

/// The rows of a C-order `.npy` file, read one at a time (a Fortran-order array is refused:
/// its rows are not contiguous).
pub struct NpyRows<R> {
    reader: R,
    header: Header,
    origin: String,
    next: usize,
    done: bool,
    buf: Vec<u8>,
}

impl<R: Read> NpyRows<R> {
    /// Reads the header; `expected_dim`, when given, must be the array's width.
    pub fn new(mut reader: R, origin: &str, expected_dim: Option<usize>) -> Result<Self, IoError> {
        let header = read_header(&mut reader, origin)?;
        if let Some(expected) = expected_dim
            && header.dim != expected
        {
            return Err(IoError::new(
                origin,
                IoErrorKind::Columns {
                    expected,
                    found: header.dim,
                },
            ));
        }
        let buf = vec![0u8; header.dim * header.width];
        Ok(NpyRows {
            reader,
            header,
            origin: origin.to_string(),
            next: 0,
            done: false,
            buf,
        })
    }

    /// The number of rows the header declares.
    pub fn rows(&self) -> usize {
        self.header.rows
    }

    pub fn dim(&self) -> usize {
        self.header.dim
    }
}

impl<R: Read> Iterator for NpyRows<R> {
    type Item = Result<Vec<f32>, IoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.header.fortran && !self.done {
            self.done = true;
            return Some(Err(IoError::new(
                self.origin.clone(),
                IoErrorKind::Npy {
                    message: "a Fortran-order array cannot be read row by row".into(),
                },
            )));
        }
        if self.done || self.next == self.header.rows {
            return None;
        }
        if let Err(e) = self.reader.read_exact(&mut self.buf) {
            self.done = true;
            return Some(Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                IoError::new(
                    self.origin.clone(),
                    IoErrorKind::Npy {
                        message: format!(
                            "the header declares {} rows, the data ends in row {}",
                            self.header.rows, self.next
                        ),
                    },
                )
            } else {
                IoError::io(&self.origin, e)
            }));
        }
        let row = self.next;
        self.next += 1;
        Some(decode_row(&self.buf, &self.header, row, &self.origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rows_name_bad_lines_and_go_on() {
        let rows: Vec<_> = TextRows::new(&b"a\r\nb\xff\n\nc"[..], "t.txt").collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].as_ref().unwrap(), "a");
        let err = rows[1].as_ref().unwrap_err();
        assert!(err.is_row_error());
        assert_eq!(err.to_string(), "t.txt: line 2: invalid UTF-8 at byte 1");
        assert_eq!(rows[2].as_ref().unwrap(), "");
        assert_eq!(rows[3].as_ref().unwrap(), "c");
    }

    #[test]
    fn jsonl_rows_match_the_whole_file_reader() {
        let text = "[1, 2]\n{\"embedding\": [3, 4]}\n[5]\n[6, 7]\n";
        let rows: Vec<_> = JsonlRows::new(text.as_bytes(), "e.jsonl", None).collect();
        assert_eq!(rows[0].as_ref().unwrap(), &[1.0, 2.0]);
        assert_eq!(rows[1].as_ref().unwrap(), &[3.0, 4.0]);
        let err = rows[2].as_ref().unwrap_err();
        assert!(err.is_row_error());
        assert_eq!(
            err.to_string(),
            "e.jsonl: line 3: expected 2 numbers, found 1"
        );
        assert_eq!(rows[3].as_ref().unwrap(), &[6.0, 7.0]);
        let whole = crate::read_embeddings_jsonl("[1, 2]\n[3, 4]\n".as_bytes(), "e", None).unwrap();
        let streamed: Vec<f32> = JsonlRows::new("[1, 2]\n[3, 4]\n".as_bytes(), "e", None)
            .flat_map(|r| r.unwrap())
            .collect();
        assert_eq!(whole.data(), streamed);
    }

    #[test]
    fn npy_rows_stream_the_array_and_flag_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        crate::write_npy_f32(&path, 4, 3, &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let rows = NpyRows::new(&bytes[..], "x.npy", Some(3)).unwrap();
        assert_eq!(rows.rows(), 4);
        let streamed: Vec<f32> = rows.flat_map(|r| r.unwrap()).collect();
        assert_eq!(streamed, data);
        let err = NpyRows::new(&bytes[..], "x.npy", Some(5)).err().unwrap();
        assert_eq!(err.to_string(), "x.npy: expected 5 columns, found 3");
        let cut = &bytes[..bytes.len() - 5];
        let rows: Vec<_> = NpyRows::new(cut, "x.npy", None).unwrap().collect();
        assert_eq!(rows.len(), 4);
        let err = rows[3].as_ref().unwrap_err();
        assert!(!err.is_row_error());
        assert!(err.to_string().contains("ends in row 3"), "{err}");
    }
}
