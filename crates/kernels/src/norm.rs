//! Fused element-wise passes of the UNETR decoder blocks: InstanceNorm (no affine, instance
//! statistics) followed by LeakyReLU, and `LeakyReLU(a + b)`, forward and backward.
//!
//! Layout: `rows × sp`, one row per (sample, channel). A slope of 1 is the identity (plain
//! InstanceNorm). The backward passes need only the *output*: with a positive slope LeakyReLU
//! is invertible (`x̂ = y` where `y > 0`, else `y / slope`), so a training step keeps one tensor
//! per norm instead of its input and output, and the conv output before the norm is freed as
//! soon as the norm has run.
//!
//! Statistics accumulate in f64; every pass is parallel over rows. Outputs are written once
//! into fresh, uninitialised memory ([`written`]): zeroing them first cost a memset of every
//! output (memset, mostly of these outputs and Winograd's, took 5 % of a paper-size forward's
//! samples under `perf`).

use rayon::prelude::*;
use std::mem::MaybeUninit;

use crate::simd::{isa, isa_dispatch};

fn check_slope(slope: f32) {
    assert!(
        slope > 0.0 && slope.is_finite(),
        "leaky relu: the slope must be positive (got {slope})"
    );
}

/// Lanes of the f64 partial sums (independent accumulators, so the sums vectorise; the order of
/// additions is fixed, so results do not depend on the ISA).
const LANES: usize = 8;

/// `acc = [Σ a, Σ a·b]` over the row in f64 (`b = a` for a sum of squares).
#[inline(always)]
fn sums_impl(a: &[f32], b: &[f32], acc: &mut [f64; 2]) {
    let (mut s, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            s[l] += x[l] as f64;
            s2[l] += x[l] as f64 * y[l] as f64;
        }
    }
    let (mut t, mut t2) = (s.iter().sum::<f64>(), s2.iter().sum::<f64>());
    for (&x, &y) in ra.iter().zip(rb) {
        t += x as f64;
        t2 += x as f64 * y as f64;
    }
    *acc = [t, t2];
}

/// `out = LeakyReLU((x − m) · r, slope)`.
#[inline(always)]
fn norm_act_impl(x: &[f32], out: &mut [MaybeUninit<f32>], m: f32, r: f32, slope: f32) {
    for (o, &v) in out.iter_mut().zip(x) {
        let h = (v - m) * r;
        o.write(if h > 0.0 { h } else { h * slope });
    }
}

/// From the output `y` and `dy`: `h = x̂` and `g = dy · LeakyReLU'(x̂)`.
#[inline(always)]
fn invert_impl(y: &[f32], dy: &[f32], h: &mut [f32], g: &mut [f32], slope: f32) {
    let inv = 1.0 / slope;
    for (((h, g), &v), &d) in h.iter_mut().zip(g.iter_mut()).zip(y).zip(dy) {
        let pos = v > 0.0;
        *h = if pos { v } else { v * inv };
        *g = if pos { d } else { d * slope };
    }
}

/// `out = r · (g − mg − h · mgx)`.
#[inline(always)]
fn norm_grad_impl(h: &[f32], g: &[f32], out: &mut [MaybeUninit<f32>], r: f32, mg: f32, mgx: f32) {
    for ((o, &h), &g) in out.iter_mut().zip(h).zip(g) {
        o.write(r * (g - mg - h * mgx));
    }
}

/// `out = LeakyReLU(a + b, slope)`.
#[inline(always)]
fn add_act_impl(a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>], slope: f32) {
    for ((o, &u), &v) in out.iter_mut().zip(a).zip(b) {
        let s = u + v;
        o.write(if s > 0.0 { s } else { s * slope });
    }
}

/// `out = dy · LeakyReLU'` read from the output `y`.
#[inline(always)]
fn act_grad_impl(y: &[f32], dy: &[f32], out: &mut [MaybeUninit<f32>], slope: f32) {
    for ((o, &v), &d) in out.iter_mut().zip(y).zip(dy) {
        o.write(if v > 0.0 { d } else { d * slope });
    }
}

isa_dispatch!(sums => sums_impl(a: &[f32], b: &[f32], acc: &mut [f64; 2]));
isa_dispatch!(norm_act => norm_act_impl(x: &[f32], out: &mut [MaybeUninit<f32>], m: f32, r: f32, slope: f32));
isa_dispatch!(invert => invert_impl(y: &[f32], dy: &[f32], h: &mut [f32], g: &mut [f32], slope: f32));
isa_dispatch!(norm_grad => norm_grad_impl(h: &[f32], g: &[f32], out: &mut [MaybeUninit<f32>], r: f32, mg: f32, mgx: f32));
isa_dispatch!(add_act_chunk => add_act_impl(a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>], slope: f32));
isa_dispatch!(act_grad => act_grad_impl(y: &[f32], dy: &[f32], out: &mut [MaybeUninit<f32>], slope: f32));

/// Element-wise chunk for the row-free passes.
const CHUNK: usize = 1 << 16;

/// `y = LeakyReLU((x − μ) / √(σ² + eps), slope)` per row of `sp` values, with μ and the biased
/// variance σ² of the row; returns `y` and each row's `1 / √(σ² + eps)`.
pub fn instance_norm_act(x: &[f32], sp: usize, eps: f32, slope: f32) -> (Vec<f32>, Vec<f32>) {
    check_slope(slope);
    assert!(
        sp > 0 && x.len().is_multiple_of(sp),
        "instance norm: {} values are not rows of {sp}",
        x.len()
    );
    let isa = isa();
    let mut rstd = Vec::new();
    // SAFETY: the rows of `y` pair one to one with those of `x`, and `norm_act` writes each
    // whole (it asserts the lengths match).
    let y = unsafe {
        crate::conv_core::written(x.len(), |y| {
            rstd = y
                .par_chunks_mut(sp)
                .zip(x.par_chunks(sp))
                .map(|(out, row)| {
                    let mut acc = [0f64; 2];
                    sums(isa, row, row, &mut acc);
                    let mean = acc[0] / sp as f64;
                    let var = (acc[1] / sp as f64 - mean * mean).max(0.0);
                    let r = (1.0 / (var + eps as f64).sqrt()) as f32;
                    norm_act(isa, row, out, mean as f32, r, slope);
                    r
                })
                .collect();
        })
    };
    (y, rstd)
}

/// dx of [`instance_norm_act`] from its output `y`, the rows' `rstd` and upstream `dy`:
/// `g = dy · LeakyReLU'(x̂)`, `dx = rstd · (g − mean(g) − x̂ · mean(g · x̂))`.
pub fn instance_norm_act_backward(
    y: &[f32],
    dy: &[f32],
    rstd: &[f32],
    sp: usize,
    slope: f32,
) -> Vec<f32> {
    check_slope(slope);
    assert!(
        y.len() == dy.len() && y.len() == rstd.len() * sp,
        "instance norm backward: lengths do not match"
    );
    let isa = isa();
    // SAFETY: the rows of `dx` pair one to one with those of `y` (`rstd.len() · sp` of them,
    // asserted), and `norm_grad` writes each whole.
    unsafe {
        crate::conv_core::written(y.len(), |dx| {
            dx.par_chunks_mut(sp)
                .zip(y.par_chunks(sp).zip(dy.par_chunks(sp)))
                .zip(rstd.par_iter())
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |(h, g), ((out, (yr, dyr)), &r)| {
                        h.resize(sp, 0f32);
                        g.resize(sp, 0f32);
                        invert(isa, yr, dyr, h, g, slope);
                        let mut acc = [0f64; 2];
                        sums(isa, g, h, &mut acc);
                        norm_grad(
                            isa,
                            h,
                            g,
                            out,
                            r,
                            (acc[0] / sp as f64) as f32,
                            (acc[1] / sp as f64) as f32,
                        );
                    },
                );
        })
    }
}

/// `f(a, b, out)` over equal parallel chunks of two equal-length inputs, into a new vector.
fn zip_chunks(
    a: &[f32],
    b: &[f32],
    what: &str,
    f: impl Fn(&[f32], &[f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "{what}: lengths do not match");
    // SAFETY: the chunks of `out` pair one to one with those of `a` (of the same length), and
    // every `f` given here is a kernel loop that writes all of its chunk.
    unsafe {
        crate::conv_core::written(a.len(), |out| {
            out.par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                .for_each(|(o, (a, b))| f(a, b, o))
        })
    }
}

/// `y = LeakyReLU(a + b, slope)`.
pub fn add_act(a: &[f32], b: &[f32], slope: f32) -> Vec<f32> {
    check_slope(slope);
    let isa = isa();
    zip_chunks(a, b, "add", |a, b, o| add_act_chunk(isa, a, b, o, slope))
}

/// The gradient reaching both inputs of [`add_act`] from its output `y` and upstream `dy`.
pub fn act_backward(y: &[f32], dy: &[f32], slope: f32) -> Vec<f32> {
    check_slope(slope);
    let isa = isa();
    zip_chunks(y, dy, "leaky relu backward", |y, d, o| {
        act_grad(isa, y, d, o, slope)
    })
}
