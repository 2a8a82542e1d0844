//! A split's embeddings on disk, so that training, tuning and evaluating embed each split once.
//!
//! The key is the encoder's fingerprint (a hash of its model, tokenizer and configuration
//! files), the number of texts and a hash of the texts: two different encoders never share an
//! entry, whatever their folders are called.

use crate::TrainError;
use emotions_io::Embeddings;
use std::path::PathBuf;

/// Embeddings cached under one folder (`.emotions-cache/` by default in the CLI).
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
}

impl EmbeddingCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddingCache { dir: dir.into() }
    }

    /// The file an encoder's embeddings of `texts` are cached in:
    /// `<dir>/<fingerprint>-<count>-<fnv64 of the texts>.npy`.
    pub fn path(&self, encoder_fingerprint: &str, texts: &[String]) -> PathBuf {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in texts.iter().flat_map(|t| t.bytes().chain([0u8])) {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let fingerprint: String = encoder_fingerprint
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.dir
            .join(format!("{fingerprint}-{}-{h:016x}.npy", texts.len()))
    }

    /// The cached embeddings, when there is an entry of the right shape.
    pub fn lookup(
        &self,
        encoder_fingerprint: &str,
        dim: usize,
        texts: &[String],
    ) -> Result<Option<Embeddings>, TrainError> {
        let path = self.path(encoder_fingerprint, texts);
        if !path.is_file() {
            return Ok(None);
        }
        let e = emotions_io::read_npy_file(&path)?;
        Ok((e.rows() == texts.len() && e.dim() == dim).then_some(e))
    }

    /// Stores embeddings (`texts.len() * dim` values) and returns them as [`Embeddings`].
    pub fn store(
        &self,
        encoder_fingerprint: &str,
        dim: usize,
        texts: &[String],
        data: Vec<f32>,
    ) -> Result<Embeddings, TrainError> {
        let rows = texts.len();
        let embeddings = Embeddings::new(rows, dim, data).ok_or_else(|| {
            TrainError::Shape(format!(
                "embeddings for {rows} texts of {dim} have the wrong length"
            ))
        })?;
        std::fs::create_dir_all(&self.dir).map_err(|source| TrainError::CacheDir {
            path: self.dir.display().to_string(),
            source,
        })?;
        let path = self.path(encoder_fingerprint, texts);
        emotions_io::write_npy_f32(&path, rows, dim, embeddings.data())?;
        Ok(embeddings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_keyed_by_the_model_not_the_folder_name() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EmbeddingCache::new(dir.path().join("cache"));
        let texts = vec!["so happy".to_string(), "".to_string()];
        let stored = cache
            .store("aaaa", 2, &texts, vec![1.0, 2.0, 3.0, 4.0])
            .unwrap();
        assert_eq!(stored.data(), [1.0, 2.0, 3.0, 4.0]);
        let hit = cache.lookup("aaaa", 2, &texts).unwrap().unwrap();
        assert_eq!(hit.data(), stored.data());
        // Another model (same name or not): no hit.
        assert!(cache.lookup("bbbb", 2, &texts).unwrap().is_none());
        // Other texts, or another width: no hit.
        assert!(cache.lookup("aaaa", 2, &texts[..1]).unwrap().is_none());
        assert!(cache.lookup("aaaa", 3, &texts).unwrap().is_none());
        let err = cache.store("aaaa", 3, &texts, vec![0.0; 4]).unwrap_err();
        assert!(matches!(err, TrainError::Shape(_)), "{err}");
    }
}
