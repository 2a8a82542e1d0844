//! Readers and writers for the files `emotions` consumes and produces.
//!
//! - embeddings: `.npy` (little-endian f32 or f64, `[N, D]`) or JSON Lines, one row per line,
//!   each a JSON array of numbers or an object with an `embedding` array;
//! - texts: one text per line, UTF-8;
//! - go_emotions splits: `text<TAB>label ids<TAB>comment id`;
//! - `.npy` output of f32 matrices.
//!
//! Every error names the source, and the line, row or column at fault.
//!
//! ```
//! let rows = emotions_io::read_embeddings_jsonl("[1, 2]\n{\"embedding\": [3, 4]}\n".as_bytes(), "stdin", None).unwrap();
//! assert_eq!((rows.rows(), rows.dim()), (2, 2));
//! assert_eq!(rows.row(1), [3.0, 4.0]);
//!
//! let err = emotions_io::read_embeddings_jsonl("[1, 2]\n[3]\n".as_bytes(), "stdin", None).unwrap_err();
//! assert_eq!(err.to_string(), "stdin: line 2: expected 2 numbers, found 1");
//! ```

#![forbid(unsafe_code)]

use std::io::{BufRead, Read};
use std::path::Path;

mod npy;
mod stream;
pub use npy::{NpyWriter, read_npy_f32, read_npy_file, write_npy_f32};
pub use stream::{
    JsonlRows, MAX_TEXT_LINE_BYTES, NpyRows, Rows, TextRows, embedding_rows,
    max_embedding_line_bytes, text_rows,
};

/// Reads a whole side file (a model, a thresholds file, a tokenizer) of at most `cap` bytes:
/// a longer one (or a device such as `/dev/zero`) is refused after `cap + 1` bytes, never
/// read to its end. `what` names what the file should be, for the error, which is an
/// `InvalidData` I/O error, so that each crate reports it as it reports any read failure.
pub fn read_capped(path: &Path, cap: u64, what: &str) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let too_long = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {cap} bytes, the most {what} can need; stopped reading there"),
        )
    };
    // A regular file says its length: refuse it before reading a byte.
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > cap
    {
        return Err(too_long());
    }
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_long());
    }
    Ok(bytes)
}

/// Reopens a JSON Lines output an interrupted run left, to append to it: its complete lines
/// are kept, a cut last line is dropped. A missing file is created. Returns the file, placed
/// at its end, and the number of lines kept, which is how many input rows to skip.
pub fn resume_lines(path: &Path) -> Result<(std::fs::File, usize), IoError> {
    use std::io::Seek;
    let origin = path.display().to_string();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| IoError::io(&origin, e))?;
    let (mut lines, mut kept, mut at) = (0usize, 0u64, 0u64);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IoError::io(&origin, e)),
        };
        for (i, _) in buf[..n].iter().enumerate().filter(|(_, b)| **b == b'\n') {
            lines += 1;
            kept = at + i as u64 + 1;
        }
        at += n as u64;
    }
    file.set_len(kept).map_err(|e| IoError::io(&origin, e))?;
    file.seek(std::io::SeekFrom::End(0))
        .map_err(|e| IoError::io(&origin, e))?;
    Ok((file, lines))
}

/// Whether two paths name the same file (device and inode, through links); `false` when
/// either does not exist.
pub fn is_same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

/// Everything that can go wrong reading or writing `emotions` files: the file (or `-`) and
/// what went wrong. Displays as `origin: kind`.
#[derive(Debug)]
pub struct IoError {
    pub origin: String,
    pub kind: IoErrorKind,
}

impl IoError {
    pub fn new(origin: impl Into<String>, kind: IoErrorKind) -> Self {
        IoError {
            origin: origin.into(),
            kind,
        }
    }

    fn io(origin: &str, source: std::io::Error) -> Self {
        Self::new(origin, IoErrorKind::Io { source })
    }

    fn line(origin: &str, line: usize, message: impl Into<String>) -> Self {
        Self::new(
            origin,
            IoErrorKind::Line {
                line,
                message: message.into(),
            },
        )
    }

    /// The operating system's error, when that is what went wrong.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match &self.kind {
            IoErrorKind::Io { source } => Some(source),
            _ => None,
        }
    }
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin, self.kind)
    }
}

// The kind's text already says what the OS said: no source, so a printed chain says it once.
impl std::error::Error for IoError {}

/// The kinds of [`IoError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoErrorKind {
    #[error("{source}")]
    Io { source: std::io::Error },
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("line {line}: expected {expected} numbers, found {found}")]
    Width {
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("row {row}, column {column}: expected a finite number, found {found}")]
    NonFinite {
        row: usize,
        column: usize,
        found: String,
    },
    #[error("not a valid .npy file: {message}")]
    Npy { message: String },
    #[error("expected {expected} columns, found {found}")]
    Columns { expected: usize, found: usize },
    #[error("line {line}: longer than {cap} bytes, {what}; stopped reading there")]
    LineTooLong {
        line: usize,
        cap: usize,
        what: String,
    },
}

/// A dense row-major `[rows, dim]` f32 matrix of embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    rows: usize,
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// Wraps row-major data; `data.len()` must be `rows * dim`.
    pub fn new(rows: usize, dim: usize, data: Vec<f32>) -> Option<Self> {
        (rows.checked_mul(dim) == Some(data.len())).then_some(Embeddings { rows, dim, data })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
    /// Row `i`.
    ///
    /// # Panics
    /// If `i >= rows()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Checks the width against what a model expects.
    pub fn expect_dim(&self, expected: usize, origin: &str) -> Result<(), IoError> {
        if self.rows > 0 && self.dim != expected {
            return Err(IoError::new(
                origin,
                IoErrorKind::Columns {
                    expected,
                    found: self.dim,
                },
            ));
        }
        Ok(())
    }
}

/// Reads embeddings from a path: `.npy` by extension, JSON Lines otherwise, `-` for stdin
/// (JSON Lines). `expected_dim`, when given, is checked on every row.
pub fn read_embeddings(path: &str, expected_dim: Option<usize>) -> Result<Embeddings, IoError> {
    if path == "-" {
        let stdin = std::io::stdin();
        return read_embeddings_jsonl(stdin.lock(), "stdin", expected_dim);
    }
    let is_npy = Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        let e = read_npy_file(Path::new(path))?;
        if let Some(expected) = expected_dim {
            e.expect_dim(expected, path)?;
        }
        Ok(e)
    } else {
        let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
        read_embeddings_jsonl(std::io::BufReader::new(file), path, expected_dim)
    }
}

/// Reads JSON Lines embeddings: each line a JSON array of numbers or `{"embedding": [...]}`.
///
/// The width is `expected_dim`, or the first row's. Blank lines are errors, not skipped.
pub fn read_embeddings_jsonl(
    reader: impl BufRead,
    origin: &str,
    expected_dim: Option<usize>,
) -> Result<Embeddings, IoError> {
    let mut dim = expected_dim;
    let mut data = Vec::new();
    let mut rows = 0;
    for row in JsonlRows::new(reader, origin, expected_dim) {
        let row = row?;
        dim.get_or_insert(row.len());
        data.extend_from_slice(&row);
        rows += 1;
    }
    let dim = dim.unwrap_or(0);
    Ok(Embeddings { rows, dim, data })
}

/// Parses one JSON Lines row (a JSON array of numbers or `{"embedding": [...]}`) onto `out`.
/// `dim` is the width every row must have; the first row sets it when it is `None`.
pub(crate) fn parse_embedding_line(
    line: &[u8],
    origin: &str,
    line_no: usize,
    dim: &mut Option<usize>,
    out: &mut Vec<f32>,
) -> Result<(), IoError> {
    let line = std::str::from_utf8(line)
        .map_err(|e| IoError::line(origin, line_no, format!("invalid UTF-8: {e}")))?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Err(IoError::line(
            origin,
            line_no,
            "empty line, expected a JSON array of numbers",
        ));
    }
    let value: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| IoError::line(origin, line_no, format!("invalid JSON: {e}")))?;
    let not_a_row = || {
        IoError::line(
            origin,
            line_no,
            "expected a JSON array or an object with an \"embedding\" array",
        )
    };
    let items = match &value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(map) => match map.get("embedding") {
            Some(serde_json::Value::Array(items)) => items,
            Some(_) => {
                return Err(IoError::line(
                    origin,
                    line_no,
                    "\"embedding\" must be an array of numbers",
                ));
            }
            None => return Err(not_a_row()),
        },
        _ => return Err(not_a_row()),
    };
    let expected = *dim.get_or_insert(items.len());
    if items.len() != expected {
        return Err(IoError::new(
            origin,
            IoErrorKind::Width {
                line: line_no,
                expected,
                found: items.len(),
            },
        ));
    }
    for (column, item) in items.iter().enumerate() {
        let x = item.as_f64().ok_or_else(|| {
            IoError::line(
                origin,
                line_no,
                format!("element {column}: expected a number, found {item}"),
            )
        })?;
        let x = x as f32;
        if !x.is_finite() {
            return Err(IoError::line(
                origin,
                line_no,
                format!("element {column}: {item} does not fit in a finite f32"),
            ));
        }
        out.push(x);
    }
    Ok(())
}

/// Reads one text per line. Empty lines are empty texts; a trailing `\r` is removed.
/// Invalid UTF-8 is an error naming the line.
pub fn read_texts(reader: impl BufRead, origin: &str) -> Result<Vec<String>, IoError> {
    TextRows::new(reader, origin).collect()
}

/// Reads texts from a path, `-` for stdin.
pub fn read_texts_path(path: &str) -> Result<Vec<String>, IoError> {
    if path == "-" {
        return read_texts(std::io::stdin().lock(), "stdin");
    }
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
    read_texts(std::io::BufReader::new(file), path)
}

/// One labelled go_emotions example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub text: String,
    /// Label ids into `emotions.txt` order.
    pub labels: Vec<usize>,
    pub id: String,
}

/// Reads a go_emotions split (`text<TAB>label ids<TAB>comment id`); ids must be `< num_labels`.
pub fn read_go_emotions(path: &Path, num_labels: usize) -> Result<Vec<Example>, IoError> {
    let origin = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| IoError::io(&origin, e))?;
    let texts = read_texts(std::io::BufReader::new(file), &origin)?;
    let mut examples = Vec::with_capacity(texts.len());
    for (i, line) in texts.into_iter().enumerate() {
        let line_no = i + 1;
        // The last line may end the file with a newline; nothing else may be blank.
        if line.is_empty() {
            return Err(IoError::line(
                &origin,
                line_no,
                "empty line, expected text<TAB>labels<TAB>id",
            ));
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [text, labels, id] = fields[..] else {
            return Err(IoError::line(
                &origin,
                line_no,
                format!("expected 3 tab-separated fields, found {}", fields.len()),
            ));
        };
        let labels = labels
            .split(',')
            .map(|l| match l.parse::<usize>() {
                Ok(id) if id < num_labels => Ok(id),
                _ => Err(IoError::line(
                    &origin,
                    line_no,
                    format!("expected label ids below {num_labels}, found '{l}'"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        examples.push(Example {
            text: text.to_string(),
            labels,
            id: id.to_string(),
        });
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_rejects_bad_rows_with_their_line() {
        let cases: &[(&str, &str)] = &[
            ("[1,2]\n[1,2,3]\n", "x: line 2: expected 2 numbers, found 3"),
            (
                "[1,2]\n\n[1,2]\n",
                "x: line 2: empty line, expected a JSON array of numbers",
            ),
            ("[1,NaN]\n", "x: line 1: invalid JSON"),
            (
                "[1,\"a\"]\n",
                "x: line 1: element 1: expected a number, found \"a\"",
            ),
            (
                "[1,1e39]\n",
                "x: line 1: element 1: 1e+39 does not fit in a finite f32",
            ),
            (
                "{\"vec\": [1]}\n",
                "x: line 1: expected a JSON array or an object",
            ),
            (
                "{\"embedding\": 3}\n",
                "x: line 1: \"embedding\" must be an array",
            ),
            ("[1,2]\n[1,\n", "x: line 2: invalid JSON"),
            ("7\n", "x: line 1: expected a JSON array"),
        ];
        for (input, want) in cases {
            let err = read_embeddings_jsonl(input.as_bytes(), "x", None).unwrap_err();
            assert!(err.to_string().starts_with(want), "{input:?}: {err}");
        }
        let err = read_embeddings_jsonl("[1,2]\n".as_bytes(), "x", Some(384)).unwrap_err();
        assert_eq!(err.to_string(), "x: line 1: expected 384 numbers, found 2");
    }

    #[test]
    fn jsonl_accepts_both_row_forms_and_no_trailing_newline() {
        let e = read_embeddings_jsonl(
            "[0.5, -1]\r\n{\"embedding\": [2, 3e-3], \"id\": 7}".as_bytes(),
            "x",
            None,
        )
        .unwrap();
        assert_eq!(e.data(), [0.5, -1.0, 2.0, 0.003]);
        let empty = read_embeddings_jsonl("".as_bytes(), "x", Some(384)).unwrap();
        assert_eq!((empty.rows(), empty.dim()), (0, 384));
    }

    #[test]
    fn texts_keep_empty_lines_and_name_bad_utf8() {
        let texts = read_texts("a\n\nc\r\n".as_bytes(), "t").unwrap();
        assert_eq!(texts, ["a", "", "c"]);
        let err = read_texts(&b"ok\nbad \xff here\n"[..], "t").unwrap_err();
        assert_eq!(err.to_string(), "t: line 2: invalid UTF-8 at byte 4");
    }

    #[test]
    fn go_emotions_rows_are_validated() {
        let dir = std::env::temp_dir().join(format!("emotions-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("split.tsv");
        std::fs::write(&path, "so good\t17,15\tabc\nmeh\t27\tdef\n").unwrap();
        let ex = read_go_emotions(&path, 28).unwrap();
        assert_eq!(ex[0].labels, [17, 15]);
        assert_eq!(ex[1].id, "def");
        std::fs::write(&path, "so good\t17,28\tabc\n").unwrap();
        let err = read_go_emotions(&path, 28).unwrap_err().to_string();
        assert!(
            err.ends_with("line 1: expected label ids below 28, found '28'"),
            "{err}"
        );
        std::fs::write(&path, "so good\t17\n").unwrap();
        let err = read_go_emotions(&path, 28).unwrap_err().to_string();
        assert!(
            err.ends_with("line 1: expected 3 tab-separated fields, found 2"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
