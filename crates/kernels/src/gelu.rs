//! GELU, exact (PyTorch's `approximate='none'`): `y = x · Φ(x)`, Φ the standard normal CDF,
//! forward and backward (`dy · (Φ(x) + x · φ(x))`), as parallel, vectorised passes.
//!
//! Why not burn's: its GELU maps libm's scalar `erff` over the tensor on one thread, and its
//! backward is another scalar pass; on the paper network's first-stage activation these are
//! 3.5–3.9× faster (docs/performance.md, "GELU as one parallel pass").
//!
//! How: `Φ(x) = erfc(−x/√2) / 2`, with erfc from the Chebyshev fit in Numerical Recipes
//! (§6.2, `erfcc`: `erfc(z) = t · exp(−z² + P(t))`, `t = 1 / (1 + z/2)`, fractional error
//! below 1.2e−7 for every z ≥ 0; `erfc(−z) = 2 − erfc(z)`). It is relative, not absolute,
//! so the far negative tail, where y is tiny, keeps its digits too — given the exponent −z²
//! exactly: x² is split into its rounded value and error ([`minus_half_square`]), and `exp`
//! ([`exp_sum`]: Cody–Waite range reduction, a degree-6 polynomial, branch-free, so the loops
//! vectorise) takes both parts.

use rayon::prelude::*;
use std::mem::MaybeUninit;

use crate::simd::{isa, isa_dispatch};

/// Element-wise chunk per parallel task.
const CHUNK: usize = 1 << 15;

/// `e^(a + b)` within a few ulp, for `a` taken as exact and `|b| ≲ 2`: 0 where `a + b < −87`
/// (subnormal results); not for `a + b > 88` (callers here stay below 2). `a` enters the Cody–Waite reduction unrounded, so an
/// exponent such as −x²/2, carried as a float plus a small correction, loses nothing when it
/// is large: rounding `a + b` first would cost up to 1e−6 of the result at a = −50.
#[inline(always)]
fn exp_sum(a: f32, b: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two: n · LN2_HI is exact for |n| < 2⁸, and a − n · LN2_HI too (Sterbenz).
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 · 2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = a + b;
    let under = x < -87.0;
    let n = (x.clamp(-87.0, 88.0) * LOG2E + ROUND) - ROUND;
    let r = ((a - n * LN2_HI) + b) - n * LN2_LO;
    // eʳ on |r| ≲ ln2/2 by its Taylor polynomial to r⁶ (remainder < 2e−8 relative).
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2ⁿ from its exponent bits (n ∈ [−126, 127] after the clamp).
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if under {
        0.0
    } else {
        p * scale
    }
}

/// `−x²/2` as `hi + lo`: `hi` the rounded value, `lo` its rounding error (one FMA).
#[inline(always)]
fn minus_half_square(x: f32) -> (f32, f32) {
    let hi = x * x;
    let lo = x.mul_add(x, -hi);
    (-0.5 * hi, -0.5 * lo)
}

/// Φ(x), the standard normal CDF: `erfc(|x|/√2) / 2` for x < 0, one minus it above, with
/// Numerical Recipes' `erfcc` (`erfc(z) = t · exp(−z² + P(t))`; its coefficients as printed).
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn cdf(x: f32) -> f32 {
    // Beyond ±20 the tail is below e⁻²⁰⁰, 0 here; clamping keeps x² finite (NaN stays NaN).
    let x = x.clamp(-20.0, 20.0);
    let t = 1.0 / (1.0 + 0.5 * std::f32::consts::FRAC_1_SQRT_2 * x.abs());
    let p = 0.170_872_77;
    let p = p * t - 0.822_152_23;
    let p = p * t + 1.488_515_9;
    let p = p * t - 1.135_203_98;
    let p = p * t + 0.278_868_07;
    let p = p * t - 0.186_288_06;
    let p = p * t + 0.096_784_18;
    let p = p * t + 0.374_091_96;
    let p = p * t + 1.000_023_68;
    let p = p * t - 1.265_512_23;
    let (hi, lo) = minus_half_square(x);
    let half_tail = 0.5 * t * exp_sum(hi, p + lo);
    if x < 0.0 {
        half_tail
    } else {
        1.0 - half_tail
    }
}

/// 1/√(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

#[inline(always)]
fn gelu_impl(x: &[f32], out: &mut [MaybeUninit<f32>]) {
    assert_eq!(x.len(), out.len());
    for (o, &v) in out.iter_mut().zip(x) {
        o.write(v * cdf(v));
    }
}

#[inline(always)]
fn gelu_grad_impl(x: &[f32], dy: &[f32], out: &mut [MaybeUninit<f32>]) {
    assert!(x.len() == out.len() && dy.len() == out.len());
    for ((o, &v), &d) in out.iter_mut().zip(x).zip(dy) {
        let (hi, lo) = minus_half_square(v.clamp(-20.0, 20.0));
        let pdf = INV_SQRT_2PI * exp_sum(hi, lo);
        o.write(d * (cdf(v) + v * pdf));
    }
}

isa_dispatch!(gelu_chunk => gelu_impl(x: &[f32], out: &mut [MaybeUninit<f32>]));
isa_dispatch!(gelu_grad_chunk => gelu_grad_impl(x: &[f32], dy: &[f32], out: &mut [MaybeUninit<f32>]));

/// `y = x · Φ(x)`, element-wise.
pub fn gelu(x: &[f32]) -> Vec<f32> {
    let isa = isa();
    // SAFETY: the chunks of `out` pair one to one with those of `x` (same length), and
    // `gelu_impl` writes each whole.
    unsafe {
        crate::conv_core::written(x.len(), |out| {
            out.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(o, x)| gelu_chunk(isa, x, o))
        })
    }
}

/// dx of [`gelu`] from its input `x` and upstream `dy`: `dy · (Φ(x) + x · φ(x))`.
pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), dy.len(), "gelu backward: lengths do not match");
    let isa = isa();
    // SAFETY: as in `gelu`, with `dy` chunked like `x`.
    unsafe {
        crate::conv_core::written(x.len(), |out| {
            out.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
                .for_each(|(o, (x, d))| gelu_grad_chunk(isa, x, d, o))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// exp_sum against f64 exp over its whole range, in relative terms, with the exponent
    /// whole and split.
    #[test]
    fn exp_is_within_a_few_ulp() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp_sum(x, 0.0) as f64;
            worst = worst.max(((got - want) / want).abs());
            let (a, b) = (x.round(), x - x.round());
            let want = (a as f64 + b as f64).exp();
            let got = exp_sum(a, b) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.000_37;
        }
        assert!(worst < 3e-7, "exp: worst relative error {worst:e}");
    }
}
