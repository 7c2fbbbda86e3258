//! Criterion benches of the hot kernels at RepUX-Net shapes: `cargo bench -p repux-kernels`.
//! The depthwise shapes are the paper's (stage 1 and 2 at a 96³ patch); the dense and transposed
//! convs run at half the paper's resolution so that one criterion sample stays near a second.
//! `repux bench kernels` times the full-size shapes against burn's generic ops in the same run.

use criterion::{criterion_group, criterion_main, Criterion};
use repux_kernels::dense::{self, ConvShape, UpShape};
use repux_kernels::depthwise::{self, DwAlgo, DwShape};
use std::hint::black_box;

/// Deterministic values in [−1, 1) (a 32-bit LCG; the kernels' speed does not depend on them).
fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn depthwise_convs(c: &mut Criterion) {
    let mut g = c.benchmark_group("depthwise");
    g.sample_size(10);
    for (k, ch, s) in [(21, 48, 48), (21, 96, 24), (7, 48, 48)] {
        let shape = DwShape {
            n: 1,
            c: ch,
            d: s,
            h: s,
            w: s,
            k,
        };
        let (x, w, b, dy) = (
            data(shape.input_len(), 1),
            data(shape.weight_len(), 2),
            data(ch, 3),
            data(shape.input_len(), 4),
        );
        g.bench_function(format!("k{k} {ch}ch {s}^3 forward"), |bench| {
            bench.iter(|| black_box(depthwise::forward(&shape, &x, &w, Some(&b), DwAlgo::Auto)))
        });
        g.bench_function(format!("k{k} {ch}ch {s}^3 forward+backward"), |bench| {
            bench.iter(|| {
                // As training runs it: the FFT forward keeps its spectra for the backward.
                let (y, saved) = depthwise::forward_saving(&shape, &x, &w, Some(&b), DwAlgo::Auto);
                let grads = match &saved {
                    Some(saved) => depthwise::backward_saved(saved, &dy),
                    None => depthwise::backward(&shape, &x, &w, &dy, DwAlgo::Auto),
                };
                black_box((y, grads))
            })
        });
    }
    g.finish();
}

fn dense_convs(c: &mut Criterion) {
    let mut g = c.benchmark_group("dense");
    g.sample_size(10);
    let conv = ConvShape {
        n: 1,
        cin: 48,
        cout: 48,
        d: 48,
        h: 48,
        w: 48,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    let (x, w, b, dy) = (
        data(conv.input_len(), 1),
        data(conv.weight_len(), 2),
        data(conv.cout, 3),
        data(conv.output_len(), 4),
    );
    g.bench_function("conv 3^3 48->48 48^3 forward", |bench| {
        bench.iter(|| black_box(dense::conv3d_forward(&conv, &x, &w, Some(&b))))
    });
    g.bench_function("conv 3^3 48->48 48^3 forward+backward", |bench| {
        bench.iter(|| {
            let y = dense::conv3d_forward(&conv, &x, &w, Some(&b));
            black_box((y, dense::conv3d_backward(&conv, &x, &w, &dy, true)))
        })
    });
    // dW alone, both ways: Winograd's transpose (what `dense` routes these convs to) against the
    // direct sums (`shifted::backward_dw`) it replaced.
    g.bench_function("conv 3^3 48->48 48^3 dw winograd", |bench| {
        bench.iter(|| black_box(repux_kernels::winograd::backward_dw(&conv, &x, &dy)))
    });
    g.bench_function("conv 3^3 48->48 48^3 dw direct", |bench| {
        bench.iter(|| black_box(repux_kernels::shifted::backward_dw(&conv, &x, &dy)))
    });
    let up = UpShape {
        n: 1,
        cin: 96,
        cout: 48,
        d: 24,
        h: 24,
        w: 24,
    };
    let (ux, uw, udy) = (
        data(up.input_len(), 5),
        data(up.weight_len(), 6),
        data(up.output_len(), 7),
    );
    g.bench_function(
        "conv_transpose k2s2 96->48 24^3 forward+backward",
        |bench| {
            bench.iter(|| {
                let y = dense::conv_transpose_k2s2_forward(&up, &ux, &uw);
                black_box((y, dense::conv_transpose_k2s2_backward(&up, &ux, &uw, &udy)))
            })
        },
    );
    g.finish();
}

criterion_group!(benches, depthwise_convs, dense_convs);
criterion_main!(benches);
