//! Times Winograd forward and dW at several block sizes, for choosing `BLOCK_TILES`:
//! `cargo run --release -p repux-kernels --example winograd_blocks -- [N C S]` runs an
//! N × C × S³ → C conv (default 2 × 48 × 96³, the paper network's first stage) with blocks of
//! 24, 48 and 96 tiles and of 2 Mi floats, best of 5 each, interleaved.

use repux_kernels::dense::ConvShape;
use repux_kernels::winograd;
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments: N C S (numbers)"))
        .collect();
    let [n, c, size] = match args[..] {
        [] => [2, 48, 96],
        [n, c, s] => [n, c, s],
        _ => panic!("arguments: N C S"),
    };
    let s = ConvShape {
        n,
        cin: c,
        cout: c,
        d: size,
        h: size,
        w: size,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    let x: Vec<f32> = (0..s.input_len())
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let w: Vec<f32> = (0..s.weight_len())
        .map(|i| ((i * 31) % 100) as f32 / 50.0 - 1.0)
        .collect();
    let dy: Vec<f32> = (0..s.output_len())
        .map(|i| ((i * 13) % 97) as f32 / 48.0 - 1.0)
        .collect();
    let sizes: [(String, Option<usize>); 4] = [
        ("24 tiles".into(), Some(216 * c * 24)),
        (format!("{} tiles (default)", winograd::BLOCK_TILES), None),
        ("96 tiles".into(), Some(216 * c * 96)),
        ("2 Mi floats".into(), Some(2 << 20)),
    ];
    let mut best = [[f64::MAX; 2]; 4];
    for _ in 0..5 {
        for (i, (_, budget)) in sizes.iter().enumerate() {
            winograd::set_block_budget(*budget);
            let t = Instant::now();
            std::hint::black_box(winograd::forward(&s, &x, &w, None));
            best[i][0] = best[i][0].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            std::hint::black_box(winograd::backward_dw(&s, &x, &dy));
            best[i][1] = best[i][1].min(t.elapsed().as_secs_f64());
        }
    }
    println!(
        "{n} × {c} × {size}³, {} threads",
        rayon::current_num_threads()
    );
    for ((name, _), [f, d]) in sizes.iter().zip(best) {
        println!(
            "{name:>20}: forward {:7.1} ms ({:.2}×), dW {:7.1} ms ({:.2}×)",
            f * 1e3,
            f / best[1][0],
            d * 1e3,
            d / best[1][1]
        );
    }
}
