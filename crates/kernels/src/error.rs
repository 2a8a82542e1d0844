//! The crate's one error type: where it happened (when known) and what happened.

use crate::isa::IsaClass;

/// What went wrong, and where. Displays as `origin: kind`; its source is the kind's own, so a
/// printed chain says each thing once.
#[derive(Debug)]
pub struct KernelError {
    /// What the kernel was working on, when the caller said.
    pub origin: Option<String>,
    pub kind: KernelErrorKind,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        self.kind.fmt(f)
    }
}

impl std::error::Error for KernelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl KernelError {
    pub fn new(kind: KernelErrorKind) -> Self {
        KernelError { origin: None, kind }
    }

    /// The same error, said of `origin`.
    pub fn at(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }
}

/// The kinds of [`KernelError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelErrorKind {
    #[error(
        "{var} is '{found}', expected one of avx512-vnni, avx512, avx2 (x86-64), neon-i8mm, \
         neon-dotprod, neon (AArch64), portable",
        var = crate::ISA_VARIABLE
    )]
    UnknownIsa { found: String },
    #[error(
        "{var}={class} asks for instructions this CPU lacks (the widest it runs is {widest})",
        var = crate::ISA_VARIABLE
    )]
    IsaUnavailable { class: IsaClass, widest: IsaClass },
    #[error("cannot start a pool of {threads} threads")]
    ThreadPool {
        threads: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    /// A kernel was handed slices or tensors of the wrong sizes (a caller's bug).
    #[error("{message}")]
    Operands { message: String },
    /// tract-linalg's own kernels (erf, the f32 matmul) failed.
    #[error("tract-linalg failed: {message}")]
    Linalg { message: String },
}

impl KernelError {
    /// tract-linalg's error, kept as text (its error type is anyhow's, not `std::error::Error`).
    pub(crate) fn linalg(e: impl std::fmt::Display) -> KernelError {
        KernelError::new(KernelErrorKind::Linalg {
            message: format!("{e:#}"),
        })
    }
}
