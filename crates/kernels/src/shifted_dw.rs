//! dW of the shifted-view "same" convs (`shifted::backward_dw`) in fp32 on AVX-512, without a
//! GEMM call per tap.
//!
//! Why: dW is `Σ_q dY[co][q] · X[ci][q + off_t]` for each of the k³ taps t, a product with a tiny
//! output (`Cout × Cin`) and a huge inner dimension (the grid columns q). Through the GEMM, each
//! tap's call packed (transposed) both operands again — 27 copies of the slab and of dY per
//! chunk — and the packing cost more than the multiplies: a 48→48 3³ conv's backward at 96³
//! took ~6× its forward.
//!
//! How: the padded slab is transposed once to channels-last (`X_t[q][ci]`, `ci` padded to a
//! multiple of 16), so a tap is a row offset and every operand is read in place. The micro-kernel
//! keeps an 8 (output channels) × 48 (input channels) block of dW in 24 zmm accumulators and
//! walks the columns of one q block: per column, one broadcast of dY per output channel and
//! three loads of `X_t`. Columns are cut into blocks of [`Q_BLOCK`] so that one block's nine
//! shifted windows of `X_t` (the (kz, ky) rows; kx is a one-column shift) stay in L2 across the
//! taps and output-channel tiles that reread them.

use crate::simd::{isa, Isa};

/// Grid columns per block: one block's nine windows of `X_t` stay in L2 across the taps and tiles
/// that reread them (256 measured 3 % faster than 512 on the 96³ convs, machine C).
const Q_BLOCK: usize = 256;
/// Output channels per micro-kernel call (broadcast operands).
const ROWS: usize = 8;
/// Input-channel lanes per vector.
const LANES: usize = 16;
/// Vectors of input channels per micro-kernel call at most (8 × 3 accumulators).
const MAX_VECTORS: usize = 3;

/// Whether dW takes this path here: fp32 precision (under bf16 the tap GEMMs run bf16) on a CPU
/// with AVX-512, within the cap `limit_isa` sets.
pub(crate) fn runs_here() -> bool {
    crate::bf16::precision() != crate::bf16::Precision::Bf16 && is_avx512()
}

fn is_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        isa() == Isa::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        false
    }
}

/// Input channels padded to whole vectors: the row length of `X_t`.
pub(crate) fn padded_channels(c_in: usize) -> usize {
    c_in.div_ceil(LANES) * LANES
}

/// `X_t [len][ci_pad]` from the padded slab `src [c_in][chan]` (its first `len` columns); the
/// padding channels are zero.
pub(crate) fn transpose(src: &[f32], c_in: usize, chan: usize, len: usize, xt: &mut Vec<f32>) {
    use rayon::prelude::*;
    let ci_pad = padded_channels(c_in);
    xt.clear();
    xt.resize(len * ci_pad, 0.0);
    // Blocks of columns: a block's rows of X_t (256 × ci_pad floats) stay in cache while every
    // channel's run of 256 contiguous values is scattered into them.
    const BLOCK: usize = 256;
    xt.par_chunks_mut(BLOCK * ci_pad)
        .enumerate()
        .for_each(|(b, out)| {
            let q0 = b * BLOCK;
            let n = out.len() / ci_pad;
            for ci in 0..c_in {
                let run = &src[ci * chan + q0..][..n];
                for (j, &v) in run.iter().enumerate() {
                    out[j * ci_pad + ci] = v;
                }
            }
        });
}

/// Where the micro-kernel reads and writes.
struct Tile {
    /// dY of the tile's rows (missing rows point at zeros), each read at `q`.
    dy: [*const f32; ROWS],
    /// `X_t` at the first column and input channel of the tile.
    xt: *const f32,
    /// Row length of `X_t`.
    ci_pad: usize,
    /// Columns to sum over.
    len: usize,
    /// The dW block `[ROWS][vectors · 16]` accumulated into, with row stride `c_stride`.
    c: *mut f32,
    c_stride: usize,
}

/// `c[r][v·16 + l] += Σ_q dy[r][q] · xt[q·ci_pad + v·16 + l]` on AVX-512.
///
/// # Safety
/// The CPU has AVX-512F; every `dy[r]` holds `len` floats, `xt` holds `(len − 1)·ci_pad +
/// NV·16` floats, `c` holds `(ROWS − 1)·c_stride + NV·16` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_avx512<const NV: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); NV]; ROWS];
    for q in 0..t.len {
        let x = t.xt.add(q * t.ci_pad);
        let mut b = [_mm512_setzero_ps(); NV];
        for (v, bv) in b.iter_mut().enumerate() {
            *bv = _mm512_loadu_ps(x.add(v * LANES));
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let a = _mm512_set1_ps(t.dy[r].add(q).read());
            for (v, cv) in row.iter_mut().enumerate() {
                *cv = _mm512_fmadd_ps(a, b[v], *cv);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, cv) in row.iter().enumerate() {
            let p = t.c.add(r * t.c_stride + v * LANES);
            _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), *cv));
        }
    }
}

/// The same sums in plain Rust (f32 multiply-adds in the same order per lane): the twin the
/// hardware kernel is tested against, on any CPU.
///
/// # Safety
/// As [`micro_avx512`], without the CPU requirement.
unsafe fn micro_reference<const NV: usize>(t: &Tile) {
    let mut acc = [[[0f32; LANES]; NV]; ROWS];
    for q in 0..t.len {
        let x = t.xt.add(q * t.ci_pad);
        for (r, row) in acc.iter_mut().enumerate() {
            let a = t.dy[r].add(q).read();
            for (v, cv) in row.iter_mut().enumerate() {
                for (l, c) in cv.iter_mut().enumerate() {
                    *c = a.mul_add(x.add(v * LANES + l).read(), *c);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, cv) in row.iter().enumerate() {
            for (l, &c) in cv.iter().enumerate() {
                *t.c.add(r * t.c_stride + v * LANES + l) += c;
            }
        }
    }
}

/// Which micro-kernel computes the tiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Micro {
    /// The AVX-512 kernel (the caller checked [`runs_here`]).
    Avx512,
    /// The plain-Rust twin (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Reference,
}

/// # Safety
/// As [`micro_avx512`]; `Micro::Avx512` only where the CPU has AVX-512F.
unsafe fn run_micro(micro: Micro, vectors: usize, t: &Tile) {
    match (micro, vectors) {
        #[cfg(target_arch = "x86_64")]
        (Micro::Avx512, 1) => micro_avx512::<1>(t),
        #[cfg(target_arch = "x86_64")]
        (Micro::Avx512, 2) => micro_avx512::<2>(t),
        #[cfg(target_arch = "x86_64")]
        (Micro::Avx512, _) => micro_avx512::<3>(t),
        (_, 1) => micro_reference::<1>(t),
        (_, 2) => micro_reference::<2>(t),
        _ => micro_reference::<3>(t),
    }
}

/// The operands of one chunk of grid columns.
pub(crate) struct Chunk<'a> {
    /// dY on the grid, `[c_out][q_stride]`, zero on the thrown-away columns.
    pub dy: &'a [f32],
    pub q_stride: usize,
    pub c_out: usize,
    /// `X_t` of the slab ([`transpose`]) and the true input channel count.
    pub xt: &'a [f32],
    pub c_in: usize,
    /// Column offset of each tap.
    pub taps: &'a [usize],
    /// The chunk's columns `q0 .. q0 + len`.
    pub q0: usize,
    pub len: usize,
}

/// dW partial sums of one chunk, `[taps][c_out][c_in]`.
pub(crate) fn chunk_dw(ch: &Chunk, micro: Micro) -> Vec<f32> {
    let mut part = padded_part(ch.taps.len(), ch.c_out, ch.c_in);
    chunk_dw_into(ch, micro, &mut part);
    unpad(&part, ch.taps.len(), ch.c_out, ch.c_in)
}

/// Zero sums in the padded layout `[taps][c_out up to a multiple of 8][c_in up to a multiple of
/// 16]`, where every micro-kernel call stores whole rows and vectors.
pub(crate) fn padded_part(k3: usize, c_out: usize, c_in: usize) -> Vec<f32> {
    vec![0f32; k3 * c_out.div_ceil(ROWS) * ROWS * padded_channels(c_in)]
}

/// `[tap][c_out][c_in]` from the padded layout of [`padded_part`].
pub(crate) fn unpad(part: &[f32], k3: usize, c_out: usize, c_in: usize) -> Vec<f32> {
    let (co_pad, ci_pad) = (c_out.div_ceil(ROWS) * ROWS, padded_channels(c_in));
    let mut out = vec![0f32; k3 * c_out * c_in];
    for tap in 0..k3 {
        for co in 0..c_out {
            out[(tap * c_out + co) * c_in..][..c_in]
                .copy_from_slice(&part[(tap * co_pad + co) * ci_pad..][..c_in]);
        }
    }
    out
}

/// Adds one chunk's dW sums onto `part` (the layout of [`padded_part`]).
pub(crate) fn chunk_dw_into(ch: &Chunk, micro: Micro, part: &mut [f32]) {
    let ci_pad = padded_channels(ch.c_in);
    let co_pad = ch.c_out.div_ceil(ROWS) * ROWS;
    let k3 = ch.taps.len();
    let max_off = ch.taps.iter().copied().max().unwrap_or(0);
    assert!(
        ch.q0 + ch.len <= ch.q_stride && ch.dy.len() >= ch.c_out * ch.q_stride,
        "shifted dW: dY does not cover the chunk"
    );
    assert!(
        ch.len == 0 || (ch.q0 + ch.len - 1 + max_off + 1) * ci_pad <= ch.xt.len(),
        "shifted dW: the transposed slab does not cover the chunk's taps"
    );
    assert_eq!(
        part.len(),
        k3 * co_pad * ci_pad,
        "shifted dW: partial sums of another shape"
    );
    let zeros = vec![0f32; Q_BLOCK];
    for b0 in (0..ch.len).step_by(Q_BLOCK) {
        let q = ch.q0 + b0;
        let len = Q_BLOCK.min(ch.len - b0);
        for ci0 in (0..ci_pad).step_by(MAX_VECTORS * LANES) {
            let vectors = ((ci_pad - ci0) / LANES).min(MAX_VECTORS);
            for (tap, &off) in ch.taps.iter().enumerate() {
                for co0 in (0..co_pad).step_by(ROWS) {
                    let dy = std::array::from_fn(|r| {
                        let co = co0 + r;
                        if co < ch.c_out {
                            ch.dy[co * ch.q_stride + q..].as_ptr()
                        } else {
                            zeros.as_ptr()
                        }
                    });
                    let tile = Tile {
                        dy,
                        xt: ch.xt[(q + off) * ci_pad + ci0..].as_ptr(),
                        ci_pad,
                        len,
                        c: part[(tap * co_pad + co0) * ci_pad + ci0..].as_mut_ptr(),
                        c_stride: ci_pad,
                    };
                    // SAFETY: the asserts above bound every read of dY (rows of q_stride ≥
                    // q + len, or the Q_BLOCK zeros) and of X_t (column q + off + len − 1 ≤ the
                    // last covered one, vectors within ci_pad); `part` holds whole padded rows
                    // and vectors; Micro::Avx512 is chosen only after `runs_here`.
                    unsafe { run_micro(micro, vectors, &tile) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// One chunk's dW from the transposed slab, by the plain-Rust twin and (where the CPU
        /// has it) the AVX-512 kernel, against f64 sums over the untransposed operands:
        /// channel counts off the 8-row and 16-lane grids, several Q blocks, a chunk that
        /// starts inside the grid.
        #[test]
        fn chunks_match_f64_sums(
            c_in in 1usize..40, c_out in 1usize..20, q_stride in 1usize..1200,
            start in 0usize..100, seed in 0u64..1000,
        ) {
            let taps = [0usize, 1, 2, 7, 9, 30];
            let max_off = 30;
            let q0 = start.min(q_stride - 1);
            let len = q_stride - q0;
            let chan = q_stride + max_off;
            let dy = data(c_out * q_stride, seed);
            let x = data(c_in * chan, seed + 1);
            let mut xt = Vec::new();
            transpose(&x, c_in, chan, chan, &mut xt);
            let ch = Chunk { dy: &dy, q_stride, c_out, xt: &xt, c_in, taps: &taps, q0, len };
            let mut micros = vec![Micro::Reference];
            if is_avx512() {
                micros.push(Micro::Avx512);
            }
            for micro in micros {
                let got = chunk_dw(&ch, micro);
                for (t, &off) in taps.iter().enumerate() {
                    for co in 0..c_out {
                        for ci in 0..c_in {
                            let want: f64 = (q0..q0 + len)
                                .map(|q| dy[co * q_stride + q] as f64 * x[ci * chan + q + off] as f64)
                                .sum();
                            let v = got[(t * c_out + co) * c_in + ci] as f64;
                            // f32 sums of ≤ 1200 products of values in [-1, 1]: 1e-4 absolute.
                            prop_assert!((v - want).abs() < 1e-4, "{micro:?} tap {t} co {co} ci {ci}: {v} vs {want}");
                        }
                    }
                }
            }
        }
    }
}
