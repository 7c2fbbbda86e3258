//! im2col + GEMM dense and transposed convs against the f64 reference on random shapes
//! (strides, padding, groups, the 1³ direct path, odd sizes) — forward and all gradients.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use repux_kernels::dense::{self, ConvShape, UpShape};
use repux_kernels::reference;

/// The kernels' knobs are process-wide (ISA cap, slab and block budgets, Winograd on or off)
/// and move dW's last bits: tests that turn them hold this for writing, and `check_conv`,
/// which compares two dW calls bit for bit, for reading.
static KNOBS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Runs `f`, which turns knobs and puts them back, while no other test reads or turns them.
fn with_knobs<T>(f: impl FnOnce() -> T) -> T {
    let _turn = KNOBS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f()
}

/// Runs `f` with the ISA capped at `level`, then lifts the cap.
fn with_isa<T>(level: u8, f: impl FnOnce() -> T) -> T {
    with_knobs(|| {
        repux_kernels::limit_isa(level);
        let out = f();
        repux_kernels::limit_isa(2);
        out
    })
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect()
}

// The error measure every kernel property test holds to its tolerance.
use repux_kernels::reference::rel_err as err;

// Tolerance: f32 GEMM sums of up to Cin·k³ (forward, dx) or N·P (dw) terms of |v| ≤ 1 against
// f64 sums: 1e-4 of the scale.
const TOL: f32 = 1e-4;

fn check_conv(s: ConvShape, seed: u64) -> Result<(), TestCaseError> {
    let _knobs = KNOBS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let x = data(s.input_len(), seed);
    let w = data(s.weight_len(), seed + 1);
    let b = data(s.cout, seed + 2);
    let dy = data(s.output_len(), seed + 3);
    let y = dense::conv3d_forward(&s, &x, &w, Some(&b));
    let want = reference::conv3d_forward(&s, &x, &w, Some(&b));
    prop_assert!(err(&y, &want) < TOL, "forward {s:?}: {}", err(&y, &want));
    let (dx, dw, db) = dense::conv3d_backward(&s, &x, &w, &dy, true);
    let (rdx, rdw, rdb) = reference::conv3d_backward(&s, &x, &w, &dy);
    prop_assert!(err(&dx, &rdx) < TOL, "dx {s:?}: {}", err(&dx, &rdx));
    prop_assert!(err(&dw, &rdw) < TOL, "dw {s:?}: {}", err(&dw, &rdw));
    prop_assert!(err(&db, &rdb) < 1e-5, "db {s:?}");
    let (no_dx, dw2, _) = dense::conv3d_backward(&s, &x, &w, &dy, false);
    prop_assert!(no_dx.is_empty() && dw2 == dw);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn conv3d_matches_reference(
        n in 1usize..3, cg in 1usize..4, og in 1usize..4, groups in 1usize..3,
        d in 1usize..8, h in 1usize..8, w in 1usize..8,
        kind in 0usize..5, seed in 0u64..1000,
    ) {
        // The network's kinds: 3³ s1 p1, 1³, 2³ s2 (downsampling), 7³ s2 p3 (stem), and 3³ s2 p0.
        let (k, stride, pad) = [(3, 1, 1), (1, 1, 0), (2, 2, 0), (7, 2, 3), (3, 2, 0)][kind];
        let min = k - 2 * pad;
        let s = ConvShape { n, cin: cg * groups, cout: og * groups, d: d.max(min), h: h.max(min), w: w.max(min), k, stride, pad, groups };
        check_conv(s, seed)?;
    }

    /// The shifted-GEMM path (stride 1, padding k/2, one group), also with tiny slab and tile
    /// budgets so that several slabs and tiles (and their edges) occur.
    #[test]
    fn same_convs_without_columns_match_reference(
        n in 1usize..3, cin in prop_oneof![1usize..6, 8usize..10], cout in prop_oneof![1usize..6, 8usize..10],
        d in 1usize..9, h in 1usize..9, w in 1usize..9,
        big in proptest::bool::ANY, k in prop_oneof![Just(3usize), Just(5usize)], small in proptest::bool::ANY, seed in 0u64..1000,
    ) {
        use repux_kernels::shifted;
        let s = ConvShape { n, cin, cout, d: d + if big { 7 } else { 0 }, h, w, k, stride: 1, pad: k / 2, groups: 1 };
        prop_assert!(shifted::applies(&s));
        let x = data(s.input_len(), seed);
        let wt = data(s.weight_len(), seed + 1);
        let b = data(s.cout, seed + 2);
        let dy = data(s.output_len(), seed + 3);
        let (y, dx, dw) = with_knobs(|| {
            if small {
                shifted::set_budgets(1, 1);
            }
            let out = (
                shifted::forward(&s, &x, &wt, Some(&b)),
                shifted::backward_dx(&s, &wt, &dy),
                shifted::backward_dw(&s, &x, &dy),
            );
            shifted::set_budgets(16 << 20, 1 << 18);
            out
        });
        let want = reference::conv3d_forward(&s, &x, &wt, Some(&b));
        let (rdx, rdw, _) = reference::conv3d_backward(&s, &x, &wt, &dy);
        prop_assert!(err(&y, &want) < TOL, "forward {s:?}: {}", err(&y, &want));
        prop_assert!(err(&dx, &rdx) < TOL, "dx {s:?}: {}", err(&dx, &rdx));
        prop_assert!(err(&dw, &rdw) < TOL, "dw {s:?}: {}", err(&dw, &rdw));
        // Wide enough for `dense` to route here: the same through the public entry points.
        if cin.min(cout) >= 8 {
            check_conv(s, seed)?;
        }
    }

    /// Winograd F(4³, 3³) (stride 1, padding 1, one group), forward, dx and dW: odd and even
    /// sizes (partial tiles on every axis), sizes below a tile, and a one-float block budget so
    /// that every block and every dW wave holds a single tile row.
    #[test]
    fn winograd_matches_reference(
        n in 1usize..3, cin in prop_oneof![1usize..6, 8usize..10], cout in prop_oneof![1usize..6, 8usize..10],
        d in 1usize..9, h in 1usize..9, w in 1usize..12, small in proptest::bool::ANY, isa in 0u8..3, seed in 0u64..1000,
    ) {
        use repux_kernels::winograd;
        // The transforms' baseline, AVX2 and AVX-512 copies (as far as this CPU has them).
        let s = ConvShape { n, cin, cout, d, h, w, k: 3, stride: 1, pad: 1, groups: 1 };
        prop_assert!(winograd::applies(&s));
        let x = data(s.input_len(), seed);
        let wt = data(s.weight_len(), seed + 1);
        let b = data(s.cout, seed + 2);
        let dy = data(s.output_len(), seed + 3);
        let (y, dx, dw) = with_isa(isa, || {
            if small {
                winograd::set_block_budget(Some(1));
            }
            let out = (
                winograd::forward(&s, &x, &wt, Some(&b)),
                winograd::backward_dx(&s, &wt, &dy),
                winograd::backward_dw(&s, &x, &dy),
            );
            winograd::set_block_budget(None);
            out
        });
        let want = reference::conv3d_forward(&s, &x, &wt, Some(&b));
        let (rdx, rdw, _) = reference::conv3d_backward(&s, &x, &wt, &dy);
        prop_assert!(err(&y, &want) < TOL, "forward {s:?}: {}", err(&y, &want));
        prop_assert!(err(&dx, &rdx) < TOL, "dx {s:?}: {}", err(&dx, &rdx));
        prop_assert!(err(&dw, &rdw) < TOL, "dw {s:?}: {}", err(&dw, &rdw));
    }

    /// `nn.Linear` (SwinUNETR's projections and MLPs): any rows, odd widths, with and without
    /// bias, all gradients.
    #[test]
    fn linear_matches_reference(rows in 1usize..2600, cin in 1usize..20, cout in 1usize..20, bias in proptest::bool::ANY, seed in 0u64..1000) {
        use repux_kernels::linear;
        let x = data(rows * cin, seed);
        let wt = data(cout * cin, seed + 1);
        let b = data(cout, seed + 2);
        let dy = data(rows * cout, seed + 3);
        let b = bias.then_some(&b[..]);
        let y = linear::linear_forward(rows, cin, cout, &x, &wt, b);
        let want = reference::linear_forward(rows, cin, cout, &x, &wt, b);
        prop_assert!(err(&y, &want) < TOL, "forward: {}", err(&y, &want));
        let (dx, dw, db) = linear::linear_backward(rows, cin, cout, &x, &wt, &dy, true);
        let (rdx, rdw, rdb) = reference::linear_backward(rows, cin, cout, &x, &wt, &dy);
        prop_assert!(err(&dx, &rdx) < TOL, "dx: {}", err(&dx, &rdx));
        prop_assert!(err(&dw, &rdw) < TOL, "dw: {}", err(&dw, &rdw));
        prop_assert!(err(&db, &rdb) < 1e-5, "db");
        let (no_dx, dw2, _) = linear::linear_backward(rows, cin, cout, &x, &wt, &dy, false);
        prop_assert!(no_dx.is_empty() && dw2 == dw);
    }

    /// Batched products (SwinUNETR's attention): any batch, odd sizes, both gradients.
    #[test]
    fn bmm_matches_reference(batch in 1usize..6, m in 1usize..40, k in 1usize..20, n in 1usize..40, seed in 0u64..1000) {
        use repux_kernels::bmm::{self, BmmShape};
        let s = BmmShape { batch, m, k, n };
        let a = data(batch * m * k, seed);
        let b = data(batch * k * n, seed + 1);
        let dc = data(batch * m * n, seed + 2);
        let c = bmm::bmm_forward(s, &a, &b);
        let want = reference::bmm_forward(s, &a, &b);
        prop_assert!(err(&c, &want) < TOL, "forward {s:?}: {}", err(&c, &want));
        let (da, db) = bmm::bmm_backward(s, &a, &b, &dc, true);
        let (rda, rdb) = reference::bmm_backward(s, &a, &b, &dc);
        prop_assert!(err(&da, &rda) < TOL, "da {s:?}: {}", err(&da, &rda));
        prop_assert!(err(&db, &rdb) < TOL, "db {s:?}: {}", err(&db, &rdb));
        let (no_da, db2) = bmm::bmm_backward(s, &a, &b, &dc, false);
        prop_assert!(no_da.is_empty() && db2 == db);
    }

    #[test]
    fn conv_transpose_matches_reference(n in 1usize..3, cin in 1usize..6, cout in 1usize..6, d in 1usize..6, h in 1usize..6, w in 1usize..6, seed in 0u64..1000) {
        let s = UpShape { n, cin, cout, d, h, w };
        let x = data(s.input_len(), seed);
        let wt = data(s.weight_len(), seed + 1);
        let dy = data(s.output_len(), seed + 2);
        let y = dense::conv_transpose_k2s2_forward(&s, &x, &wt);
        let want = reference::conv_transpose_k2s2_forward(&s, &x, &wt);
        prop_assert!(err(&y, &want) < TOL, "forward {s:?}: {}", err(&y, &want));
        let (dx, dw) = dense::conv_transpose_k2s2_backward(&s, &x, &wt, &dy);
        let (rdx, rdw) = reference::conv_transpose_k2s2_backward(&s, &x, &wt, &dy);
        prop_assert!(err(&dx, &rdx) < TOL, "dx {s:?}: {}", err(&dx, &rdx));
        prop_assert!(err(&dw, &rdw) < TOL, "dw {s:?}: {}", err(&dw, &rdw));
    }
}

/// A conv wide enough for `dense` to route it to Winograd (≥ 32 channels, ≥ 2048 voxels):
/// the public entry points give the same forward, dx and dw with Winograd on and off (the
/// direct, columns-free path), and db is the same computation either way.
#[test]
fn winograd_and_direct_routes_agree() {
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
    assert!(repux_kernels::winograd::preferred(&s));
    let (x, wt, b, dy) = (
        data(s.input_len(), 1),
        data(s.weight_len(), 2),
        data(s.cout, 3),
        data(s.output_len(), 4),
    );
    let run = |on: bool| {
        dense::use_winograd(on);
        let y = dense::conv3d_forward(&s, &x, &wt, Some(&b));
        let (dx, dw, db) = dense::conv3d_backward(&s, &x, &wt, &dy, true);
        (y, dx, dw, db)
    };
    let (direct, wino) = with_knobs(|| (run(false), run(true)));
    assert!(
        err(&wino.0, &direct.0) < TOL,
        "forward: {}",
        err(&wino.0, &direct.0)
    );
    assert!(
        err(&wino.1, &direct.1) < TOL,
        "dx: {}",
        err(&wino.1, &direct.1)
    );
    assert!(
        err(&wino.2, &direct.2) < TOL,
        "dw: {}",
        err(&wino.2, &direct.2)
    );
    assert_eq!(wino.3, direct.3);
}

/// Winograd on empty shapes (no voxels along an axis, or no channels) gives empty or zero
/// results, as the reference does, instead of dividing by a zero tile count.
#[test]
fn winograd_takes_empty_shapes() {
    use repux_kernels::winograd;
    for (n, cin, cout, d, h, w) in [
        (1, 3, 2, 0, 4, 4),
        (1, 3, 2, 4, 4, 0),
        (0, 3, 2, 4, 4, 4),
        (1, 0, 2, 4, 4, 4),
        (1, 3, 0, 4, 4, 4),
    ] {
        let s = ConvShape {
            n,
            cin,
            cout,
            d,
            h,
            w,
            k: 3,
            stride: 1,
            pad: 1,
            groups: 1,
        };
        let (x, wt, dy) = (
            data(s.input_len(), 1),
            data(s.weight_len(), 2),
            data(s.output_len(), 3),
        );
        let b = data(s.cout, 4);
        assert_eq!(
            winograd::forward(&s, &x, &wt, Some(&b)),
            reference::conv3d_forward(&s, &x, &wt, Some(&b)),
            "{s:?}"
        );
        let (rdx, rdw, _) = reference::conv3d_backward(&s, &x, &wt, &dy);
        assert_eq!(winograd::backward_dx(&s, &wt, &dy), rdx, "{s:?}");
        assert_eq!(winograd::backward_dw(&s, &x, &dy), rdw, "{s:?}");
    }
}

/// A volume big enough that the columns are built in several depth slabs.
#[test]
fn slabs_cover_the_volume() {
    let s = ConvShape {
        n: 1,
        cin: 64,
        cout: 3,
        d: 40,
        h: 40,
        w: 40,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    const {
        assert!(
            dense::COLS_BUDGET / (64 * 27 * 40 * 40) < 40,
            "the shape must need several slabs"
        )
    };
    let x = data(s.input_len(), 7);
    let w = data(s.weight_len(), 8);
    let y = dense::conv3d_forward(&s, &x, &w, None);
    let want = reference::conv3d_forward(&s, &x, &w, None);
    assert!(err(&y, &want) < TOL, "{}", err(&y, &want));
    let dy = data(s.output_len(), 9);
    let (dx, dw, _) = dense::conv3d_backward(&s, &x, &w, &dy, true);
    let (rdx, rdw, _) = reference::conv3d_backward(&s, &x, &w, &dy);
    assert!(
        err(&dx, &rdx) < TOL && err(&dw, &rdw) < TOL,
        "{} {}",
        err(&dx, &rdx),
        err(&dw, &rdw)
    );
}

/// Winograd's forward, dx and dW of `s` (3³, stride 1, padding 1) at each block budget,
/// against the reference within [`TOL`].
fn winograd_at_budgets(s: &ConvShape, seed: u64, budgets: &[Option<usize>]) {
    use repux_kernels::winograd;
    // The output is written into unzeroed memory: NaN there first shows a float left out.
    repux_kernels::poison_fresh_outputs(true);
    let (x, wt) = (data(s.input_len(), seed), data(s.weight_len(), seed + 1));
    let (b, dy) = (data(s.cout, seed + 2), data(s.output_len(), seed + 3));
    let want = reference::conv3d_forward(s, &x, &wt, Some(&b));
    let (rdx, rdw, _) = reference::conv3d_backward(s, &x, &wt, &dy);
    for &budget in budgets {
        let (y, dx, dw) = with_knobs(|| {
            winograd::set_block_budget(budget);
            let out = (
                winograd::forward(s, &x, &wt, Some(&b)),
                winograd::backward_dx(s, &wt, &dy),
                winograd::backward_dw(s, &x, &dy),
            );
            winograd::set_block_budget(None);
            out
        });
        for (what, got, want) in [("forward", &y, &want), ("dx", &dx, &rdx), ("dw", &dw, &rdw)] {
            assert!(
                err(got, want) < TOL,
                "{what} {s:?} budget {budget:?}: {}",
                err(got, want)
            );
        }
    }
}

/// The transforms run over groups of consecutive tile rows (16 / gcd(tiles per row, 16) of
/// them: 4 at 12 tiles, 12 at 5, 2 at 24) that cross tile planes and samples, the last group
/// of a block shorter. Block budgets of one tile row, of a few groups (8 rows at 12
/// tiles: two whole groups a block, a short group in the last block), and the default (48
/// tiles: 4, 10 and 2 rows).
#[test]
fn winograd_groups_of_tile_rows() {
    use repux_kernels::winograd;
    for (i, &w) in [45usize, 20, 96].iter().enumerate() {
        // H = 9: 3 tile rows a plane, so groups start mid-plane.
        let s = ConvShape {
            n: 2,
            cin: 5,
            cout: 7,
            d: 7,
            h: 9,
            w,
            k: 3,
            stride: 1,
            pad: 1,
            groups: 1,
        };
        assert!(
            !winograd::by_channel_chunks(&s),
            "blocks of tile rows: {s:?}"
        );
        let per_row = 216 * 7 * w.div_ceil(4);
        winograd_at_budgets(&s, 40 + 4 * i as u64, &[Some(1), Some(8 * per_row), None]);
    }
}

/// Few voxels and many channels: the transformed weights outweigh the transformed activations,
/// so every tile is transformed once and the output channels go in chunks (forward, dx and
/// dW). Chunks of one channel, of 16 with a short last one (41 = 16 + 16 + 9, 17 = 16 + 1),
/// and the default (one chunk at these sizes).
#[test]
fn winograd_chunks_of_output_channels() {
    use repux_kernels::winograd;
    for (i, &(n, cin, cout, d, h, w)) in [(2, 40, 41, 5, 6, 7), (1, 33, 17, 4, 4, 9)]
        .iter()
        .enumerate()
    {
        let s = ConvShape {
            n,
            cin,
            cout,
            d,
            h,
            w,
            k: 3,
            stride: 1,
            pad: 1,
            groups: 1,
        };
        assert!(winograd::by_channel_chunks(&s), "chunks of channels: {s:?}");
        // dx's chunks are of input channels, over cout: 16 of them take 216 · cout · 16 floats.
        let budgets = [Some(1), Some(216 * cin * 16), Some(216 * cout * 16), None];
        winograd_at_budgets(&s, 60 + 4 * i as u64, &budgets);
    }
}

/// The shifted path's dW split by output channels (few voxels, many channels) and by columns,
/// with the AVX-512 sums and (ISA capped at AVX2) the tap GEMMs; 41 and 17 output channels
/// leave a short last range.
#[test]
fn shifted_dw_by_output_channels() {
    use repux_kernels::shifted;
    let shape = |n, cin, cout, d, k| ConvShape {
        n,
        cin,
        cout,
        d,
        h: d + 1,
        w: d + 2,
        k,
        stride: 1,
        pad: k / 2,
        groups: 1,
    };
    for (i, (s, by_channels)) in [
        (shape(2, 40, 41, 3, 3), true),
        (shape(1, 33, 17, 2, 5), true),
        // By columns at any slab budget (another test shrinks it to one plane).
        (shape(1, 8, 8, 20, 3), false),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(shifted::dw_by_channels(&s), by_channels, "{s:?}");
        let seed = 80 + 2 * i as u64;
        let (x, dy) = (data(s.input_len(), seed), data(s.output_len(), seed + 1));
        let wt = data(s.weight_len(), seed + 2);
        let (_, rdw, _) = reference::conv3d_backward(&s, &x, &wt, &dy);
        for isa in [2, 1] {
            let dw = with_isa(isa, || shifted::backward_dw(&s, &x, &dy));
            assert!(
                err(&dw, &rdw) < TOL,
                "dw {s:?} isa {isa}: {}",
                err(&dw, &rdw)
            );
        }
    }
}
