//! Gaussian-weighted sliding-window inference over a C × D × H × W volume, generic over the
//! predictor (a function from a batch of patches to a batch of logits), with optional
//! test-time mirroring over all 8 flip combinations. Tile placement and weighting follow nnU-Net:
//! tiles evenly spaced with at least the requested overlap, weights a Gaussian with σ = patch/8
//! (its zeros lifted to the smallest non-zero weight), logits accumulated, then divided by the
//! summed weights.

/// Tile start positions along one axis of `size` for tiles of `patch` with `overlap` ∈ [0, 1).
pub fn tile_starts(size: usize, patch: usize, overlap: f64) -> Vec<usize> {
    if size <= patch {
        return vec![0];
    }
    let step = (patch as f64 * (1.0 - overlap)).max(1.0);
    let n = ((size - patch) as f64 / step).ceil() as usize + 1;
    (0..n)
        .map(|i| ((i as f64) * (size - patch) as f64 / (n - 1) as f64).round() as usize)
        .collect()
}

/// The Gaussian importance map (σ = patch/8 per axis, maximum 1, no zeros).
pub fn gaussian(patch: [usize; 3]) -> Vec<f32> {
    let mut g = Vec::with_capacity(patch.iter().product());
    let s: [f64; 3] = std::array::from_fn(|a| patch[a] as f64 / 8.0);
    let c: [f64; 3] = std::array::from_fn(|a| (patch[a] as f64 - 1.0) / 2.0);
    for i in 0..patch[0] {
        for j in 0..patch[1] {
            for k in 0..patch[2] {
                let e = ((i as f64 - c[0]) / s[0]).powi(2)
                    + ((j as f64 - c[1]) / s[1]).powi(2)
                    + ((k as f64 - c[2]) / s[2]).powi(2);
                g.push((-0.5 * e).exp() as f32);
            }
        }
    }
    let min_nonzero = g
        .iter()
        .cloned()
        .filter(|&v| v > 0.0)
        .fold(f32::MAX, f32::min);
    g.iter_mut().for_each(|v| *v = v.max(min_nonzero));
    g
}

/// Reverses the axes in `flips` of a C × P array.
pub fn flip(data: &[f32], channels: usize, p: [usize; 3], flips: [bool; 3]) -> Vec<f32> {
    if flips == [false; 3] {
        return data.to_vec();
    }
    let ro = repux_volume::Reorientation {
        from_shape: p,
        perm: [0, 1, 2],
        flip: flips,
    };
    let n: usize = p.iter().product();
    (0..channels)
        .flat_map(|c| ro.apply_data(&data[c * n..(c + 1) * n]))
        .collect()
}

#[derive(Clone, Copy, Debug)]
pub struct WindowConfig {
    pub patch: [usize; 3],
    pub overlap: f64,
    /// Average over the 8 mirrorings.
    pub mirror: bool,
    /// Patches per predictor call.
    pub tile_batch: usize,
}

/// A predictor returned logits of the wrong size.
#[derive(Debug, thiserror::Error)]
#[error("the network returned {got} logits for {tiles} tile(s); expected {want}")]
pub struct WindowError {
    pub got: usize,
    pub want: usize,
    pub tiles: usize,
}

/// Runs `predict(batch, n)` (batch: n × C_in × P → n × classes × P logits) over the volume and
/// returns the blended logits, classes × D × H × W. `progress(done, total)` counts tiles. The
/// first error of `predict` ends the run and is returned.
pub fn sliding_window<E: From<WindowError>>(
    image: &[f32],
    channels: usize,
    shape: [usize; 3],
    classes: usize,
    cfg: &WindowConfig,
    mut predict: impl FnMut(&[f32], usize) -> Result<Vec<f32>, E>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<f32>, E> {
    let p = cfg.patch;
    // Volumes smaller than the patch are zero-padded (and cropped back at the end).
    let padded: [usize; 3] = std::array::from_fn(|a| shape[a].max(p[a]));
    let n_pad: usize = padded.iter().product();
    let n: usize = shape.iter().product();
    let img: Vec<f32> = if padded == shape {
        image.to_vec()
    } else {
        let mut out = vec![0f32; channels * n_pad];
        for c in 0..channels {
            for i in 0..shape[0] {
                for j in 0..shape[1] {
                    let src = &image[c * n + (i * shape[1] + j) * shape[2]
                        ..c * n + (i * shape[1] + j + 1) * shape[2]];
                    let d = c * n_pad + (i * padded[1] + j) * padded[2];
                    out[d..d + shape[2]].copy_from_slice(src);
                }
            }
        }
        out
    };
    let starts: Vec<[usize; 3]> = {
        let s: [Vec<usize>; 3] = std::array::from_fn(|a| tile_starts(padded[a], p[a], cfg.overlap));
        s[0].iter()
            .flat_map(|&i| {
                s[1].iter().flat_map({
                    let s = &s;
                    move |&j| s[2].iter().map(move |&k| [i, j, k])
                })
            })
            .collect()
    };
    let g = gaussian(p);
    let np: usize = p.iter().product();
    let mut acc = vec![0f32; classes * n_pad];
    let mut wsum = vec![0f32; n_pad];
    let flips: Vec<[bool; 3]> = if cfg.mirror {
        (0..8)
            .map(|m| [m & 1 != 0, m & 2 != 0, m & 4 != 0])
            .collect()
    } else {
        vec![[false; 3]]
    };
    let total = starts.len();
    let mut done = 0;
    for chunk in starts.chunks(cfg.tile_batch.max(1)) {
        let tiles: Vec<Vec<f32>> = chunk
            .iter()
            .map(|st| {
                let mut t = Vec::with_capacity(channels * np);
                for c in 0..channels {
                    for i in 0..p[0] {
                        for j in 0..p[1] {
                            let o = c * n_pad
                                + ((st[0] + i) * padded[1] + st[1] + j) * padded[2]
                                + st[2];
                            t.extend_from_slice(&img[o..o + p[2]]);
                        }
                    }
                }
                t
            })
            .collect();
        let mut logits = vec![0f32; chunk.len() * classes * np];
        for f in &flips {
            let batch: Vec<f32> = tiles
                .iter()
                .flat_map(|t| flip(t, channels, p, *f))
                .collect();
            let out = predict(&batch, chunk.len())?;
            if out.len() != logits.len() {
                return Err(WindowError {
                    got: out.len(),
                    want: logits.len(),
                    tiles: chunk.len(),
                }
                .into());
            }
            for (b, l) in out.chunks(classes * np).enumerate() {
                for (a, v) in logits[b * classes * np..(b + 1) * classes * np]
                    .iter_mut()
                    .zip(flip(l, classes, p, *f))
                {
                    *a += v / flips.len() as f32;
                }
            }
        }
        for (b, st) in chunk.iter().enumerate() {
            for i in 0..p[0] {
                for j in 0..p[1] {
                    let row = ((st[0] + i) * padded[1] + st[1] + j) * padded[2] + st[2];
                    let gi = (i * p[1] + j) * p[2];
                    for k in 0..p[2] {
                        wsum[row + k] += g[gi + k];
                    }
                    for c in 0..classes {
                        let l = &logits
                            [b * classes * np + c * np + gi..b * classes * np + c * np + gi + p[2]];
                        for (k, v) in l.iter().enumerate() {
                            acc[c * n_pad + row + k] += v * g[gi + k];
                        }
                    }
                }
            }
        }
        done += chunk.len();
        progress(done, total);
    }
    let mut out = vec![0f32; classes * n];
    for c in 0..classes {
        for i in 0..shape[0] {
            for j in 0..shape[1] {
                for k in 0..shape[2] {
                    let q = (i * padded[1] + j) * padded[2] + k;
                    out[c * n + (i * shape[1] + j) * shape[2] + k] = acc[c * n_pad + q] / wsum[q];
                }
            }
        }
    }
    Ok(out)
}

/// Softmax over the class axis of a classes × N array, in place.
pub fn softmax(logits: &mut [f32], classes: usize) {
    let n = logits.len() / classes;
    for v in 0..n {
        let m = (0..classes)
            .map(|c| logits[c * n + v])
            .fold(f32::MIN, f32::max);
        let s: f32 = (0..classes).map(|c| (logits[c * n + v] - m).exp()).sum();
        for c in 0..classes {
            logits[c * n + v] = (logits[c * n + v] - m).exp() / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_and_overlap() {
        assert_eq!(tile_starts(96, 96, 0.5), vec![0]);
        assert_eq!(tile_starts(50, 96, 0.5), vec![0]);
        let t = tile_starts(200, 96, 0.5);
        assert_eq!((t[0], *t.last().unwrap()), (0, 104));
        assert!(t.windows(2).all(|w| w[1] - w[0] <= 48));
        let g = gaussian([8, 8, 8]);
        assert!(g.iter().all(|&v| v > 0.0 && v <= 1.0));
    }
}
