//! Per-class overlap and surface metrics, as MONAI and nnU-Net define them.
//!
//! - Dice `2TP / (2TP + FP + FN)`, IoU `TP / (TP + FP + FN)`.
//! - Edges (MONAI `get_mask_edges`): mask voxels with a 6-neighbour outside the mask (the volume's
//!   outside counts as outside).
//! - Surface distances: from each edge voxel of one mask to the nearest edge voxel of the other, in
//!   mm (spacing-aware), by an exact EDT restricted to the bounding box of both edge sets (exact:
//!   every nearest edge lies inside that box).
//! - HD95 = max of the two directed 95th percentiles (numpy's linear interpolation); ASD = mean of
//!   both directions' distances together (MONAI `symmetric=True`); NSD at tolerance τ = (edge voxels
//!   of both masks within τ of the other mask's edge) / (all edge voxels) (MONAI
//!   `compute_surface_dice`).
//!
//! Empty conventions: both masks empty → every metric NaN (nnU-Net: excluded from the means);
//! exactly one empty → Dice = IoU = 0 (nnU-Net; MONAI's `DiceMetric(ignore_empty=True)` gives NaN
//! whenever the reference is empty), HD95 = ASD = +∞ and NSD = 0 (MONAI).

use crate::edt::squared_edt_at;
use rayon::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[allow(non_snake_case)]
pub struct ClassMetrics {
    pub Dice: f64,
    pub IoU: f64,
    pub HD95: f64,
    pub ASD: f64,
    pub NSD: f64,
    pub TP: u64,
    pub FP: u64,
    pub FN: u64,
    pub TN: u64,
    pub n_pred: u64,
    pub n_ref: u64,
}

/// Edge voxels of a mask (6-neighbourhood erosion, outside = background).
pub fn edges(mask: &[bool], shape: [usize; 3]) -> Vec<bool> {
    let [d, h, w] = shape;
    let at = |i: isize, j: isize, k: isize| {
        i >= 0
            && j >= 0
            && k >= 0
            && (i as usize) < d
            && (j as usize) < h
            && (k as usize) < w
            && mask[((i as usize) * h + j as usize) * w + k as usize]
    };
    let mut out = vec![false; mask.len()];
    out.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(i, plane)| {
            for j in 0..h {
                for k in 0..w {
                    let idx = j * w + k;
                    if !mask[i * h * w + idx] {
                        continue;
                    }
                    let (a, b, c) = (i as isize, j as isize, k as isize);
                    plane[idx] = !(at(a - 1, b, c)
                        && at(a + 1, b, c)
                        && at(a, b - 1, c)
                        && at(a, b + 1, c)
                        && at(a, b, c - 1)
                        && at(a, b, c + 1));
                }
            }
        });
    let _ = d;
    out
}

fn bbox(masks: [&[bool]; 2], shape: [usize; 3]) -> Option<([usize; 3], [usize; 3])> {
    let [d, h, w] = shape;
    // Per plane, in parallel: the plane's own box; then merge.
    let (lo, hi) = (0..d)
        .into_par_iter()
        .map(|i| {
            let mut lo = [usize::MAX; 3];
            let mut hi = [0usize; 3];
            for m in masks {
                for (idx, _) in m[i * h * w..(i + 1) * h * w]
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| v)
                {
                    let p = [i, idx / w, idx % w];
                    for a in 0..3 {
                        lo[a] = lo[a].min(p[a]);
                        hi[a] = hi[a].max(p[a] + 1);
                    }
                }
            }
            (lo, hi)
        })
        .reduce(
            || ([usize::MAX; 3], [0; 3]),
            |(l1, h1), (l2, h2)| {
                (
                    std::array::from_fn(|a| l1[a].min(l2[a])),
                    std::array::from_fn(|a| h1[a].max(h2[a])),
                )
            },
        );
    (lo[0] != usize::MAX).then_some((lo, hi))
}

fn crop(m: &[bool], shape: [usize; 3], lo: [usize; 3], hi: [usize; 3]) -> Vec<bool> {
    let [_, h, w] = shape;
    let mut out = Vec::with_capacity((hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]));
    for i in lo[0]..hi[0] {
        for j in lo[1]..hi[1] {
            out.extend_from_slice(&m[(i * h + j) * w + lo[2]..(i * h + j) * w + hi[2]]);
        }
    }
    out
}

/// Distances (mm) from each edge voxel of `a` to the nearest edge voxel of `b`, and back.
pub fn surface_distances(
    pred_edges: &[bool],
    ref_edges: &[bool],
    shape: [usize; 3],
    spacing: [f64; 3],
) -> (Vec<f64>, Vec<f64>) {
    let Some((lo, hi)) = bbox([pred_edges, ref_edges], shape) else {
        return (Vec::new(), Vec::new());
    };
    let cs = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    let (pe, re) = (
        crop(pred_edges, shape, lo, hi),
        crop(ref_edges, shape, lo, hi),
    );
    let (to_ref, to_pred) = rayon::join(
        || squared_edt_at(&re, cs, spacing, &pe),
        || squared_edt_at(&pe, cs, spacing, &re),
    );
    (
        to_ref.into_iter().map(f64::sqrt).collect(),
        to_pred.into_iter().map(f64::sqrt).collect(),
    )
}

/// numpy's default percentile (linear interpolation between order statistics).
pub fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    if v[lo].is_infinite() || v[hi].is_infinite() {
        return if pos.fract() == 0.0 { v[lo] } else { v[hi] };
    }
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// All metrics of one class (`pred`, `reference` are masks of that class on the same grid).
pub fn class_metrics(
    pred: &[bool],
    reference: &[bool],
    shape: [usize; 3],
    spacing: [f64; 3],
    nsd_tolerance: f64,
) -> ClassMetrics {
    let (tp, fp, fn_) = pred
        .par_chunks(1 << 16)
        .zip(reference.par_chunks(1 << 16))
        .map(|(p, r)| {
            let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
            for (&p, &r) in p.iter().zip(r) {
                tp += (p && r) as u64;
                fp += (p && !r) as u64;
                fn_ += (!p && r) as u64;
            }
            (tp, fp, fn_)
        })
        .reduce(|| (0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    let tn = pred.len() as u64 - tp - fp - fn_;
    let (n_pred, n_ref) = (tp + fp, tp + fn_);
    let mut m = ClassMetrics {
        Dice: f64::NAN,
        IoU: f64::NAN,
        HD95: f64::NAN,
        ASD: f64::NAN,
        NSD: f64::NAN,
        TP: tp,
        FP: fp,
        FN: fn_,
        TN: tn,
        n_pred,
        n_ref,
    };
    if n_pred == 0 && n_ref == 0 {
        return m;
    }
    m.Dice = 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64;
    m.IoU = tp as f64 / (tp + fp + fn_) as f64;
    if n_pred == 0 || n_ref == 0 {
        m.HD95 = f64::INFINITY;
        m.ASD = f64::INFINITY;
        m.NSD = 0.0;
        return m;
    }
    // Work inside the masks' joint bounding box grown by one voxel: the outside is background in
    // both, so the edges (and every distance between them) are the same as on the full grid.
    let (pred, reference, shape) = match bbox([pred, reference], shape) {
        Some((lo, hi)) => {
            let lo: [usize; 3] = std::array::from_fn(|a| lo[a].saturating_sub(1));
            let hi: [usize; 3] = std::array::from_fn(|a| (hi[a] + 1).min(shape[a]));
            let cs = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
            (
                crop(pred, shape, lo, hi),
                crop(reference, shape, lo, hi),
                cs,
            )
        }
        None => (pred.to_vec(), reference.to_vec(), shape),
    };
    let (pe, re) = rayon::join(|| edges(&pred, shape), || edges(&reference, shape));
    let (d1, d2) = surface_distances(&pe, &re, shape, spacing);
    let within = d1
        .iter()
        .chain(&d2)
        .filter(|&&d| d <= nsd_tolerance)
        .count();
    m.NSD = within as f64 / (d1.len() + d2.len()) as f64;
    m.ASD = d1.iter().chain(&d2).sum::<f64>() / (d1.len() + d2.len()) as f64;
    m.HD95 = percentile(d1, 95.0).max(percentile(d2, 95.0));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cube_edges_and_empty_conventions() {
        let shape = [5, 5, 5];
        let mut m = vec![false; 125];
        for i in 1..4 {
            for j in 1..4 {
                for k in 1..4 {
                    m[(i * 5 + j) * 5 + k] = true;
                }
            }
        }
        let e = edges(&m, shape);
        assert_eq!(
            e.iter().filter(|&&v| v).count(),
            26,
            "3³ cube minus its centre"
        );
        let same = class_metrics(&m, &m, shape, [1.0; 3], 1.0);
        assert_eq!(
            (same.Dice, same.HD95, same.ASD, same.NSD),
            (1.0, 0.0, 0.0, 1.0)
        );
        let empty = vec![false; 125];
        let one = class_metrics(&empty, &m, shape, [1.0; 3], 1.0);
        assert_eq!((one.Dice, one.HD95, one.NSD), (0.0, f64::INFINITY, 0.0));
        let none = class_metrics(&empty, &empty, shape, [1.0; 3], 1.0);
        assert!(none.Dice.is_nan() && none.HD95.is_nan());
        assert_eq!(percentile(vec![1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
    }
}
