//! An ONNX file's bytes, as the encoder's load takes them: borrowed (a model compiled into the
//! binary), or owned (mapped from disk, or read), and then freed as soon as they are decoded.
//!
//! Owned bytes are decoded from a [`bytes::Bytes`], for which prost slices each tensor's
//! payload out of the buffer and copies it once, into the tensor's `raw_data`. Decoding a plain
//! `&[u8]` copies it twice (first into a fresh buffer of its own). A file on disk is mapped,
//! not read: its pages are the page cache's, already in memory, where reading would write the
//! whole file into fresh memory first. On a VM whose memory the host backs on first touch, that
//! fresh memory was most of a 133 MB f32 model's load.

use std::path::Path;

/// The bytes of an ONNX file, for [`crate::EncoderGraph::load`].
pub struct GraphBytes<'a>(Repr<'a>);

enum Repr<'a> {
    Borrowed(&'a [u8]),
    Owned(bytes::Bytes),
}

impl GraphBytes<'static> {
    /// A file of at most `cap` bytes, mapped when it is a regular file (read otherwise, as a
    /// pipe or a device must be). `what` names what the file should be, for the error
    /// (see [`emotions_io::read_capped`]).
    ///
    /// The file must not be cut short while the load decodes it (a few tens of milliseconds for
    /// 100 MB): a mapped page past a new end cannot be read. Writing a new model file and
    /// renaming it over the old one, as installers do, is safe: the mapping keeps the old file.
    pub fn from_file(path: &Path, cap: u64, what: &str) -> std::io::Result<Self> {
        #[cfg(not(target_family = "wasm"))]
        if let Some(mapped) = map_file(path, cap, what)? {
            return Ok(GraphBytes(Repr::Owned(bytes::Bytes::from_owner(mapped))));
        }
        emotions_io::read_capped(path, cap, what).map(GraphBytes::from)
    }
}

impl GraphBytes<'_> {
    /// The file's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Borrowed(b) => b,
            Repr::Owned(b) => b,
        }
    }

    /// Decodes the bytes as `M`; owned bytes are freed on return.
    pub(crate) fn decode<M: prost::Message + Default>(self) -> Result<M, prost::DecodeError> {
        match self.0 {
            Repr::Borrowed(b) => M::decode(b),
            Repr::Owned(b) => M::decode(b),
        }
    }
}

impl<'a> From<&'a [u8]> for GraphBytes<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        GraphBytes(Repr::Borrowed(bytes))
    }
}

impl From<Vec<u8>> for GraphBytes<'_> {
    fn from(bytes: Vec<u8>) -> Self {
        GraphBytes(Repr::Owned(bytes.into()))
    }
}

/// A read-only mapping of a whole file.
#[cfg(not(target_family = "wasm"))]
struct Mapped(memmap2::Mmap);

#[cfg(not(target_family = "wasm"))]
impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// `path` mapped, when it is a non-empty regular file; `None` when it is not one, or when the
/// system will not map it (the caller reads it then). Refused past `cap` bytes.
#[cfg(not(target_family = "wasm"))]
fn map_file(path: &Path, cap: u64, what: &str) -> std::io::Result<Option<Mapped>> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(None);
    }
    if meta.len() > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {cap} bytes, the most {what} can need; stopped reading there"),
        ));
    }
    // SAFETY: a private read-only mapping, read only while the load decodes it, and unmapped
    // then. What could change it under us is another process writing the file in place, which
    // `from_file` documents: rewritten bytes decode as whatever they are, checked as any file
    // is; a file cut short would fault, which installers that rename a new file over the old
    // one cannot cause. Populated at once: the decoder reads every byte, in order.
    let mapped = unsafe { memmap2::MmapOptions::new().populate().map(&file) };
    Ok(mapped.ok().map(Mapped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_is_mapped_whole_and_a_longer_one_refused() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        file.write_all(&data).unwrap();
        file.flush().unwrap();
        let bytes = GraphBytes::from_file(file.path(), 100_000, "a test file").unwrap();
        assert!(matches!(bytes.0, Repr::Owned(_)));
        assert_eq!(bytes.as_slice(), &data[..]);
        let err = GraphBytes::from_file(file.path(), 99_999, "a test file")
            .err()
            .expect("past the cap");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("a test file"), "{err}");
    }

    #[test]
    fn an_empty_file_is_read_and_a_missing_one_is_an_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let bytes = GraphBytes::from_file(file.path(), 10, "a test file").unwrap();
        assert!(bytes.as_slice().is_empty());
        let missing = file.path().with_extension("missing");
        let err = GraphBytes::from_file(&missing, 10, "a test file")
            .err()
            .expect("no such file");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
