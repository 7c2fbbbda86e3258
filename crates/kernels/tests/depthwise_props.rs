//! Fast depthwise kernels (FFT and direct) against the f64 reference on random shapes.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use repux_kernels::depthwise::{
    backward, backward_saved, forward, forward_saving, DwAlgo, DwShape, KernelSpectra,
};
use repux_kernels::reference;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect()
}

// The error measure every kernel property test holds to its tolerance.
use repux_kernels::reference::rel_err as err;

fn check(s: DwShape, seed: u64) -> Result<(), TestCaseError> {
    let x = data(s.input_len(), seed);
    let w = data(s.weight_len(), seed + 1);
    let b = data(s.c, seed + 2);
    let dy = data(s.input_len(), seed + 3);
    let want = reference::depthwise_forward(&s, &x, &w, Some(&b));
    let (rdx, rdw, rdb) = reference::depthwise_backward(&s, &x, &w, &dy);
    // Tolerance: f32 sums of up to K³·S terms of |v| ≤ 1 against f64 sums: 2e-4 of the scale.
    for algo in [DwAlgo::Direct, DwAlgo::Fft] {
        let y = forward(&s, &x, &w, Some(&b), algo);
        prop_assert!(
            err(&y, &want) < 2e-4,
            "{algo:?} forward {s:?}: {}",
            err(&y, &want)
        );
        let (dx, dw, db) = backward(&s, &x, &w, &dy, algo);
        prop_assert!(
            err(&dx, &rdx) < 2e-4,
            "{algo:?} dx {s:?}: {}",
            err(&dx, &rdx)
        );
        prop_assert!(
            err(&dw, &rdw) < 2e-4,
            "{algo:?} dw {s:?}: {}",
            err(&dw, &rdw)
        );
        prop_assert!(err(&db, &rdb) < 1e-5, "{algo:?} db {s:?}");
        // The training path: the forward keeps its spectra (FFT only) and the backward reuses them.
        let (ys, saved) = forward_saving(&s, &x, &w, Some(&b), algo);
        prop_assert_eq!(&ys, &y);
        prop_assert_eq!(saved.is_some(), algo == DwAlgo::Fft);
        if let Some(saved) = saved {
            let (sdx, sdw, sdb) = backward_saved(&saved, &dy);
            prop_assert!(
                err(&sdx, &rdx) < 2e-4,
                "saved dx {s:?}: {}",
                err(&sdx, &rdx)
            );
            prop_assert!(
                err(&sdw, &rdw) < 2e-4,
                "saved dw {s:?}: {}",
                err(&sdw, &rdw)
            );
            prop_assert_eq!(sdb, db);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn fast_equals_reference(n in 1usize..3, c in 1usize..4, d in 1usize..10, h in 1usize..10, w in 1usize..10, k in prop::sample::select(vec![1usize, 3, 5, 7, 9]), seed in 0u64..1000) {
        check(DwShape { n, c, d, h, w, k }, seed)?;
    }
}

#[test]
fn kernel_21_on_a_small_volume_and_spectra_reuse() {
    let s = DwShape {
        n: 1,
        c: 2,
        d: 12,
        h: 9,
        w: 14,
        k: 21,
    };
    check(s, 7).unwrap();
    let x = data(s.input_len(), 1);
    let w = data(s.weight_len(), 2);
    let spectra = KernelSpectra::new(&s, &w, false);
    let a = spectra.forward(&x, None);
    let b = spectra.forward(&x, None);
    assert_eq!(a, b);
    assert!(err(&a, &reference::depthwise_forward(&s, &x, &w, None)) < 2e-4);
}
