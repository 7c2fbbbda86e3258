//! The fused InstanceNorm + LeakyReLU and add + LeakyReLU passes against plain f64 loops on
//! random row counts, row lengths, slopes and data (the backward from the output only, against
//! the chain rule from the input).

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use repux_kernels::{norm, reference};

fn data(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| r.gen_range(-1.0f32..1.0) * scale + 0.3 * scale)
        .collect()
}

// The error measure every kernel property test holds to its tolerance.
use repux_kernels::reference::rel_err as err;

// Tolerance: f32 element-wise arithmetic on normalised values (|x̂| ≲ √sp) against f64, and
// the output → x̂ inversion (division by the slope, one rounding): 1e-4 of the scale.
const TOL: f32 = 1e-4;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn instance_norm_act_matches_reference(rows in 1usize..6, sp in 1usize..200, slope in prop_oneof![Just(0.01f32), Just(1.0f32), 0.05f32..0.5], scale in prop_oneof![Just(1.0f32), Just(100.0f32), Just(1e-3f32)], isa in 0u8..3, seed in 0u64..1000) {
        // The passes' baseline, AVX2 and AVX-512 copies (as far as this CPU has them).
        repux_kernels::limit_isa(isa);
        // Outputs are written into unzeroed memory: NaN there first shows a float left out.
        repux_kernels::poison_fresh_outputs(true);
        let x = data(rows * sp, seed, scale);
        let dy = data(rows * sp, seed + 1, 1.0);
        let eps = 1e-5;
        let (y, rstd) = norm::instance_norm_act(&x, sp, eps, slope);
        let want = reference::instance_norm_act(&x, sp, eps, slope);
        prop_assert!(err(&y, &want) < TOL, "forward: {}", err(&y, &want));
        let dx = norm::instance_norm_act_backward(&y, &dy, &rstd, sp, slope);
        let rdx = reference::instance_norm_act_backward(&x, &dy, sp, eps, slope);
        // dx scales with rstd (up to 1/√eps for near-constant rows): relative to its own scale.
        let s = rdx.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
        let e = dx.iter().zip(&rdx).fold(0f32, |m, (a, b)| m.max(if a.is_nan() { f32::INFINITY } else { (a - b).abs() })) / s.max(1.0);
        prop_assert!(e < TOL, "backward: {e}");
    }

    #[test]
    fn add_act_matches_reference(n in 1usize..300_000, slope in prop_oneof![Just(0.01f32), 0.05f32..1.0], isa in 0u8..3, seed in 0u64..1000) {
        repux_kernels::limit_isa(isa);
        repux_kernels::poison_fresh_outputs(true);
        let a = data(n, seed, 1.0);
        let b = data(n, seed + 1, 1.0);
        let dy = data(n, seed + 2, 1.0);
        let y = norm::add_act(&a, &b, slope);
        let g = norm::act_backward(&y, &dy, slope);
        for i in 0..n {
            let s = a[i] as f64 + b[i] as f64;
            let want = if s > 0.0 { s } else { s * slope as f64 };
            prop_assert!((y[i] as f64 - want).abs() < 1e-6, "forward at {i}");
            let wg = if s > 0.0 { dy[i] } else { dy[i] * slope };
            prop_assert!((g[i] - wg).abs() < 1e-6, "backward at {i}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// GELU on data spread over ±`scale` (the tails included), element by element against libm's
    /// erfc in f64: forward within 1e-6 relative to each value (the erfc fit's error is
    /// relative, so the far negative tail, y ≈ 0⁻, keeps its digits) down to 1e-37, below
    /// which values may flush to 0; backward within 1e-6 of the largest gradient (it crosses
    /// zero at x ≈ −0.75, where no relative bound holds).
    #[test]
    fn gelu_matches_reference(n in 1usize..100_000, scale in prop_oneof![Just(1.0f32), Just(6.0f32), Just(14.0f32), Just(1e-20f32)], isa in 0u8..3, seed in 0u64..1000) {
        use repux_kernels::gelu;
        repux_kernels::limit_isa(isa);
        repux_kernels::poison_fresh_outputs(true);
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x: Vec<f32> = (0..n).map(|_| r.gen_range(-1.0f32..1.0) * scale).collect();
        let dy = data(n, seed + 1, 1.0);
        let y = gelu::gelu(&x);
        let want = reference::gelu(&x);
        for (i, (&g, &w)) in y.iter().zip(&want).enumerate() {
            prop_assert!((g - w).abs() <= 1e-6 * w.abs() + 1e-37, "gelu({}) = {g}, want {w}", x[i]);
        }
        let dx = gelu::gelu_backward(&x, &dy);
        let rdx = reference::gelu_backward(&x, &dy);
        prop_assert!(err(&dx, &rdx) < 1e-6, "backward: {}", err(&dx, &rdx));
    }
}

/// GELU at the edges of f32: zeros, subnormals, the largest values, infinities and NaN.
#[test]
fn gelu_at_the_edges() {
    use repux_kernels::gelu;
    let x = [
        0.0f32,
        -0.0,
        1e-40,
        -1e-40,
        f32::MAX,
        -f32::MAX,
        88.0,
        -88.0,
        1e4,
        -1e4,
    ];
    let y = gelu::gelu(&x);
    assert_eq!(&y[..4], &[0.0, -0.0, 1e-40 * 0.5, -1e-40 * 0.5]);
    assert_eq!(y[4], f32::MAX);
    assert_eq!(y[5], -0.0);
    assert_eq!(&y[6..], &reference::gelu(&x[6..])[..]);
    assert_eq!(gelu::gelu(&[f32::INFINITY])[0], f32::INFINITY);
    assert!(gelu::gelu(&[f32::NAN])[0].is_nan());
}
