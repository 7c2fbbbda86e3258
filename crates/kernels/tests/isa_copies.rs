//! The hand-written loops' baseline, AVX2 and AVX-512 copies compute the same values, bit for
//! bit (docs/architecture.md's invariant): Winograd forward, dx and dW (by blocks of tile rows
//! and by chunks of output channels), the fused norm passes, the window softmax; and Winograd
//! dW gives the same bits on any number of threads.
//! Its own test binary, so that no other test moves the ISA cap or Winograd's block budget
//! while it runs; its two tests take turns (`GLOBALS`): dW's bits depend on the budget.

use rand::{Rng, SeedableRng};
use repux_kernels::dense::ConvShape;
use repux_kernels::softmax::{self, AttnShape};
use repux_kernels::{limit_isa, norm, winograd};

/// Held by each test while it sets the process-wide ISA cap or block budget.
static GLOBALS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect()
}

/// A shape Winograd runs by chunks of output channels (`s` runs by blocks of tile rows).
fn few_voxels_many_channels(s: ConvShape) -> ConvShape {
    let c = ConvShape {
        n: 1,
        cin: 40,
        cout: 41,
        d: 5,
        h: 6,
        w: 7,
        ..s
    };
    assert!(winograd::by_channel_chunks(&c) && !winograd::by_channel_chunks(&s));
    c
}

#[test]
fn isa_copies_agree_bit_for_bit() {
    let _turn = GLOBALS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let s = ConvShape {
        n: 2,
        cin: 5,
        cout: 7,
        d: 5,
        h: 9,
        w: 11,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    let (x, w, b, dy) = (
        data(s.input_len(), 1),
        data(s.weight_len(), 2),
        data(s.cout, 3),
        data(s.output_len(), 4),
    );
    let c = few_voxels_many_channels(s);
    let (cx, cw, cdy) = (
        data(c.input_len(), 11),
        data(c.weight_len(), 12),
        data(c.output_len(), 13),
    );
    let sp = 1000;
    let (nx, na) = (data(6 * sp, 5), data(6 * sp, 6));
    let attn = AttnShape {
        batch: 4,
        heads: 3,
        n: 37,
        windows: 2,
    };
    let scores: Vec<f32> = data(4 * 3 * 37 * 37, 7).iter().map(|v| 20.0 * v).collect();
    let (bias, dp) = (data(3 * 37 * 37, 8), data(scores.len(), 9));
    let mask: Vec<f32> = data(2 * 37 * 37, 10)
        .iter()
        .map(|&v| if v > 0.4 { -100.0 } else { 0.0 })
        .collect();
    let run = |level: u8| {
        limit_isa(level);
        let y = winograd::forward(&s, &x, &w, Some(&b));
        let dx = winograd::backward_dx(&s, &w, &dy);
        let dw = winograd::backward_dw(&s, &x, &dy);
        let (ny, rstd) = norm::instance_norm_act(&nx, sp, 1e-5, 0.01);
        let ndx = norm::instance_norm_act_backward(&ny, &na, &rstd, sp, 0.01);
        let ay = norm::add_act(&nx, &na, 0.01);
        let ag = norm::act_backward(&ay, &na, 0.01);
        let mut p = scores.clone();
        softmax::window_softmax(attn, &mut p, &bias, Some(&mask));
        let mut ds = dp.clone();
        let dbias = softmax::window_softmax_backward(attn, &p, &mut ds);
        let cy = winograd::forward(&c, &cx, &cw, None);
        let cdx = winograd::backward_dx(&c, &cw, &cdy);
        let cdw = winograd::backward_dw(&c, &cx, &cdy);
        [y, dx, dw, ny, rstd, ndx, ay, ag, p, ds, dbias, cy, cdx, cdw]
    };
    let base = run(0);
    for level in [1, 2] {
        let other = run(level);
        for (i, (a, b)) in base.iter().zip(&other).enumerate() {
            assert!(
                a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()),
                "output {i} differs between ISA levels 0 and {level}"
            );
        }
    }
    limit_isa(2);
}

/// Winograd dW sums its tiles in waves of a fixed size, not per thread: the same bits on one
/// thread as on three, over several waves (a small block budget).
#[test]
fn winograd_dw_does_not_depend_on_the_thread_count() {
    use repux_kernels::winograd;
    let _turn = GLOBALS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let s = ConvShape {
        n: 2,
        cin: 9,
        cout: 7,
        d: 9,
        h: 10,
        w: 11,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    // And by chunks of output channels (one wave, several chunks at this budget).
    let c = few_voxels_many_channels(s);
    for (i, s) in [s, c].iter().enumerate() {
        let (x, dy) = (data(s.input_len(), 5 + i as u64), data(s.output_len(), 7));
        winograd::set_block_budget(Some(20_000));
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            pool.install(|| winograd::backward_dw(s, &x, &dy))
        };
        let (one, three) = (on(1), on(3));
        winograd::set_block_budget(None);
        assert!(
            one.iter()
                .zip(&three)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{s:?}"
        );
    }
}
