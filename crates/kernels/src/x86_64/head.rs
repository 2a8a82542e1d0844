//! The fused head's AVX-512 and AVX2 copies: explicit intrinsics, since LLVM does not
//! vectorise the generic block at 8 rows.

use crate::generic::head::{HeadKernel, K_RUN, LANES, by_blocks};
use std::arch::x86_64::*;

#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn run_avx512(k: &HeadKernel, x: &[f32], out: &mut [f32]) {
    // Explicit intrinsics: the generic block below is not vectorised by LLVM at 8 rows.
    let dim = k.dim;
    let w = k.packed.as_ptr();
    by_blocks::<8>(k, x, out, |xb, z| {
        let xp = xb.as_ptr();
        // 8 rows × 2 zmm for the running part of the sum, 2 for the weights, 1 broadcast.
        // SAFETY: row r < 8 reads xb[r * dim + i] with i < dim; weight row i < dim reads
        // packed[i * LANES .. i * LANES + 32]; both in bounds by construction.
        unsafe {
            let mut acc = [[
                _mm512_loadu_ps(k.bias.as_ptr()),
                _mm512_loadu_ps(k.bias.as_ptr().add(16)),
            ]; 8];
            let mut start = 0;
            while start < dim {
                let end = (start + K_RUN).min(dim);
                let mut part = [[_mm512_setzero_ps(); 2]; 8];
                for i in start..end {
                    let w0 = _mm512_loadu_ps(w.add(i * LANES));
                    let w1 = _mm512_loadu_ps(w.add(i * LANES + 16));
                    for (r, p) in part.iter_mut().enumerate() {
                        let xv = _mm512_set1_ps(*xp.add(r * dim + i));
                        p[0] = _mm512_fmadd_ps(xv, w0, p[0]);
                        p[1] = _mm512_fmadd_ps(xv, w1, p[1]);
                    }
                }
                for (a, p) in acc.iter_mut().zip(&part) {
                    a[0] = _mm512_add_ps(a[0], p[0]);
                    a[1] = _mm512_add_ps(a[1], p[1]);
                }
                start = end;
            }
            for (zr, a) in z.iter_mut().zip(&acc) {
                _mm512_storeu_ps(zr.as_mut_ptr(), a[0]);
                _mm512_storeu_ps(zr.as_mut_ptr().add(16), a[1]);
            }
        }
    });
}

#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn run_avx2_fma(k: &HeadKernel, x: &[f32], out: &mut [f32]) {
    let dim = k.dim;
    let w = k.packed.as_ptr();
    by_blocks::<2>(k, x, out, |xb, z| {
        let xp = xb.as_ptr();
        // 2 rows × 4 ymm running part, 4 weights, 1 broadcast: 13 of 16 registers.
        // SAFETY: as in `run_avx512`.
        unsafe {
            let b = k.bias.as_ptr();
            let mut acc = [[
                _mm256_loadu_ps(b),
                _mm256_loadu_ps(b.add(8)),
                _mm256_loadu_ps(b.add(16)),
                _mm256_loadu_ps(b.add(24)),
            ]; 2];
            let mut start = 0;
            while start < dim {
                let end = (start + K_RUN).min(dim);
                let mut part = [[_mm256_setzero_ps(); 4]; 2];
                for i in start..end {
                    let wi = w.add(i * LANES);
                    let ws = [
                        _mm256_loadu_ps(wi),
                        _mm256_loadu_ps(wi.add(8)),
                        _mm256_loadu_ps(wi.add(16)),
                        _mm256_loadu_ps(wi.add(24)),
                    ];
                    for (r, p) in part.iter_mut().enumerate() {
                        let xv = _mm256_set1_ps(*xp.add(r * dim + i));
                        for (pq, wq) in p.iter_mut().zip(&ws) {
                            *pq = _mm256_fmadd_ps(xv, *wq, *pq);
                        }
                    }
                }
                for (a, p) in acc.iter_mut().zip(&part) {
                    for (aq, pq) in a.iter_mut().zip(p) {
                        *aq = _mm256_add_ps(*aq, *pq);
                    }
                }
                start = end;
            }
            for (zr, a) in z.iter_mut().zip(&acc) {
                for (zq, aq) in zr.chunks_exact_mut(8).zip(a) {
                    _mm256_storeu_ps(zq.as_mut_ptr(), *aq);
                }
            }
        }
    });
}
