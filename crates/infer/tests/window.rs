//! The sliding window reproduces a whole-volume forward for a translation-equivariant network
//! (any voxel-wise function is), with or without mirroring, for shapes not divisible by the
//! patch and smaller than it.

use repux_infer::window::{sliding_window, WindowConfig};

/// A toy voxel-wise "network": 2 input channels → 3 class logits.
fn toy(batch: &[f32], n: usize, np: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * 3 * np);
    for b in 0..n {
        let x = &batch[b * 2 * np..(b + 1) * 2 * np];
        for c in 0..3 {
            out.extend((0..np).map(|v| (c as f32 + 1.0) * x[v] - x[np + v] * x[np + v] + (c as f32 * x[v]).sin()));
        }
    }
    out
}

#[test]
fn equals_whole_volume_forward() {
    for (shape, patch, overlap, mirror) in [([20, 13, 9], [8, 8, 8], 0.5, false), ([20, 13, 9], [8, 8, 8], 0.25, true), ([5, 6, 7], [8, 8, 8], 0.5, true), ([16, 16, 16], [16, 16, 16], 0.5, false)] {
        let n: usize = shape.iter().product();
        let image: Vec<f32> = (0..2 * n).map(|i| ((i * 31 % 17) as f32 - 8.0) / 5.0).collect();
        let np: usize = patch.iter().product();
        let cfg = WindowConfig { patch, overlap, mirror, tile_batch: 3 };
        let mut calls = 0;
        let got = sliding_window(&image, 2, shape, 3, &cfg, |b, k| {
            calls += 1;
            toy(b, k, np)
        }, |_, _| {});
        let want = toy(&image, 1, n);
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        // Tolerance: weighted average of identical values, f32 rounding of the weights.
        assert!(worst < 1e-4, "{shape:?} patch {patch:?} overlap {overlap} mirror {mirror}: {worst}");
        assert!(calls > 0);
    }
}
