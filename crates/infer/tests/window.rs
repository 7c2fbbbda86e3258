//! The sliding window reproduces a whole-volume forward for a translation-equivariant network
//! (any voxel-wise function is), with or without mirroring, for shapes not divisible by the
//! patch and smaller than it.

use repux_infer::window::{sliding_window, WindowConfig, WindowError};

/// A toy voxel-wise "network": 2 input channels → 3 class logits.
fn toy(batch: &[f32], n: usize, np: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * 3 * np);
    for b in 0..n {
        let x = &batch[b * 2 * np..(b + 1) * 2 * np];
        for c in 0..3 {
            out.extend((0..np).map(|v| {
                (c as f32 + 1.0) * x[v] - x[np + v] * x[np + v] + (c as f32 * x[v]).sin()
            }));
        }
    }
    out
}

#[test]
fn equals_whole_volume_forward() {
    for (shape, patch, overlap, mirror) in [
        ([20, 13, 9], [8, 8, 8], 0.5, false),
        ([20, 13, 9], [8, 8, 8], 0.25, true),
        ([5, 6, 7], [8, 8, 8], 0.5, true),
        ([16, 16, 16], [16, 16, 16], 0.5, false),
    ] {
        let n: usize = shape.iter().product();
        let image: Vec<f32> = (0..2 * n)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) / 5.0)
            .collect();
        let np: usize = patch.iter().product();
        let cfg = WindowConfig {
            patch,
            overlap,
            mirror,
            tile_batch: 3,
        };
        let mut calls = 0;
        let got = sliding_window(
            &image,
            2,
            shape,
            3,
            &cfg,
            |b, k| {
                calls += 1;
                Ok::<_, WindowError>(toy(b, k, np))
            },
            |_, _| {},
        )
        .unwrap();
        let want = toy(&image, 1, n);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // Tolerance: weighted average of identical values, f32 rounding of the weights.
        assert!(
            worst < 1e-4,
            "{shape:?} patch {patch:?} overlap {overlap} mirror {mirror}: {worst}"
        );
        assert!(calls > 0);
    }
}

/// A network that is neither mirror-symmetric nor translation-invariant: each class reads the
/// next voxel along its own axis (cyclically) and adds a ramp along another. Test-time
/// mirroring must average the 8 outputs, each flipped back; the expected average is computed
/// here by index arithmetic, without the window module's flip.
#[test]
fn mirroring_averages_the_eight_flipped_back_outputs() {
    let p = [6usize, 5, 4];
    let np: usize = p.iter().product();
    let idx = |i: usize, j: usize, k: usize| (i * p[1] + j) * p[2] + k;
    let net = |x: &[f32]| -> Vec<f32> {
        let mut out = vec![0f32; 3 * np];
        for c in 0..3 {
            for i in 0..p[0] {
                for j in 0..p[1] {
                    for k in 0..p[2] {
                        let next = match c {
                            0 => x[idx((i + 1) % p[0], j, k)],
                            1 => x[idx(i, (j + 1) % p[1], k)],
                            _ => x[idx(i, j, (k + 1) % p[2])],
                        };
                        let ramp = [i, j, k][(c + 1) % 3] as f32;
                        out[c * np + idx(i, j, k)] = (c as f32 + 1.0) * next
                            + 0.3 * ramp
                            + x[idx(i, j, k)] * x[idx(i, j, k)];
                    }
                }
            }
        }
        out
    };
    let image: Vec<f32> = (0..np)
        .map(|v| ((v * 37 % 23) as f32 - 11.0) / 7.0)
        .collect();
    // Expected: for each mirroring m, x_m(v) = x(m(v)); y_m = net(x_m); back: y(v) += y_m(m(v)) / 8.
    let mut want = vec![0f32; 3 * np];
    for m in 0..8 {
        let f = [m & 1 != 0, m & 2 != 0, m & 4 != 0];
        let mirror = |i: usize, j: usize, k: usize| {
            idx(
                if f[0] { p[0] - 1 - i } else { i },
                if f[1] { p[1] - 1 - j } else { j },
                if f[2] { p[2] - 1 - k } else { k },
            )
        };
        let mut xm = vec![0f32; np];
        for i in 0..p[0] {
            for j in 0..p[1] {
                for k in 0..p[2] {
                    xm[idx(i, j, k)] = image[mirror(i, j, k)];
                }
            }
        }
        let ym = net(&xm);
        for c in 0..3 {
            for i in 0..p[0] {
                for j in 0..p[1] {
                    for k in 0..p[2] {
                        want[c * np + idx(i, j, k)] += ym[c * np + mirror(i, j, k)] / 8.0;
                    }
                }
            }
        }
    }
    let cfg = WindowConfig {
        patch: p,
        overlap: 0.5,
        mirror: true,
        tile_batch: 1,
    };
    let got = sliding_window(
        &image,
        1,
        p,
        3,
        &cfg,
        |b, n| Ok::<_, WindowError>(b.chunks(np).take(n).flat_map(&net).collect()),
        |_, _| {},
    )
    .unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // One tile covering the volume: the Gaussian weights divide out; f32 rounding only.
    assert!(worst < 1e-5, "mirrored average off by {worst}");
    // And the network is really not mirror-symmetric: without mirroring the result differs.
    let plain = sliding_window(
        &image,
        1,
        p,
        3,
        &WindowConfig {
            mirror: false,
            ..cfg
        },
        |b, n| Ok::<_, WindowError>(b.chunks(np).take(n).flat_map(&net).collect()),
        |_, _| {},
    )
    .unwrap();
    assert!(plain.iter().zip(&want).any(|(a, b)| (a - b).abs() > 0.1));
    // A predictor that returns the wrong number of logits is an error, not a short read.
    let short = sliding_window(
        &image,
        1,
        p,
        3,
        &cfg,
        |_, _| Ok::<_, WindowError>(vec![0.0; 5]),
        |_, _| {},
    );
    assert!(short.unwrap_err().to_string().contains("returned 5 logits"));
}
