//! The bf16 GEMM on the CPU's matrix units: `dst (= or +=) lhs · rhs` with both operands
//! rounded to bf16 (nearest even) and fp32 sums, at the levels [`crate::bf16::Bf16Level`]
//! names above `fp32`.
//!
//! Both operands are packed once per call into the layout the units read:
//! - lhs (m × k): row-major bf16, rows padded to a multiple of 32 and k to a multiple of 32;
//!   AMX loads 16 rows × 32 k as one tile, AVX512-BF16 broadcasts one (k, k+1) pair.
//! - rhs (k × n): blocks of 16 columns; inside a block, row p holds the pairs
//!   (rhs[2p][j], rhs[2p+1][j]) for its 16 columns j (64 bytes). That row is one row of an AMX
//!   B tile and one zmm register of `vdpbf16ps`, so both levels share the packing.
//!
//! The output is cut into 32 × 32 blocks, each computed over the whole k by a micro-kernel
//! into a local buffer and then stored (or added) to `dst`; blocks run in parallel on rayon
//! when the caller asks for it. Padding is zeros, so it adds nothing to the sums.
//!
//! [`micro_reference`] is the micro-kernels' slow twin: the same packed inputs, the
//! instructions' arithmetic in plain Rust. It runs the driver (packing, padding, edges) on
//! every CPU; the property tests compare each level this CPU has against the f64 GEMM.

use crate::bf16::{round_to_bf16, Bf16Level};
use crate::conv_core::{Dst, Operand};
use rayon::prelude::*;
use std::cell::Cell;

/// Rows and columns of the output block one micro-kernel call computes; k is padded to it.
pub(crate) const BLOCK: usize = 32;

/// The bf16 bits of `x` (nearest even).
#[inline]
fn bf16_bits(x: f32) -> u16 {
    (round_to_bf16(x).to_bits() >> 16) as u16
}

#[inline]
fn from_bits(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// lhs (m × k, strided) → `out`: `mp × kp` row-major bf16, zero padded.
fn pack_lhs(lhs: Operand, m: usize, k: usize, (mp, kp): (usize, usize), out: &mut Vec<u16>) {
    out.clear();
    out.resize(mp * kp, 0);
    let (rs, cs) = lhs.strides;
    for (i, row) in out.chunks_exact_mut(kp).take(m).enumerate() {
        let src = &lhs.data[i * rs..];
        if cs == 1 {
            for (o, &v) in row[..k].iter_mut().zip(&src[..k]) {
                *o = bf16_bits(v);
            }
        } else {
            for (kk, o) in row[..k].iter_mut().enumerate() {
                *o = bf16_bits(src[kk * cs]);
            }
        }
    }
}

/// rhs (k × n, strided) → `out`: `np / 16` blocks of `kp / 2` rows × 16 columns × 2 (the
/// module's layout), zero padded. Element (kk, j) lands at
/// `((j / 16) · kp / 2 + kk / 2) · 32 + (j % 16) · 2 + kk % 2`.
fn pack_rhs(rhs: Operand, k: usize, n: usize, (np, kp): (usize, usize), out: &mut Vec<u16>) {
    out.clear();
    out.resize(np * kp, 0);
    let (rs, cs) = rhs.strides;
    for (jb, block) in out.chunks_exact_mut(16 * kp).enumerate() {
        let cols = (jb * 16..n.min(jb * 16 + 16)).enumerate();
        // Walk the source along its unit stride.
        if rs == 1 && cs != 1 {
            for (c, j) in cols {
                for kk in 0..k {
                    block[(kk / 2) * 32 + c * 2 + kk % 2] = bf16_bits(rhs.data[kk + j * cs]);
                }
            }
        } else {
            for kk in 0..k {
                let row = &mut block[(kk / 2) * 32 + kk % 2..];
                for (c, j) in cols.clone() {
                    row[c * 2] = bf16_bits(rhs.data[kk * rs + j * cs]);
                }
            }
        }
    }
}

/// One output block: `c[32 × 32] = a · b` for `a` the packed lhs rows of the block (row
/// stride `kp`) and `b` its two packed 16-column rhs blocks (the second at `16 · kp`).
///
/// # Safety
/// `a` holds `32 · kp` values, `b` holds `32 · kp`, `c` holds 1024; `kp` is a multiple of 32;
/// the level's unit is present (and, for AMX, [`amx_begin`] ran on this thread).
type Micro = unsafe fn(a: *const u16, kp: usize, b: *const u16, c: *mut f32);

/// The micro-kernels' arithmetic in plain Rust: per k pair, `c += a₀·b₀ + a₁·b₁` in fp32
/// (each product of two bf16 values is exact in fp32).
///
/// # Safety
/// As [`Micro`], without the unit.
unsafe fn micro_reference(a: *const u16, kp: usize, b: *const u16, c: *mut f32) {
    let a = std::slice::from_raw_parts(a, BLOCK * kp);
    let b = std::slice::from_raw_parts(b, BLOCK * kp);
    let c = std::slice::from_raw_parts_mut(c, BLOCK * BLOCK);
    for i in 0..BLOCK {
        for j in 0..BLOCK {
            let blk = &b[(j / 16) * 16 * kp..];
            let mut acc = 0f32;
            for p in 0..kp / 2 {
                let (a0, a1) = (
                    from_bits(a[i * kp + 2 * p]),
                    from_bits(a[i * kp + 2 * p + 1]),
                );
                let at = p * 32 + (j % 16) * 2;
                acc += a0 * from_bits(blk[at]) + a1 * from_bits(blk[at + 1]);
            }
            c[i * BLOCK + j] = acc;
        }
    }
}

/// AVX512-BF16: 8 rows × 32 columns of accumulators at a time (16 zmm), one `vdpbf16ps` per
/// row, column half and k pair, the lhs pair broadcast.
///
/// # Safety
/// As [`Micro`]; the CPU has AVX512F and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn micro_avx512bf16(a: *const u16, kp: usize, b: *const u16, c: *mut f32) {
    use std::arch::x86_64::*;
    let b1 = b.add(16 * kp);
    for group in 0..BLOCK / 8 {
        let a = a.add(group * 8 * kp);
        let mut acc = [[_mm512_setzero_ps(); 2]; 8];
        for p in 0..kp / 2 {
            let lo: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * 32).cast()));
            let hi: __m512bh = std::mem::transmute(_mm512_loadu_si512(b1.add(p * 32).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = a.add(r * kp + 2 * p).cast::<i32>().read_unaligned();
                let pair: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                acc[0] = _mm512_dpbf16_ps(acc[0], pair, lo);
                acc[1] = _mm512_dpbf16_ps(acc[1], pair, hi);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = c.add((group * 8 + r) * BLOCK);
            _mm512_storeu_ps(row, acc[0]);
            _mm512_storeu_ps(row.add(16), acc[1]);
        }
    }
}

/// Loads the tile configuration the AMX micro-kernel uses (palette 1): tmm0–3 the 2 × 2
/// output tiles (16 rows × 16 fp32), tmm4–5 lhs tiles (16 rows × 32 bf16), tmm6–7 rhs tiles
/// (16 k pairs × 16 columns × 2); every tile 16 rows of 64 bytes.
///
/// # Safety
/// The CPU has AMX-TILE and the process was granted the tile data (`bf16`'s level check).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
unsafe fn amx_begin() {
    let mut cfg = [0u8; 64];
    cfg[0] = 1;
    for t in 0..8 {
        cfg[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
        cfg[48 + t] = 16;
    }
    std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.as_ptr(), options(nostack, readonly));
}

/// Releases the tiles, so that this thread's saved state shrinks back (and later code on it
/// starts from a clean configuration).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
unsafe fn amx_end() {
    std::arch::asm!("tilerelease", options(nostack, nomem));
}

/// AMX-BF16: the 32 × 32 block as 2 × 2 tiles accumulated over k in steps of 32
/// (`tdpbf16ps`), then stored to `c`.
///
/// # Safety
/// As [`Micro`]; [`amx_begin`] ran on this thread.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
unsafe fn micro_amx(a: *const u16, kp: usize, b: *const u16, c: *mut f32) {
    use std::arch::asm;
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack, nomem)
    );
    let b1 = b.add(16 * kp);
    for step in 0..kp / 32 {
        asm!(
            "tileloadd tmm4, [{a0} + {sa}]",
            "tileloadd tmm5, [{a1} + {sa}]",
            "tileloadd tmm6, [{b0} + {sb}]",
            "tileloadd tmm7, [{b1} + {sb}]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a.add(step * 32),
            a1 = in(reg) a.add(16 * kp + step * 32),
            sa = in(reg) kp * 2,
            b0 = in(reg) b.add(step * 16 * 32),
            b1 = in(reg) b1.add(step * 16 * 32),
            sb = in(reg) 64usize,
            options(nostack, readonly)
        );
    }
    asm!(
        "tilestored [{c0} + {sc}], tmm0",
        "tilestored [{c1} + {sc}], tmm1",
        "tilestored [{c2} + {sc}], tmm2",
        "tilestored [{c3} + {sc}], tmm3",
        c0 = in(reg) c,
        c1 = in(reg) c.add(16),
        c2 = in(reg) c.add(16 * BLOCK),
        c3 = in(reg) c.add(16 * BLOCK + 16),
        sc = in(reg) BLOCK * 4,
        options(nostack)
    );
}

/// The output as parallel block writers share it: every block owns a disjoint rectangle.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    row_stride: usize,
    accumulate: bool,
}
// SAFETY: blocks write disjoint rectangles of the buffer, which outlives the GEMM.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}
impl Out {
    /// # Safety
    /// `at..at + len` lies inside the buffer and no other block writes it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn span(&self, at: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.ptr.add(at), len)
    }
}

thread_local! {
    static PACKED_LHS: Cell<Vec<u16>> = const { Cell::new(Vec::new()) };
    static PACKED_RHS: Cell<Vec<u16>> = const { Cell::new(Vec::new()) };
}

/// `dst[m×n] (= or +=) lhs[m×k] · rhs[k×n]` with bf16 operands and fp32 sums, on `level` (one
/// the caller checked this CPU has; `fp32` runs [`micro_reference`], which only the tests want:
/// `matmul_with` sends that level to the fp32 GEMM); the blocks run on rayon when `parallel`.
/// `m`, `n` and `k` are non-zero and the operands' bounds were checked by the caller.
pub(crate) fn gemm(
    level: Bf16Level,
    parallel: bool,
    [m, n, k]: [usize; 3],
    dst: Dst,
    lhs: Operand,
    rhs: Operand,
) {
    let (mp, np, kp) = (
        m.next_multiple_of(BLOCK),
        n.next_multiple_of(BLOCK),
        k.next_multiple_of(BLOCK),
    );
    // Packed copies, reused per thread and taken out of their cells while in use.
    let (mut a, mut b) = (PACKED_LHS.take(), PACKED_RHS.take());
    pack_lhs(lhs, m, k, (mp, kp), &mut a);
    pack_rhs(rhs, k, n, (np, kp), &mut b);
    assert!((m - 1) * dst.row_stride + n <= dst.data.len());
    let out = Out {
        ptr: dst.data.as_mut_ptr(),
        row_stride: dst.row_stride,
        accumulate: dst.accumulate,
    };
    let (mb, nb) = (mp / BLOCK, np / BLOCK);
    let (micro, amx): (Micro, bool) = match level {
        Bf16Level::Fp32 => (micro_reference, false),
        #[cfg(target_arch = "x86_64")]
        Bf16Level::Avx512Bf16 => (micro_avx512bf16, false),
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Bf16Level::Amx => (micro_amx, true),
        #[allow(unreachable_patterns)]
        level => unreachable!("bf16 level {level:?} is not built for this target"),
    };
    let (a_ref, b_ref) = (&a[..], &b[..]);
    // Consecutive blocks share their rhs panel and walk down the lhs.
    let run = |blocks: std::ops::Range<usize>| {
        let mut c = [0f32; BLOCK * BLOCK];
        // SAFETY: `amx` only for the AMX level, which bf16's level check granted.
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if amx {
            unsafe { amx_begin() };
        }
        for blk in blocks {
            let (ib, jb) = (blk % mb, blk / mb);
            // SAFETY: the packed buffers hold mp·kp and np·kp values, so block ib of the lhs
            // (32·kp from ib·32·kp) and panel jb of the rhs (32·kp from jb·32·kp) are inside;
            // `c` holds 32·32; the level is present (the caller's check).
            unsafe {
                micro(
                    a_ref[ib * BLOCK * kp..].as_ptr(),
                    kp,
                    b_ref[jb * BLOCK * kp..].as_ptr(),
                    c.as_mut_ptr(),
                )
            };
            let rows = BLOCK.min(m - ib * BLOCK);
            let cols = BLOCK.min(n - jb * BLOCK);
            for (r, src) in c.chunks_exact(BLOCK).take(rows).enumerate() {
                let at = (ib * BLOCK + r) * out.row_stride + jb * BLOCK;
                // SAFETY: row ib·32 + r < m and columns jb·32.. < n lie inside dst (asserted
                // above); no other block touches them.
                let row = unsafe { out.span(at, cols) };
                if out.accumulate {
                    row.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                } else {
                    row.copy_from_slice(&src[..cols]);
                }
            }
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if amx {
            unsafe { amx_end() };
        }
    };
    let total = mb * nb;
    if parallel && total > 1 {
        let chunk = total.div_ceil(4 * rayon::current_num_threads()).max(1);
        (0..total.div_ceil(chunk))
            .into_par_iter()
            .for_each(|t| run(t * chunk..total.min(t * chunk + chunk)));
    } else {
        run(0..total);
    }
    PACKED_LHS.set(a);
    PACKED_RHS.set(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv_core::operand;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect()
    }

    /// f64 sums of the bf16-rounded operands' products.
    fn want(
        [m, n, k]: [usize; 3],
        lhs: (&[f32], (usize, usize)),
        rhs: (&[f32], (usize, usize)),
    ) -> Vec<f32> {
        let r = |x: f32| round_to_bf16(x) as f64;
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|kk| {
                        r(lhs.0[i * lhs.1 .0 + kk * lhs.1 .1])
                            * r(rhs.0[kk * rhs.1 .0 + j * rhs.1 .1])
                    })
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    /// Each packed element lands where the micro-kernels read it.
    #[test]
    fn packing_places_every_element() {
        let (k, n) = (37, 35);
        let rhs: Vec<f32> = (0..k * n).map(|v| v as f32).collect();
        let (np, kp) = (64, 64);
        let mut b = Vec::new();
        pack_rhs(operand(&rhs, (n, 1)), k, n, (np, kp), &mut b);
        let mut bt = Vec::new();
        let rhs_t: Vec<f32> = (0..n * k).map(|i| rhs[(i % k) * n + i / k]).collect();
        pack_rhs(operand(&rhs_t, (1, k)), k, n, (np, kp), &mut bt);
        assert_eq!(b, bt, "row-major and transposed sources pack alike");
        for kk in 0..kp {
            for j in 0..np {
                let got = from_bits(b[((j / 16) * kp / 2 + kk / 2) * 32 + (j % 16) * 2 + kk % 2]);
                let want = if kk < k && j < n {
                    round_to_bf16(rhs[kk * n + j])
                } else {
                    0.0
                };
                assert_eq!(got, want, "({kk}, {j})");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The driver (packing, padding, edges, strides, accumulation, parallel blocks) with
        /// the reference micro-kernel, on any CPU.
        #[test]
        fn driver_matches_f64_reference(
            m in 1usize..80, n in 1usize..80, k in 1usize..90,
            lhs_t in proptest::bool::ANY, rhs_t in proptest::bool::ANY,
            accumulate in proptest::bool::ANY, parallel in proptest::bool::ANY, seed in 0u64..1000,
        ) {
            let a = data(m * k, seed);
            let b = data(k * n, seed + 1);
            let ls = if lhs_t { (1, m) } else { (k, 1) };
            let rs = if rhs_t { (1, k) } else { (n, 1) };
            let stride = n + 3;
            let init = data(m * stride, seed + 2);
            let mut dst = init.clone();
            gemm(
                Bf16Level::Fp32,
                parallel,
                [m, n, k],
                Dst { data: &mut dst, row_stride: stride, accumulate },
                operand(&a, ls),
                operand(&b, rs),
            );
            let w = want([m, n, k], (&a, ls), (&b, rs));
            for i in 0..m {
                for j in 0..stride {
                    let got = dst[i * stride + j];
                    let expect = if j >= n {
                        init[i * stride + j]
                    } else if accumulate {
                        init[i * stride + j] + w[i * n + j]
                    } else {
                        w[i * n + j]
                    };
                    prop_assert!((got - expect).abs() <= 1e-4 * (1.0 + expect.abs()), "({i}, {j}): {got} vs {expect}");
                }
            }
        }
    }
}
