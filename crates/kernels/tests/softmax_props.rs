//! The fused window softmax (bias + mask + softmax) against plain f64 loops on random window
//! sizes, head counts, batches and masks, at every ISA level this CPU has; its backward (from
//! the output only) against the chain rule from the input.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use repux_kernels::reference;
use repux_kernels::softmax::{self, AttnShape};

fn data(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.gen_range(-1.0f32..1.0) * scale).collect()
}

/// MONAI's mask values: 0 within a region, −100 across regions.
fn mask(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| if r.gen_bool(0.3) { -100.0 } else { 0.0 })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

// Tolerances. P ∈ [0, 1]: the polynomial exponential (relative error < 2e-7) and f32 sums of
// up to a few hundred terms give an absolute error below 1e-6. dS and dbias scale with |dP| ≤ 1
// (and dbias with the batch): 2e-6 of that scale.
const TOL_P: f32 = 1e-6;
const TOL_GRAD: f32 = 2e-6;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn window_softmax_matches_reference(groups in 1usize..3, windows in 1usize..4, heads in 1usize..4, n in 1usize..80, masked in any::<bool>(), scale in prop_oneof![Just(1.0f32), Just(30.0f32)], isa in 0u8..3, seed in 0u64..1000) {
        repux_kernels::limit_isa(isa);
        let s = AttnShape { batch: groups * windows, heads, n, windows };
        let scores = data(s.batch * heads * n * n, seed, scale);
        let bias = data(heads * n * n, seed + 1, 1.0);
        let m = masked.then(|| mask(windows * n * n, seed + 2));
        let dp = data(scores.len(), seed + 3, 1.0);

        let mut p = scores.clone();
        softmax::window_softmax(s, &mut p, &bias, m.as_deref());
        let want = reference::window_softmax(s, &scores, &bias, m.as_deref());
        let e = max_abs_diff(&p, &want);
        prop_assert!(e < TOL_P, "forward: {e}");

        let mut ds = dp.clone();
        let dbias = softmax::window_softmax_backward(s, &p, &mut ds);
        let (rds, rdbias) = reference::window_softmax_backward(s, &scores, &bias, m.as_deref(), &dp);
        let e = max_abs_diff(&ds, &rds);
        prop_assert!(e < TOL_GRAD, "dS: {e}");
        let e = max_abs_diff(&dbias, &rdbias) / s.batch as f32;
        prop_assert!(e < TOL_GRAD, "dbias: {e}");
    }
}

/// The exponential on its whole domain: relative error against f64 below 2e-7 where the result
/// is a normal float, 0 below that range, NaN kept.
#[test]
fn exponential_is_accurate_on_nonpositive_arguments() {
    let mut worst = 0f64;
    let mut x = 0f32;
    while x > -87.3 {
        // A softmax of one value, from S = [x, 0] rows: P₀ = e^x / (1 + e^x).
        let s = AttnShape {
            batch: 1,
            heads: 1,
            n: 2,
            windows: 1,
        };
        let mut p = vec![x, 0.0, 0.0, 0.0];
        softmax::window_softmax(s, &mut p, &[0.0; 4], None);
        let ex = (x as f64).exp();
        let want = ex / (1.0 + ex);
        worst = worst.max(((p[0] as f64 - want) / want).abs());
        x -= 0.0137;
    }
    assert!(worst < 4e-7, "relative error {worst}");
    // Under f32's normal range: exactly 0, the rest of the row sums to 1.
    let s = AttnShape {
        batch: 1,
        heads: 1,
        n: 2,
        windows: 1,
    };
    let mut p = vec![-100.0, 0.0, 0.0, 0.0];
    softmax::window_softmax(s, &mut p, &[0.0; 4], None);
    assert_eq!(&p[..2], &[0.0, 1.0]);
    let mut p = vec![f32::NAN, 0.0, 0.0, 0.0];
    softmax::window_softmax(s, &mut p, &[0.0; 4], None);
    assert!(
        p[0].is_nan() && p[1].is_nan(),
        "NaN in a row makes the row NaN, as in PyTorch"
    );
}
