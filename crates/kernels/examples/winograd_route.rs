//! Times a stride-1 3³ conv (forward, dx and dW) by Winograd and by the direct path, for
//! choosing where `dense` routes to Winograd (`winograd::preferred`):
//! `cargo run --release -p repux-kernels --example winograd_route -- N CIN COUT S` (default
//! 2 × 384 → 384 at 12³, the paper network's deepest 3³ convs at a 96³ patch), best of 5,
//! interleaved.

use repux_kernels::dense::{self, ConvShape};
use repux_kernels::winograd;
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments: N CIN COUT S (numbers)"))
        .collect();
    let [n, cin, cout, size] = match args[..] {
        [] => [2, 384, 384, 12],
        [n, ci, co, s] => [n, ci, co, s],
        _ => panic!("arguments: N CIN COUT S"),
    };
    let s = ConvShape {
        n,
        cin,
        cout,
        d: size,
        h: size,
        w: size,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    let fill = |len: usize, m: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * m) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    };
    let (x, w, dy) = (
        fill(s.input_len(), 7919),
        fill(s.weight_len(), 31),
        fill(s.output_len(), 13),
    );
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    // [route][forward, dx, dW]
    let mut best = [[f64::MAX; 3]; 2];
    dense::use_winograd(false);
    for _ in 0..5 {
        let wino = [
            time(&|| drop(std::hint::black_box(winograd::forward(&s, &x, &w, None)))),
            time(&|| drop(std::hint::black_box(winograd::backward_dx(&s, &w, &dy)))),
            time(&|| drop(std::hint::black_box(winograd::backward_dw(&s, &x, &dy)))),
        ];
        let forward = time(&|| {
            drop(std::hint::black_box(dense::conv3d_forward(
                &s, &x, &w, None,
            )))
        });
        let both = time(&|| {
            drop(std::hint::black_box(dense::conv3d_backward(
                &s, &x, &w, &dy, true,
            )))
        });
        let dw = time(&|| {
            drop(std::hint::black_box(dense::conv3d_backward(
                &s, &x, &w, &dy, false,
            )))
        });
        let direct = [forward, (both - dw).max(0.0), dw];
        for (b, t) in best.iter_mut().zip([wino, direct]) {
            for (b, t) in b.iter_mut().zip(t) {
                *b = b.min(t);
            }
        }
    }
    println!(
        "{n} × {cin} → {cout} at {size}³, {} threads",
        rayon::current_num_threads()
    );
    for (name, [f, dx, dw]) in ["winograd", "direct"].iter().zip(best) {
        println!(
            "{name:>9}: forward {:7.1} ms, dx {:7.1} ms, dW {:7.1} ms",
            f * 1e3,
            dx * 1e3,
            dw * 1e3
        );
    }
}
