//! Which vector instructions the kernels run with: one type for every kernel, detected once.
//!
//! An [`Isa`] can only be had from detection ([`Isa::selected`], [`Isa::all_available`]), so a
//! kernel handed one may use its instructions without checking again. Every kernel gives the
//! same bits on every class that runs the same arithmetic (the integer kernels on all of them;
//! the f32 kernels on the two that fuse multiply-adds), and tests force every class the CPU has.
//!
//! `EMOTIONS_ISA` forces a lower class (`avx512-vnni`, `avx512`, `avx2`, `portable` on x86-64;
//! `neon-i8mm`, `neon-dotprod`, `neon`, `portable` on AArch64), so that any machine can measure
//! and test what a smaller CPU would run. A class this CPU lacks is
//! refused with an error, never run.

use crate::{KernelError, KernelErrorKind};
use std::sync::OnceLock;

/// The environment variable that forces an instruction-set class.
pub const ISA_VARIABLE: &str = "EMOTIONS_ISA";

/// The classes of CPU the kernels are compiled for, widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum IsaClass {
    /// AVX-512 F/BW with VNNI (`vpdpwssd`, `vpdpbusd`): Ice Lake and later, Zen 4 and later.
    Avx512Vnni,
    /// AVX-512 F/BW without VNNI (`vpmaddwd` on zmm): Skylake-SP.
    Avx512,
    /// AVX2 with FMA: Haswell and later, Zen 1-3, and AVX-512 machines forced down.
    Avx2,
    /// AArch64 NEON with the 8-bit matrix multiply-accumulate (i8mm: `USMMLA`) and dot product:
    /// Neoverse N2/V1/V2 (Graviton 3 and 4), Cortex-A710 and later, Apple M2 and later.
    NeonI8mm,
    /// AArch64 NEON with the 8-bit dot product (`SDOT`): Cortex-A76/A78, Neoverse N1
    /// (Graviton 2, Ampere Altra), Apple M1.
    NeonDotprod,
    /// AArch64 NEON alone, which every AArch64 CPU has: Cortex-A53/A72 (Raspberry Pi 3 and 4).
    Neon,
    /// WebAssembly with SIMD128 (every browser and Node since 2021): the generic bodies, which
    /// a `wasm32` build with `+simd128` (.cargo/config.toml) compiles to 128-bit lanes, and
    /// tract-linalg's SIMD128 f32 matmul kernels.
    Simd128,
    /// Plain Rust, for every other CPU (and what every SIMD path must agree with).
    Portable,
}

impl IsaClass {
    /// Every class of every architecture, widest first within each; a CPU runs those of its
    /// own architecture and `Portable`.
    pub const ALL: [IsaClass; 8] = [
        IsaClass::Avx512Vnni,
        IsaClass::Avx512,
        IsaClass::Avx2,
        IsaClass::NeonI8mm,
        IsaClass::NeonDotprod,
        IsaClass::Neon,
        IsaClass::Simd128,
        IsaClass::Portable,
    ];

    /// The name `EMOTIONS_ISA` takes, and `-v` prints.
    pub fn name(self) -> &'static str {
        match self {
            IsaClass::Avx512Vnni => "avx512-vnni",
            IsaClass::Avx512 => "avx512",
            IsaClass::Avx2 => "avx2",
            IsaClass::NeonI8mm => "neon-i8mm",
            IsaClass::NeonDotprod => "neon-dotprod",
            IsaClass::Neon => "neon",
            IsaClass::Simd128 => "simd128",
            IsaClass::Portable => "portable",
        }
    }

    /// Whether this CPU runs the class.
    fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            let avx512 = avx2 && has!("avx512f") && has!("avx512bw");
            match self {
                IsaClass::Avx512Vnni => avx512 && has!("avx512vnni"),
                IsaClass::Avx512 => avx512,
                IsaClass::Avx2 => avx2,
                IsaClass::Portable => true,
                _ => false,
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            use std::arch::is_aarch64_feature_detected as has;
            let dotprod = has!("neon") && has!("dotprod");
            match self {
                IsaClass::NeonI8mm => dotprod && has!("i8mm"),
                IsaClass::NeonDotprod => dotprod,
                IsaClass::Neon => has!("neon"),
                IsaClass::Portable => true,
                _ => false,
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            // Fixed when the module is compiled: a runtime without SIMD128 refuses the module.
            self == IsaClass::Portable
                || (self == IsaClass::Simd128 && cfg!(target_feature = "simd128"))
        }
        #[cfg(not(any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "wasm32"
        )))]
        {
            self == IsaClass::Portable
        }
    }
}

impl std::fmt::Display for IsaClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A class this CPU runs. Only detection makes one, so holding it is the proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Isa(IsaClass);

impl Isa {
    /// The class the kernels run: `EMOTIONS_ISA` when set, else the widest this CPU has.
    /// Read once per process.
    ///
    /// ```
    /// let isa = emotions_kernels::Isa::selected()?;
    /// assert!(emotions_kernels::Isa::all_available().contains(&isa));
    /// # Ok::<(), emotions_kernels::KernelError>(())
    /// ```
    pub fn selected() -> Result<Isa, KernelError> {
        static SETTING: OnceLock<Option<String>> = OnceLock::new();
        Self::from_setting(
            SETTING
                .get_or_init(|| std::env::var(ISA_VARIABLE).ok())
                .as_deref(),
        )
    }

    /// The widest class this CPU runs, whatever `EMOTIONS_ISA` says.
    pub fn widest() -> Isa {
        Isa(IsaClass::ALL
            .into_iter()
            .find(|c| c.runs_here())
            .unwrap_or(IsaClass::Portable))
    }

    /// Plain Rust, which every CPU runs.
    pub fn portable() -> Isa {
        Isa(IsaClass::Portable)
    }

    /// Every class this CPU runs, widest first, for tests and benchmarks that force each.
    pub fn all_available() -> Vec<Isa> {
        IsaClass::ALL
            .into_iter()
            .filter(|c| c.runs_here())
            .map(Isa)
            .collect()
    }

    /// The class named by `setting` (an `EMOTIONS_ISA` value), or the widest when unset or
    /// empty.
    pub fn from_setting(setting: Option<&str>) -> Result<Isa, KernelError> {
        let Some(name) = setting.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Self::widest());
        };
        let wanted = name.to_ascii_lowercase().replace('_', "-");
        let class = IsaClass::ALL
            .into_iter()
            .find(|c| c.name() == wanted)
            .ok_or_else(|| {
                KernelError::new(KernelErrorKind::UnknownIsa {
                    found: name.to_string(),
                })
            })?;
        if !class.runs_here() {
            return Err(KernelError::new(KernelErrorKind::IsaUnavailable {
                class,
                widest: Self::widest().0,
            }));
        }
        Ok(Isa(class))
    }

    pub fn class(self) -> IsaClass {
        self.0
    }

    /// Whether an 8-bit dot-product kernel runs the 8-bit-activation projections (`vpdpbusd`,
    /// `SDOT` or `USMMLA`).
    pub fn has_u8_dot(self) -> bool {
        matches!(
            self.0,
            IsaClass::Avx512Vnni | IsaClass::NeonDotprod | IsaClass::NeonI8mm
        )
    }

    /// The f32 kernels' width: AVX-512 on both AVX-512 classes, NEON on the three AArch64 ones.
    pub(crate) fn f32_lanes(self) -> F32Lanes {
        match self.0 {
            IsaClass::Avx512Vnni | IsaClass::Avx512 => F32Lanes::Avx512,
            IsaClass::Avx2 => F32Lanes::Avx2,
            IsaClass::NeonI8mm | IsaClass::NeonDotprod | IsaClass::Neon => F32Lanes::Neon,
            IsaClass::Simd128 | IsaClass::Portable => F32Lanes::Portable,
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Which copy of an f32 kernel runs: the f32 kernels have no use for VNNI or BW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum F32Lanes {
    Avx512,
    Avx2,
    Neon,
    Portable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_runs_and_portable_always_does() {
        let all = Isa::all_available();
        assert_eq!(all[0], Isa::widest());
        assert_eq!(all.last().map(|i| i.class()), Some(IsaClass::Portable));
    }

    /// Where a test run names the class it means to test (`EMOTIONS_EXPECT_WIDEST`, set by
    /// `scripts/arm/test.sh` for each emulated CPU model), detection finds exactly that one, so a
    /// run meant for i8mm cannot pass on NEON alone.
    #[test]
    fn detection_finds_the_class_the_test_run_expects() {
        if let Ok(want) = std::env::var("EMOTIONS_EXPECT_WIDEST") {
            assert_eq!(Isa::widest().class().name(), want);
        }
    }

    #[test]
    fn a_setting_names_a_class_or_is_refused() {
        assert_eq!(Isa::from_setting(None).unwrap(), Isa::widest());
        assert_eq!(Isa::from_setting(Some(" ")).unwrap(), Isa::widest());
        assert_eq!(
            Isa::from_setting(Some("PORTABLE")).unwrap().class(),
            IsaClass::Portable
        );
        for isa in Isa::all_available() {
            assert_eq!(Isa::from_setting(Some(isa.class().name())).unwrap(), isa);
        }
        let err = Isa::from_setting(Some("sse9")).unwrap_err().to_string();
        assert!(
            err.contains("EMOTIONS_ISA") && err.contains("sse9"),
            "{err}"
        );
        assert!(err.contains("avx2") && err.contains("neon"), "{err}");
        // A class the CPU lacks is refused, naming what it has.
        for class in IsaClass::ALL.into_iter().filter(|c| !c.runs_here()) {
            let err = Isa::from_setting(Some(class.name()))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("this CPU") && err.contains(class.name()),
                "{err}"
            );
        }
    }
}
