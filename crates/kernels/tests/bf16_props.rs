//! `Precision::Bf16` on every dense-conv GEMM path against the f64 reference on bf16-rounded
//! operands (im2col, shifted views, transposed convs: exactly what the matrix units compute, up
//! to the order of fp32 sums) and against fp32 (Winograd, whose GEMM operands are transformed
//! values). Each test names the bf16 levels this CPU could not run.
//!
//! The precision is process-wide, so every test here holds `LOCK` while it runs.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use repux_kernels::bf16::{self, round_to_bf16, Bf16Level, Precision};
use repux_kernels::dense::{self, ConvShape, UpShape};
use repux_kernels::reference;
use std::sync::Mutex;

static LOCK: Mutex<()> = Mutex::new(());

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect()
}

fn rounded(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| round_to_bf16(x)).collect()
}

// The error measure every kernel property test holds to its tolerance.
use repux_kernels::reference::rel_err as err;

/// fp32 sums of exact bf16 products against f64 sums of the same products (as `dense_props`).
const TOL: f32 = 1e-4;

/// Says which levels of the bf16 GEMM this run exercised and which it could not, and why.
fn levels_not_run() {
    let units = bf16::cpu_bf16_units();
    let run: Vec<_> = bf16::levels_available().iter().map(|l| l.name()).collect();
    let why = |level: Bf16Level| match level {
        Bf16Level::Amx if units.amx => "the CPU has AMX-BF16; the OS refused the tile data",
        Bf16Level::Amx => "this CPU has no AMX-BF16",
        _ => "this CPU has no AVX512-BF16",
    };
    let not_run: Vec<_> = Bf16Level::ALL
        .into_iter()
        .filter(|&l| !bf16::level_available(l))
        .map(|l| format!("{} ({})", l.name(), why(l)))
        .collect();
    eprintln!(
        "bf16 GEMM levels run: {}; not run: {}",
        run.join(", "),
        if not_run.is_empty() {
            "none".into()
        } else {
            not_run.join(", ")
        }
    );
}

/// Runs `f` once at every bf16 level this CPU has (the cap lifted again afterwards).
fn at_each_level(
    mut f: impl FnMut(Bf16Level) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    for level in bf16::levels_available() {
        bf16::at_level(level, || {
            assert_eq!(bf16::bf16_level(), level);
            f(level)
        })?;
    }
    Ok(())
}

fn check_conv(s: ConvShape, seed: u64) -> Result<(), TestCaseError> {
    at_each_level(|level| check_conv_at(s, seed, level))
}

fn check_conv_at(s: ConvShape, seed: u64, level: Bf16Level) -> Result<(), TestCaseError> {
    let x = data(s.input_len(), seed);
    let w = data(s.weight_len(), seed + 1);
    let b = data(s.cout, seed + 2);
    let dy = data(s.output_len(), seed + 3);
    let (rx, rw, rdy) = (rounded(&x), rounded(&w), rounded(&dy));
    bf16::set_precision(Precision::Bf16);
    let y = dense::conv3d_forward(&s, &x, &w, Some(&b));
    let (dx, dw, db) = dense::conv3d_backward(&s, &x, &w, &dy, true);
    bf16::set_precision(Precision::Fp32);
    let want = reference::conv3d_forward(&s, &rx, &rw, Some(&b));
    let (rdx, rdw, _) = reference::conv3d_backward(&s, &rx, &rw, &rdy);
    let (_, _, rdb) = reference::conv3d_backward(&s, &x, &w, &dy);
    prop_assert!(
        err(&y, &want) < TOL,
        "{level:?} forward {s:?}: {}",
        err(&y, &want)
    );
    prop_assert!(
        err(&dx, &rdx) < TOL,
        "{level:?} dx {s:?}: {}",
        err(&dx, &rdx)
    );
    prop_assert!(
        err(&dw, &rdw) < TOL,
        "{level:?} dw {s:?}: {}",
        err(&dw, &rdw)
    );
    // The bias gradient is a plain fp32 sum, not a GEMM.
    prop_assert!(err(&db, &rdb) < 1e-5, "db {s:?}");
    Ok(())
}

#[test]
fn rounding_matches_half() {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-40,
        f32::from_bits(0x3f80_8000), // a tie, rounds down to even
        f32::from_bits(0x3f81_8000), // a tie, rounds up to even
        f32::from_bits(0x7f7f_ffff),
    ];
    let randoms = (0..200_000).map(|_| f32::from_bits(r.gen::<u32>()));
    for x in specials.into_iter().chain(randoms) {
        let ours = round_to_bf16(x);
        let theirs = half::bf16::from_f32(x).to_f32();
        if x.is_nan() {
            assert!(ours.is_nan() && theirs.is_nan(), "{x:?}");
        } else {
            assert_eq!(
                ours.to_bits(),
                theirs.to_bits(),
                "{x:e} ({:#x})",
                x.to_bits()
            );
        }
    }
}

/// The switch takes effect: on a shape whose fp32 result is far from the bf16 computation,
/// the bf16 run lands on the bf16 reference.
#[test]
fn bf16_switch_changes_the_gemm_operands() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    levels_not_run();
    let s = ConvShape {
        n: 1,
        cin: 16,
        cout: 8,
        d: 6,
        h: 5,
        w: 7,
        k: 3,
        stride: 2,
        pad: 1,
        groups: 1,
    };
    let (x, w) = (data(s.input_len(), 1), data(s.weight_len(), 2));
    let want = reference::conv3d_forward(&s, &rounded(&x), &rounded(&w), None);
    let fp32 = dense::conv3d_forward(&s, &x, &w, None);
    bf16::set_precision(Precision::Bf16);
    let y = dense::conv3d_forward(&s, &x, &w, None);
    bf16::set_precision(Precision::Fp32);
    assert!(err(&fp32, &want) > 10.0 * TOL, "{}", err(&fp32, &want));
    assert!(err(&y, &want) < TOL, "{}", err(&y, &want));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// im2col GEMMs: the network's conv kinds, groups, odd sizes.
    #[test]
    fn im2col_convs_match_bf16_reference(
        n in 1usize..3, cg in 1usize..4, og in 1usize..4, groups in 1usize..3,
        d in 1usize..8, h in 1usize..8, w in 1usize..8,
        kind in 0usize..5, seed in 0u64..1000,
    ) {
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (k, stride, pad) = [(3, 1, 1), (1, 1, 0), (2, 2, 0), (7, 2, 3), (3, 2, 0)][kind];
        let min = k - 2 * pad;
        let s = ConvShape { n, cin: cg * groups, cout: og * groups, d: d.max(min), h: h.max(min), w: w.max(min), k, stride, pad, groups };
        dense::use_winograd(false);
        let r = check_conv(s, seed);
        dense::use_winograd(true);
        r?;
    }

    /// Shifted-view GEMMs (stride 1, padding k/2), also with tiny budgets (many slabs, tiles).
    #[test]
    fn shifted_convs_match_bf16_reference(
        n in 1usize..3, cin in 1usize..10, cout in 1usize..10,
        d in 1usize..9, h in 1usize..9, w in 1usize..9,
        k in prop_oneof![Just(3usize), Just(5usize)], small in proptest::bool::ANY, seed in 0u64..1000,
    ) {
        use repux_kernels::shifted;
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let s = ConvShape { n, cin, cout, d, h, w, k, stride: 1, pad: k / 2, groups: 1 };
        if small {
            shifted::set_budgets(1, 1);
        }
        let x = data(s.input_len(), seed);
        let wt = data(s.weight_len(), seed + 1);
        let dy = data(s.output_len(), seed + 3);
        let (rx, rw, rdy) = (rounded(&x), rounded(&wt), rounded(&dy));
        let want = reference::conv3d_forward(&s, &rx, &rw, None);
        let (rdx, rdw, _) = reference::conv3d_backward(&s, &rx, &rw, &rdy);
        let r = at_each_level(|level| {
            bf16::set_precision(Precision::Bf16);
            let y = shifted::forward(&s, &x, &wt, None);
            let dx = shifted::backward_dx(&s, &wt, &dy);
            let dw = shifted::backward_dw(&s, &x, &dy);
            bf16::set_precision(Precision::Fp32);
            prop_assert!(err(&y, &want) < TOL, "{level:?} forward {s:?}: {}", err(&y, &want));
            prop_assert!(err(&dx, &rdx) < TOL, "{level:?} dx {s:?}: {}", err(&dx, &rdx));
            prop_assert!(err(&dw, &rdw) < TOL, "{level:?} dw {s:?}: {}", err(&dw, &rdw));
            Ok(())
        });
        shifted::set_budgets(16 << 20, 1 << 18);
        r?;
    }

    #[test]
    fn linear_matches_bf16_reference(rows in 1usize..70, cin in 1usize..20, cout in 1usize..20, seed in 0u64..1000) {
        use repux_kernels::linear;
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let x = data(rows * cin, seed);
        let wt = data(cout * cin, seed + 1);
        let b = data(cout, seed + 2);
        let dy = data(rows * cout, seed + 3);
        let (rx, rw, rdy) = (rounded(&x), rounded(&wt), rounded(&dy));
        let want = reference::linear_forward(rows, cin, cout, &rx, &rw, Some(&b));
        let (rdx, rdw, _) = reference::linear_backward(rows, cin, cout, &rx, &rw, &rdy);
        at_each_level(|level| {
            bf16::set_precision(Precision::Bf16);
            let y = linear::linear_forward(rows, cin, cout, &x, &wt, Some(&b));
            let (dx, dw, _) = linear::linear_backward(rows, cin, cout, &x, &wt, &dy, true);
            bf16::set_precision(Precision::Fp32);
            prop_assert!(err(&y, &want) < TOL, "{level:?} forward: {}", err(&y, &want));
            prop_assert!(err(&dx, &rdx) < TOL, "{level:?} dx: {}", err(&dx, &rdx));
            prop_assert!(err(&dw, &rdw) < TOL, "{level:?} dw: {}", err(&dw, &rdw));
            Ok(())
        })?;
    }

    #[test]
    fn bmm_matches_bf16_reference(batch in 1usize..5, m in 1usize..40, k in 1usize..40, n in 1usize..40, seed in 0u64..1000) {
        use repux_kernels::bmm::{self, BmmShape};
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let s = BmmShape { batch, m, k, n };
        let a = data(batch * m * k, seed);
        let b = data(batch * k * n, seed + 1);
        let dc = data(batch * m * n, seed + 2);
        let (ra, rb, rdc) = (rounded(&a), rounded(&b), rounded(&dc));
        let want = reference::bmm_forward(s, &ra, &rb);
        let (rda, rdb) = reference::bmm_backward(s, &ra, &rb, &rdc);
        at_each_level(|level| {
            bf16::set_precision(Precision::Bf16);
            let c = bmm::bmm_forward(s, &a, &b);
            let (da, db) = bmm::bmm_backward(s, &a, &b, &dc, true);
            bf16::set_precision(Precision::Fp32);
            prop_assert!(err(&c, &want) < TOL, "{level:?} forward {s:?}: {}", err(&c, &want));
            prop_assert!(err(&da, &rda) < TOL, "{level:?} da {s:?}: {}", err(&da, &rda));
            prop_assert!(err(&db, &rdb) < TOL, "{level:?} db {s:?}: {}", err(&db, &rdb));
            Ok(())
        })?;
    }

    #[test]
    fn transposed_convs_match_bf16_reference(n in 1usize..3, cin in 1usize..6, cout in 1usize..6, d in 1usize..6, h in 1usize..6, w in 1usize..6, seed in 0u64..1000) {
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let s = UpShape { n, cin, cout, d, h, w };
        let x = data(s.input_len(), seed);
        let wt = data(s.weight_len(), seed + 1);
        let dy = data(s.output_len(), seed + 2);
        let (rx, rw, rdy) = (rounded(&x), rounded(&wt), rounded(&dy));
        let want = reference::conv_transpose_k2s2_forward(&s, &rx, &rw);
        let (rdx, rdw) = reference::conv_transpose_k2s2_backward(&s, &rx, &rw, &rdy);
        at_each_level(|level| {
            bf16::set_precision(Precision::Bf16);
            let y = dense::conv_transpose_k2s2_forward(&s, &x, &wt);
            let (dx, dw) = dense::conv_transpose_k2s2_backward(&s, &x, &wt, &dy);
            bf16::set_precision(Precision::Fp32);
            prop_assert!(err(&y, &want) < TOL, "{level:?} forward {s:?}: {}", err(&y, &want));
            prop_assert!(err(&dx, &rdx) < TOL, "{level:?} dx {s:?}: {}", err(&dx, &rdx));
            prop_assert!(err(&dw, &rdw) < TOL, "{level:?} dw {s:?}: {}", err(&dw, &rdw));
            Ok(())
        })?;
    }
}

/// Winograd's GEMMs multiply transformed inputs and weights, where bf16's rounding (2⁻⁹
/// relative) is amplified by F(4³, 3³)'s transforms: so under bf16 the stride-1 3³ convs take
/// the shifted-view GEMMs on the original values. This test measures both on a shape the fp32
/// route sends to Winograd and checks that `dense` routes around it.
#[test]
fn bf16_routes_winograd_shapes_to_direct_gemms() {
    use repux_kernels::{shifted, winograd};
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = ConvShape {
        n: 1,
        cin: 32,
        cout: 33,
        d: 16,
        h: 16,
        w: 17,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    assert!(winograd::preferred(&s) && shifted::applies(&s));
    let (x, wt, dy) = (
        data(s.input_len(), 1),
        data(s.weight_len(), 2),
        data(s.output_len(), 4),
    );
    let exact = reference::conv3d_forward(&s, &x, &wt, None);
    let want = reference::conv3d_forward(&s, &rounded(&x), &rounded(&wt), None);
    let (want_dx, _, _) =
        reference::conv3d_backward(&s, &rounded(&x), &rounded(&wt), &rounded(&dy));
    bf16::set_precision(Precision::Bf16);
    let wino = winograd::forward(&s, &x, &wt, None);
    let y = dense::conv3d_forward(&s, &x, &wt, None);
    let (dx, _, _) = dense::conv3d_backward(&s, &x, &wt, &dy, true);
    bf16::set_precision(Precision::Fp32);
    eprintln!(
        "bf16 operands, relative to the exact fp32 conv: Winograd F(4³,3³) {:.2e}, direct GEMM {:.2e}",
        err(&wino, &exact),
        err(&y, &exact)
    );
    assert!(err(&wino, &exact) > 10.0 * err(&y, &exact));
    assert!(err(&y, &want) < TOL, "forward: {}", err(&y, &want));
    assert!(err(&dx, &want_dx) < TOL, "dx: {}", err(&dx, &want_dx));
}
