//! The shifted conv's output tiles (`shifted.rs`) in bf16 on AVX512-BF16, with every tap
//! accumulated in registers from one packed copy of the slab.
//!
//! Through the bf16 GEMM, each of a tile's k³ tap products packs its shifted view of the slab
//! again: the input is converted k³ times, with one multiply per packed value and output row,
//! and the packing costs more than the `vdpbf16ps` it feeds (the paper network's forward at
//! 2 × 96³ took 3.4× its fp32 time that way). Here the padded slab is packed once, as channel
//! pairs: row `cp` holds, for every grid column q, the u32 `(x[2cp][q], x[2cp+1][q])` in bf16.
//! Sixteen consecutive columns of a row are one zmm of `vdpbf16ps` operands and a tap is a
//! constant column offset, so all taps read the same packed rows. The weights are packed once
//! per conv as `[row group of 8][tap][cp][row]` pairs (one micro-kernel call reads one
//! contiguous run) and broadcast one row at a time. The micro-kernel keeps
//! 8 output rows × 32 grid columns in 16 zmm accumulators over all taps and channel pairs and
//! stores them once.
//!
//! [`micro_reference`] is the micro-kernel's slow twin (the instruction's arithmetic in plain
//! Rust), so that the packing and the tile driver are tested on every CPU.

use crate::bf16::round_to_bf16;
use rayon::prelude::*;

/// Output rows (channels) per micro-kernel call; the packed weights pad rows to it.
const ROWS: usize = 8;
/// Grid columns per micro-kernel call; tiles pad their width to it.
pub(crate) const COLS: usize = 32;
/// Grid columns one row group walks before the next group takes them.
const CHUNK: usize = 16 * COLS;

/// Whether the shifted conv's tiles run here: bf16 precision at the AVX512-BF16 level. (At the
/// AMX level the tiles stay on the bf16 GEMM, whose AMX micro-kernel has not been measured
/// against this one on a CPU with both units.)
pub(crate) fn runs_here() -> bool {
    use crate::bf16::{bf16_level, precision, Bf16Level, Precision};
    precision() == Precision::Bf16 && bf16_level() == Bf16Level::Avx512Bf16
}

/// Two values rounded to bf16 (nearest even) in one u32, `lo` in the low half: the operand
/// order of `vdpbf16ps`, which multiplies low halves with low halves.
#[inline]
fn pair(lo: f32, hi: f32) -> u32 {
    (round_to_bf16(lo).to_bits() >> 16) | (round_to_bf16(hi).to_bits() & 0xffff_0000)
}

/// A conv's per-tap `[rows × cols]` weight blocks as `[row group][tap][cp][row in group]`
/// channel pairs, rows padded to a multiple of 8 and an odd channel count padded with a zero
/// channel, and the micro-kernel its tiles run: `vdpbf16ps` where the CPU has it, else the
/// reference twin.
pub(crate) struct PackedTaps {
    micro: Micro,
    data: Vec<u32>,
    /// Rows (output channels) as packed, a multiple of 8.
    rows: usize,
    /// Output channels the conv has.
    real_rows: usize,
    /// Channel pairs.
    pairs: usize,
}

impl PackedTaps {
    /// Packs `taps` blocks of `rows × cols`, element (t, r, c) read from `w(t, r, c)`.
    pub(crate) fn new(
        taps: usize,
        rows: usize,
        cols: usize,
        w: impl Fn(usize, usize, usize) -> f32 + Sync,
    ) -> PackedTaps {
        let (padded, pairs) = (rows.next_multiple_of(ROWS), cols.div_ceil(2));
        let mut data = vec![0u32; taps * pairs * padded];
        data.par_chunks_mut(pairs * ROWS)
            .enumerate()
            .for_each(|(gt, block)| {
                let (r0, t) = ((gt / taps) * ROWS, gt % taps);
                for cp in 0..pairs {
                    for r in r0..rows.min(r0 + ROWS) {
                        let hi = if 2 * cp + 1 < cols {
                            w(t, r, 2 * cp + 1)
                        } else {
                            0.0
                        };
                        block[cp * ROWS + r - r0] = pair(w(t, r, 2 * cp), hi);
                    }
                }
            });
        #[cfg(target_arch = "x86_64")]
        let micro: Micro = if crate::bf16::level_available(crate::bf16::Bf16Level::Avx512Bf16) {
            micro_avx512bf16
        } else {
            micro_reference
        };
        #[cfg(not(target_arch = "x86_64"))]
        let micro: Micro = micro_reference;
        PackedTaps {
            micro,
            data,
            rows: padded,
            real_rows: rows,
            pairs,
        }
    }
}

/// A padded slab of `c` channels (`chan` floats each) as channel-pair rows of `chan + COLS`
/// u32: the last tile's padded width may read up to `COLS` columns past the grid, which are
/// zeros.
#[derive(Default)]
pub(crate) struct PackedSlab {
    data: Vec<u32>,
    stride: usize,
    pairs: usize,
}

impl PackedSlab {
    /// Packs `src` (`c × chan`) into `self`, reusing its buffer.
    pub(crate) fn pack(&mut self, src: &[f32], c: usize, chan: usize) {
        let (pairs, stride) = (c.div_ceil(2), chan + COLS);
        self.data.clear();
        self.data.resize(pairs * stride, 0);
        self.data
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(|(cp, row)| {
                let lo = &src[2 * cp * chan..][..chan];
                if 2 * cp + 1 < c {
                    let hi = &src[(2 * cp + 1) * chan..][..chan];
                    for ((o, &a), &b) in row.iter_mut().zip(lo).zip(hi) {
                        *o = pair(a, b);
                    }
                } else {
                    for (o, &a) in row.iter_mut().zip(lo) {
                        *o = pair(a, 0.0);
                    }
                }
            });
        self.stride = stride;
        self.pairs = pairs;
    }
}

/// What a micro-kernel call reads besides its pointers.
struct Plan<'a> {
    /// The taps' column offsets.
    offs: &'a [usize],
    /// u32 per tap block of one row group's packed weights (pairs × 8).
    tap_len: usize,
    /// u32 per packed slab row.
    stride: usize,
    pairs: usize,
    /// Floats per row of the output tile.
    out_stride: usize,
}

/// `c[r][j] = Σ_t Σ_cp w[t][cp][r] · x[cp][offs[t] + j]` for 8 rows and 32 columns, `w` at the
/// row group's packed weights, `x` at the block's first column, `c` at its output (row stride
/// `out_stride`).
///
/// # Safety
/// Every read lies inside the packed buffers and every write inside the tile (the driver's
/// asserts); for [`micro_avx512bf16`], the CPU has AVX512F and AVX512-BF16.
type Micro = unsafe fn(plan: &Plan, w: *const u32, x: *const u32, c: *mut f32);

#[inline]
fn half(v: u32, high: bool) -> f32 {
    f32::from_bits(if high { v & 0xffff_0000 } else { v << 16 })
}

/// The micro-kernel's arithmetic in plain Rust: per channel pair, `c += lo·lo + hi·hi` in fp32
/// (each product of two bf16 values is exact in fp32).
///
/// # Safety
/// As [`Micro`], without the unit.
unsafe fn micro_reference(plan: &Plan, w: *const u32, x: *const u32, c: *mut f32) {
    for r in 0..ROWS {
        for j in 0..COLS {
            let mut acc = 0f32;
            for (t, &off) in plan.offs.iter().enumerate() {
                for cp in 0..plan.pairs {
                    let a = *w.add(t * plan.tap_len + cp * ROWS + r);
                    let b = *x.add(cp * plan.stride + off + j);
                    acc += half(a, false) * half(b, false) + half(a, true) * half(b, true);
                }
            }
            *c.add(r * plan.out_stride + j) = acc;
        }
    }
}

/// AVX512-BF16: 16 zmm accumulators (8 rows × 2 halves of 16 columns), per tap and channel
/// pair two loads of the slab row and eight broadcast weight pairs.
///
/// # Safety
/// As [`Micro`]; the CPU has AVX512F and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn micro_avx512bf16(plan: &Plan, w: *const u32, x: *const u32, c: *mut f32) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    for (t, &off) in plan.offs.iter().enumerate() {
        let (wt, xt) = (w.add(t * plan.tap_len), x.add(off));
        for cp in 0..plan.pairs {
            let xr = xt.add(cp * plan.stride);
            let lo: __m512bh = std::mem::transmute(_mm512_loadu_si512(xr.cast()));
            let hi: __m512bh = std::mem::transmute(_mm512_loadu_si512(xr.add(16).cast()));
            let wr = wt.add(cp * ROWS);
            for (r, acc) in acc.iter_mut().enumerate() {
                let p: __m512bh = std::mem::transmute(_mm512_set1_epi32(wr.add(r).read() as i32));
                acc[0] = _mm512_dpbf16_ps(acc[0], p, lo);
                acc[1] = _mm512_dpbf16_ps(acc[1], p, hi);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let row = c.add(r * plan.out_stride);
        _mm512_storeu_ps(row, acc[0]);
        _mm512_storeu_ps(row.add(16), acc[1]);
    }
}

/// One output tile: `Σ_t W_t · slab[:, q0 + offs[t] ..]` over grid columns `q0 .. q0 + n` for
/// the conv's output channels, as `(tile, row stride)`: the stride is `n` rounded up to 32.
pub(crate) fn tile(
    taps: &PackedTaps,
    offs: &[usize],
    slab: &PackedSlab,
    q0: usize,
    n: usize,
) -> (Vec<f32>, usize) {
    let width = n.next_multiple_of(COLS);
    assert_eq!(
        taps.pairs, slab.pairs,
        "weights and slab differ in channels"
    );
    assert_eq!(taps.data.len(), offs.len() * taps.pairs * taps.rows);
    let reach = offs.iter().max().map_or(0, |&o| q0 + o + width);
    assert!(reach <= slab.stride, "tile reads past the packed slab");
    let plan = Plan {
        offs,
        tap_len: taps.pairs * ROWS,
        stride: slab.stride,
        pairs: taps.pairs,
        out_stride: width,
    };
    let mut out = vec![0f32; taps.rows * width];
    // Column chunks outer, then row groups: a chunk's slab rows stay in L2 and a row group's
    // weights in L1 while the group walks the chunk.
    for jc in (0..width).step_by(CHUNK) {
        for r0 in (0..taps.rows).step_by(ROWS) {
            for jb in (jc..width.min(jc + CHUNK)).step_by(COLS) {
                // SAFETY: rows r0..r0+8 ≤ taps.rows and columns jb..jb+32 ≤ width lie in `out`;
                // the row group's weights are the taps·tap_len values from r0·taps·pairs
                // (asserted length); slab reads reach at most (pairs − 1)·stride + q0 +
                // max(offs) + width − 1 < pairs·stride (asserted); `PackedTaps::new` chose the
                // `vdpbf16ps` micro-kernel only where the CPU has the unit.
                unsafe {
                    (taps.micro)(
                        &plan,
                        taps.data.as_ptr().add(r0 * offs.len() * taps.pairs),
                        slab.data.as_ptr().add(q0 + jb),
                        out.as_mut_ptr().add(r0 * width + jb),
                    )
                };
            }
        }
    }
    out.truncate(taps.real_rows * width);
    (out, width)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Packing and the tile driver (row and column padding, odd channels, offsets) with
        /// the reference micro-kernel on any CPU, and with AVX512-BF16 where the CPU has it,
        /// against f64 sums of the bf16-rounded operands.
        #[test]
        fn tiles_match_f64_reference(
            rows in 1usize..20, c in 1usize..12, taps in 1usize..6, n in 1usize..70,
            q0 in 0usize..5, seed in 0u64..1000,
        ) {
            let offs: Vec<usize> = (0..taps).map(|t| (t * 7 + seed as usize) % 11).collect();
            let chan = q0 + 11 + n;
            let x = data(c * chan, seed);
            let w = data(taps * rows * c, seed + 1);
            let mut packed = PackedTaps::new(taps, rows, c, |t, r, ci| w[(t * rows + r) * c + ci]);
            let mut slab = PackedSlab::default();
            slab.pack(&x, c, chan);
            let r = |v: f32| round_to_bf16(v) as f64;
            let mut micros: Vec<(&str, Micro)> = vec![("reference", micro_reference)];
            #[cfg(target_arch = "x86_64")]
            if crate::bf16::level_available(crate::bf16::Bf16Level::Avx512Bf16) {
                micros.push(("avx512bf16", micro_avx512bf16));
            }
            for (name, micro) in micros {
                packed.micro = micro;
                let (out, stride) = tile(&packed, &offs, &slab, q0, n);
                prop_assert_eq!(out.len(), rows * stride);
                for row in 0..rows {
                    for j in 0..n {
                        let want: f64 = (0..taps)
                            .flat_map(|t| (0..c).map(move |ci| (t, ci)))
                            .map(|(t, ci)| {
                                r(w[(t * rows + row) * c + ci]) * r(x[ci * chan + q0 + offs[t] + j])
                            })
                            .sum();
                        let got = out[row * stride + j] as f64;
                        prop_assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{name} ({row}, {j}): {got} vs {want}");
                    }
                }
            }
        }
    }
}
