//! Which vector instructions an f32 kernel runs with. The head, low-rank and attention kernels
//! each compile one generic body three times (AVX-512, AVX2 with FMA, portable) and pick a copy
//! at run time; tests force every copy the CPU can run, so each is checked on any machine that
//! has it, not only the one the CPU would pick.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum F32Isa {
    Avx512,
    Avx2Fma,
    Portable,
}

impl F32Isa {
    /// The widest this CPU runs.
    pub(crate) fn detect() -> F32Isa {
        [F32Isa::Avx512, F32Isa::Avx2Fma]
            .into_iter()
            .find(|isa| isa.available())
            .unwrap_or(F32Isa::Portable)
    }

    /// Whether this CPU runs it.
    pub(crate) fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            F32Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            F32Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            F32Isa::Portable => true,
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every one this CPU runs, for tests that force each.
    #[cfg(test)]
    pub(crate) fn all_available() -> Vec<F32Isa> {
        [F32Isa::Avx512, F32Isa::Avx2Fma, F32Isa::Portable]
            .into_iter()
            .filter(|isa| isa.available())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detected_isa_runs_and_portable_always_does() {
        let all = F32Isa::all_available();
        assert!(all.contains(&F32Isa::detect()), "{all:?}");
        assert_eq!(all.last(), Some(&F32Isa::Portable));
        // The widest available comes first, and is what detect picks.
        assert_eq!(all[0], F32Isa::detect());
    }
}
