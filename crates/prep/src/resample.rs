//! Separable resampling of C-order 3-D arrays, one axis at a time, with an interpolation order
//! per axis (so nnU-Net's "separate z" is simply `[Cubic, Cubic, Nearest]`).
//!
//! Convention (pixel-centre aligned, as skimage `resize` and `align_corners=False`): output index
//! `o` along an axis of `n_in → n_out` samples input coordinate `x = (o + 0.5)·n_in/n_out − 0.5`.
//! The resampled grid's geometry follows exactly from it ([`resampled_geometry`]), and resampling
//! back to `n_in` lands on the original voxel centres, so inversion restores the native grid.
//!
//! Boundaries match scipy.ndimage: linear and nearest clamp (`mode='nearest'`); cubic is the
//! cubic B-spline with its prefilter, mirror boundaries (`order=3, mode='mirror'`).

use rayon::prelude::*;
use repux_volume::Geometry;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interp {
    Nearest,
    Linear,
    Cubic,
}

/// Input coordinate sampled by output index `o`.
#[inline]
pub fn source_coord(o: usize, n_in: usize, n_out: usize) -> f64 {
    (o as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5
}

/// Output shape for a target spacing: `round(shape · spacing / target)`, at least 1 (nnU-Net).
pub fn shape_for_spacing(shape: [usize; 3], spacing: [f64; 3], target: [f64; 3]) -> [usize; 3] {
    let mut s = [1; 3];
    for a in 0..3 {
        s[a] = ((shape[a] as f64 * spacing[a] / target[a]).round() as usize).max(1);
    }
    s
}

/// The exact grid of a resampled volume: columns scale by `n_in/n_out`, the origin moves to the
/// centre of the first output voxel.
pub fn resampled_geometry(g: &Geometry, out_shape: [usize; 3]) -> Geometry {
    let mut a = g.affine;
    let mut spacing = g.spacing;
    for ax in 0..3 {
        let r = g.shape[ax] as f64 / out_shape[ax] as f64;
        let shift = 0.5 * r - 0.5;
        for (row, src) in a.iter_mut().zip(&g.affine).take(3) {
            row[3] += src[ax] * shift;
            row[ax] = src[ax] * r;
        }
        spacing[ax] *= r;
    }
    Geometry {
        shape: out_shape,
        spacing,
        affine: a,
    }
}

fn mirror(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let p = 2 * (n as isize - 1);
    let m = i.rem_euclid(p);
    (if m > n as isize - 1 { p - m } else { m }) as usize
}

/// Per output index: up to four (input index, weight) taps.
fn taps(n_in: usize, n_out: usize, interp: Interp) -> Vec<([usize; 4], [f32; 4], usize)> {
    (0..n_out)
        .map(|o| {
            let x = source_coord(o, n_in, n_out);
            match interp {
                Interp::Nearest => {
                    let i = ((x + 0.5).floor().max(0.0) as usize).min(n_in - 1);
                    ([i, 0, 0, 0], [1.0, 0.0, 0.0, 0.0], 1)
                }
                Interp::Linear => {
                    let xc = x.clamp(0.0, (n_in - 1) as f64);
                    let i0 = xc.floor() as usize;
                    let t = xc - i0 as f64;
                    let i1 = (i0 + 1).min(n_in - 1);
                    ([i0, i1, 0, 0], [(1.0 - t) as f32, t as f32, 0.0, 0.0], 2)
                }
                Interp::Cubic => {
                    let f = x.floor();
                    let t = x - f;
                    let w = [
                        (1.0 - t).powi(3) / 6.0,
                        (3.0 * t.powi(3) - 6.0 * t * t + 4.0) / 6.0,
                        (-3.0 * t.powi(3) + 3.0 * t * t + 3.0 * t + 1.0) / 6.0,
                        t.powi(3) / 6.0,
                    ];
                    let b = f as isize - 1;
                    let idx = [
                        mirror(b, n_in),
                        mirror(b + 1, n_in),
                        mirror(b + 2, n_in),
                        mirror(b + 3, n_in),
                    ];
                    (idx, w.map(|v| v as f32), 4)
                }
            }
        })
        .collect()
}

/// In-place cubic B-spline prefilter along the middle axis of an (outer, n, inner) array, mirror
/// boundaries (scipy's `spline_filter1d(order=3, mode='mirror')`), vectorised over `inner`.
fn prefilter(data: &mut [f32], outer: usize, n: usize, inner: usize) {
    if n < 2 {
        return;
    }
    let z: f64 = 3f64.sqrt() - 2.0;
    let gain = ((1.0 - z) * (1.0 - 1.0 / z)) as f32;
    let zf = z as f32;
    let z_n_1 = z.powi(n as i32 - 1);
    let block = n * inner;
    let run = |blk: &mut [f32]| {
        blk.iter_mut().for_each(|v| *v *= gain);
        // causal init (mirror): c0 = Σ z^i (c_i + z^(n-1) c_(n-1-i)) / (1 − z^(2n−2)), in f64
        let mut c0 = vec![0f64; inner];
        for (i, acc) in c0.iter_mut().enumerate() {
            *acc = blk[i] as f64 + z_n_1 * blk[(n - 1) * inner + i] as f64;
        }
        let mut zi = z;
        for k in 1..n - 1 {
            for (i, acc) in c0.iter_mut().enumerate() {
                *acc +=
                    zi * (blk[k * inner + i] as f64 + z_n_1 * blk[(n - 1 - k) * inner + i] as f64);
            }
            zi *= z;
            if zi.abs() < 1e-20 {
                break;
            }
        }
        for (i, acc) in c0.iter().enumerate() {
            blk[i] = (acc / (1.0 - z_n_1 * z_n_1)) as f32;
        }
        for k in 1..n {
            let (prev, cur) = blk[(k - 1) * inner..(k + 1) * inner].split_at_mut(inner);
            cur.iter_mut()
                .zip(prev.iter())
                .for_each(|(c, p)| *c += zf * p);
        }
        // anticausal init: c_(n-1) = (z c_(n-2) + c_(n-1)) z / (z² − 1)
        let f = (z / (z * z - 1.0)) as f32;
        for i in 0..inner {
            blk[(n - 1) * inner + i] =
                (zf * blk[(n - 2) * inner + i] + blk[(n - 1) * inner + i]) * f;
        }
        for k in (0..n - 1).rev() {
            let (cur, next) = blk[k * inner..(k + 2) * inner].split_at_mut(inner);
            cur.iter_mut()
                .zip(next.iter())
                .for_each(|(c, nx)| *c = zf * (nx - *c));
        }
    };
    if inner == 1 {
        // Contiguous lines: a scalar recursion per line, lines in parallel.
        data.par_chunks_mut(n).for_each(|line| {
            let mut c0 = 0f64;
            let mut zi = 1.0;
            for k in 0..n - 1 {
                c0 += zi * (line[k] as f64 + z_n_1 * line[n - 1 - k] as f64);
                zi *= z;
                if zi.abs() < 1e-20 {
                    break;
                }
            }
            let g = gain as f64;
            let mut prev = (g * c0 / (1.0 - z_n_1 * z_n_1)) as f32;
            line[0] = prev;
            for v in line[1..].iter_mut() {
                prev = gain * *v + zf * prev;
                *v = prev;
            }
            let f = (z / (z * z - 1.0)) as f32;
            let mut next = (zf * line[n - 2] + line[n - 1]) * f;
            line[n - 1] = next;
            for v in line[..n - 1].iter_mut().rev() {
                next = zf * (next - *v);
                *v = next;
            }
        });
    } else if outer > 1 {
        data.par_chunks_mut(block).for_each(run);
    } else {
        // One block (the slowest axis): the recursion runs row by row, each step vectorised
        // over the whole contiguous inner extent.
        run(data);
    }
}

/// Resamples along one axis of a C-order array of `shape`.
pub fn resample_axis(
    data: &[f32],
    shape: [usize; 3],
    axis: usize,
    n_out: usize,
    interp: Interp,
) -> Vec<f32> {
    let n = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let filtered;
    let src: &[f32] = if interp == Interp::Cubic && n > 1 {
        let mut c = data.to_vec();
        prefilter(&mut c, outer, n, inner);
        filtered = c;
        &filtered
    } else {
        data
    };
    let tp = taps(n, n_out, interp);
    let mut out = vec![0f32; outer * n_out * inner];
    if inner == 1 {
        out.par_chunks_mut(n_out).enumerate().for_each(|(ou, row)| {
            let line = &src[ou * n..(ou + 1) * n];
            for (o, v) in row.iter_mut().enumerate() {
                let (idx, w, k) = &tp[o];
                *v = (0..*k).map(|t| w[t] * line[idx[t]]).sum();
            }
        });
    } else {
        out.par_chunks_mut(inner).enumerate().for_each(|(c, row)| {
            let (ou, o) = (c / n_out, c % n_out);
            let (idx, w, k) = &tp[o];
            let base = ou * n * inner;
            let first = &src[base + idx[0] * inner..base + (idx[0] + 1) * inner];
            row.iter_mut().zip(first).for_each(|(r, s)| *r = w[0] * s);
            for t in 1..*k {
                let line = &src[base + idx[t] * inner..base + (idx[t] + 1) * inner];
                let wt = w[t];
                row.iter_mut().zip(line).for_each(|(r, s)| *r += wt * s);
            }
        });
    }
    out
}

/// Resamples one channel to `out_shape`, axis by axis (the most shrinking axis first, so later
/// passes touch less data). Interpolation is chosen per axis.
pub fn resample(
    data: &[f32],
    shape: [usize; 3],
    out_shape: [usize; 3],
    interp: [Interp; 3],
) -> Vec<f32> {
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| {
        let ra = out_shape[a] as f64 / shape[a] as f64;
        let rb = out_shape[b] as f64 / shape[b] as f64;
        ra.partial_cmp(&rb).unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut cur = shape;
    let mut buf: Option<Vec<f32>> = None;
    for &ax in &order {
        if cur[ax] == out_shape[ax] {
            continue;
        }
        let next = resample_axis(
            buf.as_deref().unwrap_or(data),
            cur,
            ax,
            out_shape[ax],
            interp[ax],
        );
        cur[ax] = out_shape[ax];
        buf = Some(next);
    }
    buf.unwrap_or_else(|| data.to_vec())
}

/// Resamples an integer label map. `one_hot` resamples each class's indicator with `interp`
/// (cubic is treated as linear) and takes the arg-max (the first class wins ties); otherwise
/// nearest neighbour on every axis.
pub fn resample_labels(
    labels: &[f32],
    shape: [usize; 3],
    out_shape: [usize; 3],
    one_hot: bool,
    interp: [Interp; 3],
) -> Vec<f32> {
    if !one_hot {
        return resample(labels, shape, out_shape, [Interp::Nearest; 3]);
    }
    let interp = interp.map(|i| {
        if i == Interp::Cubic {
            Interp::Linear
        } else {
            i
        }
    });
    let mut classes: Vec<u32> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for &v in labels {
        if seen.insert(v as u32) {
            classes.push(v as u32);
        }
    }
    classes.sort_unstable();
    let n_out: usize = out_shape.iter().product();
    let mut best = vec![f32::NEG_INFINITY; n_out];
    let mut arg = vec![0f32; n_out];
    for &c in &classes {
        let ind: Vec<f32> = labels
            .iter()
            .map(|&v| if v as u32 == c { 1.0 } else { 0.0 })
            .collect();
        let r = resample(&ind, shape, out_shape, interp);
        best.par_iter_mut()
            .zip(arg.par_iter_mut())
            .zip(r.par_iter())
            .for_each(|((b, a), &v)| {
                if v > *b {
                    *b = v;
                    *a = c as f32;
                }
            });
    }
    arg
}

/// nnU-Net's `get_do_separate_z` + axis choice: when the coarsest axis of the native (or else the
/// target) spacing is more than `threshold` × the finest, that axis is the low-resolution one.
pub fn separate_z_axis(spacing: [f64; 3], target: [f64; 3], threshold: f64) -> Option<usize> {
    let aniso = |s: &[f64; 3]| {
        let (mx, mn) = (
            s.iter().cloned().fold(f64::MIN, f64::max),
            s.iter().cloned().fold(f64::MAX, f64::min),
        );
        mx / mn > threshold
    };
    let argmax = |s: &[f64; 3]| {
        (0..3)
            .max_by(|&a, &b| s[a].partial_cmp(&s[b]).unwrap_or(std::cmp::Ordering::Equal))
            .unwrap_or(2)
    };
    if aniso(&spacing) {
        Some(argmax(&spacing))
    } else if aniso(&target) {
        Some(argmax(&target))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_shape_is_a_copy() {
        let d: Vec<f32> = (0..24).map(|v| v as f32).collect();
        assert_eq!(resample(&d, [2, 3, 4], [2, 3, 4], [Interp::Cubic; 3]), d);
    }

    #[test]
    fn linear_and_cubic_reproduce_linear_ramps_inside() {
        // A linear ramp along k is reproduced exactly by linear interpolation away from the clamp.
        let d: Vec<f32> = (0..16).map(|k| 2.0 * k as f32).collect();
        let r = resample(&d, [1, 1, 16], [1, 1, 32], [Interp::Linear; 3]);
        for (o, &v) in r.iter().enumerate().take(31).skip(1) {
            let x = source_coord(o, 16, 32);
            assert!((v as f64 - 2.0 * x).abs() < 1e-5);
        }
        // Cubic B-splines reproduce linear functions exactly too (away from the mirror edges).
        let r = resample(&d, [1, 1, 16], [1, 1, 32], [Interp::Cubic; 3]);
        for (o, &v) in r.iter().enumerate().take(20).skip(12) {
            let x = source_coord(o, 16, 32);
            assert!((v as f64 - 2.0 * x).abs() < 5e-3, "{o}: {v} vs {}", 2.0 * x);
        }
    }

    #[test]
    fn geometry_of_resampled_grid_keeps_the_field_of_view() {
        let g = Geometry::from_affine(
            [10, 20, 5],
            [
                [-0.8, 0.0, 0.0, 50.0],
                [0.0, -0.8, 0.0, 20.0],
                [0.0, 0.0, 3.0, -10.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        );
        let out = resampled_geometry(&g, [5, 10, 15]);
        assert_eq!(out.spacing, [1.6, 1.6, 1.0]);
        // Output voxel o sits at input coordinate source_coord(o).
        let w = out.world([1.0, 2.0, 3.0]);
        let w_in = g.world([
            source_coord(1, 10, 5),
            source_coord(2, 20, 10),
            source_coord(3, 5, 15),
        ]);
        for r in 0..3 {
            assert!((w[r] - w_in[r]).abs() < 1e-12);
        }
        // Resampling back lands on the native grid exactly.
        let back = resampled_geometry(&out, [10, 20, 5]);
        assert!(back.max_affine_diff(&g) < 1e-12);
    }

    #[test]
    fn integer_upsampling_roundtrips_labels() {
        let l: Vec<f32> = (0..60).map(|i| ((i * 7) % 5) as f32).collect();
        let up = resample_labels(&l, [3, 4, 5], [6, 8, 10], false, [Interp::Nearest; 3]);
        let back = resample_labels(&up, [6, 8, 10], [3, 4, 5], false, [Interp::Nearest; 3]);
        assert_eq!(back, l);
        let up = resample_labels(&l, [3, 4, 5], [6, 8, 10], true, [Interp::Linear; 3]);
        let back = resample_labels(&up, [6, 8, 10], [3, 4, 5], true, [Interp::Linear; 3]);
        assert_eq!(back, l);
    }

    #[test]
    fn separate_z_rule() {
        assert_eq!(
            separate_z_axis([0.7, 0.7, 5.0], [1.0, 1.0, 1.0], 3.0),
            Some(2)
        );
        assert_eq!(separate_z_axis([0.7, 0.7, 1.5], [1.0, 1.0, 1.2], 3.0), None);
        assert_eq!(
            separate_z_axis([1.0, 1.0, 1.0], [4.0, 1.0, 1.0], 3.0),
            Some(0)
        );
    }
}
