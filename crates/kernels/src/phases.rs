//! Column phases of a row: `p_k[t] = row[4t + k + shift]` and back. Winograd F(4³, 3³) works
//! on tiles 4 columns apart, and its transforms vectorise over tiles, so every input row is
//! split into its column phases and every output row is put back together from them. A tile
//! row has 24, 12 or 6 tiles at the paper network's stages: written as plain loops, these
//! shuffles stayed scalar and took a third of the transforms' time. On AVX-512 they are eight
//! two-source permutes per 16 tiles, with masked loads and stores at the row's ends; elsewhere
//! the plain loops (the reference the AVX-512 copies are tested against).

use crate::simd::Isa;

/// Tiles per vector.
const LANES: usize = 16;

/// `out[k][t] = row[4t + k + shift]`, zero where that column lies outside the row, for k < K
/// (K ≤ 4) and every t below the outputs' (equal) length.
#[inline(always)]
pub(crate) fn split<const K: usize>(isa: Isa, row: &[f32], shift: isize, out: [&mut [f32]; K]) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: `isa()` found AVX-512F on this CPU.
        return unsafe { split_avx512(row, shift, out) };
    }
    let _ = isa;
    split_reference(row, shift, out)
}

/// `row[4t + k] = p[k][t] + bias` for every column of the row (`row.len() ≤ 4·len`).
#[inline(always)]
pub(crate) fn join(isa: Isa, p: [&[f32]; 4], bias: f32, row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: `isa()` found AVX-512F on this CPU.
        return unsafe { join_avx512(p, bias, row) };
    }
    let _ = isa;
    join_reference(p, bias, row)
}

pub(crate) fn split_reference<const K: usize>(row: &[f32], shift: isize, out: [&mut [f32]; K]) {
    for (k, o) in out.into_iter().enumerate() {
        for (t, v) in o.iter_mut().enumerate() {
            let c = (4 * t + k) as isize + shift;
            *v = usize::try_from(c)
                .ok()
                .and_then(|c| row.get(c))
                .copied()
                .unwrap_or(0.0);
        }
    }
}

pub(crate) fn join_reference(p: [&[f32]; 4], bias: f32, row: &mut [f32]) {
    for (c, v) in row.iter_mut().enumerate() {
        *v = p[c % 4][c / 4] + bias;
    }
}

/// Lanes `l` of a 16-float vector starting at column `start` that lie in `0..w`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn inside(start: isize, w: usize) -> u16 {
    let lo = (-start).clamp(0, 16) as u32;
    let hi = (w as isize - start).clamp(0, 16) as u32;
    if hi <= lo {
        return 0;
    }
    let below_hi = if hi == 16 { u16::MAX } else { (1u16 << hi) - 1 };
    below_hi & !((1u16 << lo) - 1)
}

/// Permute indices: `PHASE_PAIR[s]` takes phases 2s and 2s + 1 of 8 quads from two vectors
/// (32 floats) into the low and high halves; `LOW_HALVES` puts the low halves of two such
/// vectors together, `HIGH_HALVES` the high halves.
#[cfg(target_arch = "x86_64")]
const PHASE_PAIR: [[i32; 16]; 2] = [
    [0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29],
    [2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31],
];
#[cfg(target_arch = "x86_64")]
const LOW_HALVES: [i32; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
#[cfg(target_arch = "x86_64")]
const HIGH_HALVES: [i32; 16] = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];

/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_avx512<const K: usize>(row: &[f32], shift: isize, out: [&mut [f32]; K]) {
    use std::arch::x86_64::*;
    let n = out.first().map_or(0, |o| o.len());
    assert!(out.iter().all(|o| o.len() == n) && K <= 4);
    let w = row.len();
    let idx = |a: &[i32; 16]| _mm512_loadu_si512(a.as_ptr().cast());
    let (pair, low, high) = (
        PHASE_PAIR.map(|a| idx(&a)),
        idx(&LOW_HALVES),
        idx(&HIGH_HALVES),
    );
    for c in (0..n).step_by(LANES) {
        let start = (4 * c) as isize + shift;
        // Columns start … start + 63, zero outside the row: masked lanes are not read, so the
        // pointer may lie before or past the row there.
        let v: [__m512; 4] = std::array::from_fn(|q| {
            let at = start + (q * LANES) as isize;
            let k = inside(at, w);
            _mm512_maskz_loadu_ps(k, row.as_ptr().wrapping_offset(at))
        });
        let keep = if n - c >= LANES {
            u16::MAX
        } else {
            (1u16 << (n - c)) - 1
        };
        for (s, pair) in pair.iter().enumerate() {
            if 2 * s >= K {
                break;
            }
            // Phases 2s, 2s + 1 of quads 0 … 7 (from v0, v1) and 8 … 15 (from v2, v3).
            let lo = _mm512_permutex2var_ps(v[0], *pair, v[1]);
            let hi = _mm512_permutex2var_ps(v[2], *pair, v[3]);
            let first = _mm512_permutex2var_ps(lo, low, hi);
            _mm512_mask_storeu_ps(out[2 * s].as_mut_ptr().add(c), keep, first);
            if 2 * s + 1 < K {
                let second = _mm512_permutex2var_ps(lo, high, hi);
                _mm512_mask_storeu_ps(out[2 * s + 1].as_mut_ptr().add(c), keep, second);
            }
        }
    }
}

/// `JOIN[h]` interleaves lanes 8h … 8h + 7 of two vectors (a0 b0 a1 b1 …).
#[cfg(target_arch = "x86_64")]
const JOIN: [[i32; 16]; 2] = [
    [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23],
    [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31],
];
/// `PAIRS[h]` interleaves float pairs 4h … 4h + 3 of two vectors (a0 a1 b0 b1 …).
#[cfg(target_arch = "x86_64")]
const PAIRS: [[i32; 16]; 2] = [
    [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23],
    [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31],
];

/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn join_avx512(p: [&[f32]; 4], bias: f32, row: &mut [f32]) {
    use std::arch::x86_64::*;
    let w = row.len();
    let n = w.div_ceil(4);
    assert!(p.iter().all(|p| p.len() >= n));
    let idx = |a: &[i32; 16]| _mm512_loadu_si512(a.as_ptr().cast());
    let (join, pairs) = (JOIN.map(|a| idx(&a)), PAIRS.map(|a| idx(&a)));
    let b = _mm512_set1_ps(bias);
    for c in (0..n).step_by(LANES) {
        let keep = if n - c >= LANES {
            u16::MAX
        } else {
            (1u16 << (n - c)) - 1
        };
        let ph: [__m512; 4] = std::array::from_fn(|k| {
            _mm512_add_ps(_mm512_maskz_loadu_ps(keep, p[k].as_ptr().add(c)), b)
        });
        for (h, join) in join.iter().enumerate() {
            // Quads 8h … 8h + 7: phases 0, 1 and 2, 3 paired, then the pairs interleaved.
            let p01 = _mm512_permutex2var_ps(ph[0], *join, ph[1]);
            let p23 = _mm512_permutex2var_ps(ph[2], *join, ph[3]);
            for (q, pairs) in pairs.iter().enumerate() {
                let at = 4 * c + 32 * h + 16 * q;
                let k = inside(at as isize, w);
                if k != 0 {
                    let v = _mm512_permutex2var_ps(p01, *pairs, p23);
                    _mm512_mask_storeu_ps(row.as_mut_ptr().add(at), k, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::isa;

    /// The AVX-512 copies against the plain loops, bit for bit: every row length up to 3
    /// vectors of tiles, every shift the transforms use, one to four phases.
    #[test]
    fn phases_match_the_reference() {
        let level = isa();
        for w in 0..=200usize {
            let row: Vec<f32> = (0..w).map(|c| c as f32 * 0.5 - 7.0).collect();
            for shift in [-1isize, 0, 3] {
                let n = (w + 4).div_ceil(4);
                let mut want = vec![vec![f32::NAN; n]; 4];
                let mut got = vec![vec![f32::NAN; n]; 4];
                let [w0, w1, w2, w3] = &mut want[..] else {
                    unreachable!()
                };
                split_reference(&row, shift, [w0, w1, w2, w3]);
                let [g0, g1, g2, g3] = &mut got[..] else {
                    unreachable!()
                };
                split(level, &row, shift, [g0, g1, g2, g3]);
                assert_eq!(got, want, "split w {w} shift {shift}");
                // Two phases only (the input transform's e4, e5).
                let (mut a, mut b) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                split(level, &row, shift, [&mut a, &mut b]);
                assert_eq!([a, b], [want[0].clone(), want[1].clone()], "w {w}");
            }
            let n = w.div_ceil(4);
            let p: Vec<Vec<f32>> = (0..4)
                .map(|k| (0..n).map(|t| (4 * t + k) as f32 * 1.5).collect())
                .collect();
            let (mut want, mut got) = (vec![f32::NAN; w], vec![f32::NAN; w]);
            join_reference([&p[0], &p[1], &p[2], &p[3]], 0.25, &mut want);
            join(level, [&p[0], &p[1], &p[2], &p[3]], 0.25, &mut got);
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "join w {w}"
            );
        }
    }
}
