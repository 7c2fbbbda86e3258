//! Window attention's softmax (Swin Transformer, MONAI's SwinUNETR):
//! `P = softmax(S + bias + mask)` over the last axis as one pass, and its backward from `P`
//! alone.
//!
//! Layout: S and P `[batch, heads, n, n]`, the relative position bias `[heads, n, n]` (shared by
//! every batch entry), the shifted-window mask `[windows, n, n]` (batch entry `b` is window
//! `b % windows`, as MONAI's `attn.view(B_ // nW, nW, …) + mask` pairs them).
//!
//! Why fused: as burn tensor ops this is two broadcast adds, a max, a subtraction, an exp, a sum
//! and a division, seven passes over an attention tensor of ~1 GB per block at 2 × 96³, and
//! burn's autodiff keeps two of them for the backward. Here the scores become the probabilities
//! in place, the backward keeps only `P`, and the bias gradient is summed in the same pass that
//! forms `dS = P ⊙ (dP − Σ dP ⊙ P)`.
//!
//! The exponential is a branch-free polynomial (Cephes' `expf`, relative error below 2e-7 on
//! the arguments a softmax feeds it, all ≤ 0) so the compiler vectorises the row loops; libm's
//! `expf` is one call per value. Sums use a fixed number of lanes in a fixed order, and there
//! are no fused multiply-adds, so results do not depend on the ISA the loops run on.

use rayon::prelude::*;

use crate::simd::{isa, isa_dispatch};

/// Sizes of a window attention's score tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    /// Windows × samples (`B_` in MONAI).
    pub batch: usize,
    pub heads: usize,
    /// Tokens per window.
    pub n: usize,
    /// Distinct masks (`nW`); `batch` is a multiple of it. Ignored without a mask.
    pub windows: usize,
}

impl AttnShape {
    fn check(&self, scores: usize, bias: usize, mask: Option<usize>) {
        let AttnShape {
            batch,
            heads,
            n,
            windows,
        } = *self;
        assert_eq!(
            scores,
            batch * heads * n * n,
            "window softmax: scores are not [{batch}, {heads}, {n}, {n}]"
        );
        assert_eq!(
            bias,
            heads * n * n,
            "window softmax: bias is not [{heads}, {n}, {n}]"
        );
        if let Some(m) = mask {
            assert!(
                windows > 0 && batch.is_multiple_of(windows),
                "window softmax: batch {batch} is not a multiple of {windows} windows"
            );
            assert_eq!(
                m,
                windows * n * n,
                "window softmax: mask is not [{windows}, {n}, {n}]"
            );
        }
    }
}

/// Lanes of the row sums (independent accumulators, so the sums vectorise; fixed, so the order
/// of additions is the same on every ISA).
const LANES: usize = 16;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5 · 2²³: adding it rounds a float of magnitude below 2²² to an integer, held in the low
/// mantissa bits.
const ROUND: f32 = 12_582_912.0;
/// ln 2 split in two (Cephes): `n · LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this e^x is under f32's smallest normal number; the result is 0.
const EXP_MIN: f32 = -87.336_55;

/// e^x for x ≤ 0 (a positive x gives 1: a softmax never passes one; NaN stays NaN): 2ⁿ · e^r with n = round(x / ln 2)
/// and |r| ≤ ln 2 / 2, e^r by Cephes' degree-7 polynomial.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    let under = x < EXP_MIN;
    let x = if x > 0.0 { 0.0 } else { x };
    let x = if under { 0.0 } else { x };
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI;
    let r = r - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // n ∈ [−126, 0]: 2ⁿ is a normal float built from its exponent bits.
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits(((k + 127) as u32) << 23);
    if under {
        0.0
    } else {
        e * scale
    }
}

/// The largest value of `v` (−∞ for none; NaN is passed over, the exponential then carries it).
#[inline(always)]
fn max_lanes(v: &[f32]) -> f32 {
    let mut mx = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            mx[l] = if c[l] > mx[l] { c[l] } else { mx[l] };
        }
    }
    let max = rest
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| if x > a { x } else { a });
    mx.iter().fold(max, |a, &x| if x > a { x } else { a })
}

/// `Σ a ⊙ b` (`b = None`: `Σ a`) in [`LANES`] partial sums, added in a fixed order.
#[inline(always)]
fn sum_lanes(a: &[f32], b: Option<&[f32]>) -> f32 {
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let ra = ca.remainder();
    let mut tail = 0f32;
    match b {
        None => {
            for c in ca {
                for l in 0..LANES {
                    acc[l] += c[l];
                }
            }
            for &x in ra {
                tail += x;
            }
        }
        Some(b) => {
            let cb = b.chunks_exact(LANES);
            let rb = cb.remainder();
            for (x, y) in ca.zip(cb) {
                for l in 0..LANES {
                    acc[l] += x[l] * y[l];
                }
            }
            for (&x, &y) in ra.iter().zip(rb) {
                tail += x * y;
            }
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One row in place: `s ← softmax(s + b + m)` (`m` empty: no mask). The additions run in
/// MONAI's order, `(s + b) + m`.
#[inline(always)]
fn row_forward_impl(s: &mut [f32], b: &[f32], m: &[f32]) {
    if m.is_empty() {
        for (v, &bb) in s.iter_mut().zip(b) {
            *v += bb;
        }
    } else {
        for ((v, &bb), &mm) in s.iter_mut().zip(b).zip(m) {
            *v = (*v + bb) + mm;
        }
    }
    let max = max_lanes(s);
    for v in s.iter_mut() {
        *v = exp_nonpositive(*v - max);
    }
    let inv = 1.0 / sum_lanes(s, None);
    for v in s.iter_mut() {
        *v *= inv;
    }
}

/// One row's backward in place: `g ← p ⊙ (g − Σ g ⊙ p)`, and `acc += g` (the bias gradient).
#[inline(always)]
fn row_backward_impl(p: &[f32], g: &mut [f32], acc: &mut [f32]) {
    let dot = sum_lanes(p, Some(g));
    for ((gg, &pp), a) in g.iter_mut().zip(p).zip(acc.iter_mut()) {
        *gg = pp * (*gg - dot);
        *a += *gg;
    }
}

isa_dispatch!(row_forward => row_forward_impl(s: &mut [f32], b: &[f32], m: &[f32]));
isa_dispatch!(row_backward => row_backward_impl(p: &[f32], g: &mut [f32], acc: &mut [f32]));

/// `scores ← softmax(scores + bias + mask)` over the last axis, in place (see the module docs
/// for the layouts).
pub fn window_softmax(s: AttnShape, scores: &mut [f32], bias: &[f32], mask: Option<&[f32]>) {
    s.check(scores.len(), bias.len(), mask.map(<[f32]>::len));
    let isa = isa();
    let (n, heads) = (s.n, s.heads);
    if n == 0 {
        return;
    }
    scores
        .par_chunks_mut(n * n)
        .enumerate()
        .for_each(|(blk, block)| {
            let head = blk % heads;
            let bias = &bias[head * n * n..(head + 1) * n * n];
            let mask = mask.map(|m| {
                let w = (blk / heads) % s.windows;
                &m[w * n * n..(w + 1) * n * n]
            });
            for (i, row) in block.chunks_exact_mut(n).enumerate() {
                let m = mask.map_or(&[][..], |m| &m[i * n..(i + 1) * n]);
                row_forward(isa, row, &bias[i * n..(i + 1) * n], m);
            }
        });
}

/// The gradient buffer the backward's tasks write through: each task owns a distinct set of
/// rows.
#[derive(Clone, Copy)]
struct RowsPtr(*mut f32);
// SAFETY: shared between rayon tasks that write disjoint rows (see `window_softmax_backward`).
unsafe impl Send for RowsPtr {}
unsafe impl Sync for RowsPtr {}

impl RowsPtr {
    /// The `n` values from `at`.
    ///
    /// # Safety
    /// `at + n` lies inside the buffer, and no other live slice overlaps these values.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, at: usize, n: usize) -> &mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), n) }
    }
}

/// The backward of [`window_softmax`] from its output `p`: `grad` (dP on entry) becomes
/// `dS = P ⊙ (dP − Σ_j dP ⊙ P)`, the gradient of the scores (and of the mask, summed over the
/// batch entries sharing it — the networks' mask is a constant and needs none); returns the
/// bias gradient `Σ_batch dS`, `[heads, n, n]`, summed over the batch in order.
pub fn window_softmax_backward(s: AttnShape, p: &[f32], grad: &mut [f32]) -> Vec<f32> {
    s.check(p.len(), s.heads * s.n * s.n, None);
    assert_eq!(
        p.len(),
        grad.len(),
        "window softmax backward: dP is not P's shape"
    );
    let isa = isa();
    let (n, heads, batch) = (s.n, s.heads, s.batch);
    let mut dbias = vec![0f32; heads * n * n];
    if n == 0 {
        return dbias;
    }
    let rows = RowsPtr(grad.as_mut_ptr());
    let per_batch = heads * n * n;
    // One task per bias row (head, query): it visits that row of every batch entry, so the
    // sum over the batch runs in a fixed order with no partial buffers.
    dbias.par_chunks_mut(n).enumerate().for_each(|(r, acc)| {
        for b in 0..batch {
            let at = b * per_batch + r * n;
            // SAFETY: rows `b · heads · n + r` for this task's `r` alone, inside `grad`
            // (`check` and the length assertion above); no other task touches them.
            let g = unsafe { rows.row(at, n) };
            row_backward(isa, &p[at..at + n], g, acc);
        }
    });
    dbias
}
