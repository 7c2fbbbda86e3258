//! Training patches: random crops of the plan's patch size, a fraction of them centred on a
//! foreground voxel (uniformly over voxels, or over classes first), padded when the volume is
//! smaller than the patch (the authors' MONAI pipeline errors there; this does not).

use crate::cache::CachedCase;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    /// Image padded with 0 (the normalised background is near 0 for the CT schemes).
    Zero,
    /// Image padded by repeating its border voxels.
    Edge,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    pub patch: [usize; 3],
    /// Probability that a crop is forced to contain a foreground voxel (default 0.5).
    pub foreground_fraction: f64,
    /// Pick a class uniformly first, then a voxel of it (helps rare classes such as the pancreas).
    pub class_uniform: bool,
    pub pad: PadMode,
}

impl SamplerConfig {
    pub fn new(patch: [usize; 3]) -> Self {
        SamplerConfig {
            patch,
            foreground_fraction: 0.5,
            class_uniform: false,
            pad: PadMode::Zero,
        }
    }
}

/// One crop: image (C × P), labels (P), where it was taken and whether foreground was forced.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    pub shape: [usize; 3],
    pub channels: usize,
    pub image: Vec<f32>,
    pub labels: Vec<u16>,
    /// Index of the patch's first voxel in the case grid (may be negative: padding).
    pub origin: [isize; 3],
    pub forced_foreground: bool,
}

/// Draws one patch from a cached case.
pub fn sample(case: &CachedCase, cfg: &SamplerConfig, rng: &mut impl Rng) -> Patch {
    let shape = case.meta.shape;
    let p = cfg.patch;
    let forced = rng.gen_bool(cfg.foreground_fraction.clamp(0.0, 1.0));
    let classes: Vec<&Vec<[u32; 3]>> = case
        .meta
        .class_locations
        .values()
        .filter(|v| !v.is_empty())
        .collect();
    let mut origin = [0isize; 3];
    // Valid origins: [min(0, s − p), max(0, s − p)]; when s < p the volume is centred-ish with padding.
    let lo = |a: usize| (shape[a] as isize - p[a] as isize).min(0);
    let hi = |a: usize| (shape[a] as isize - p[a] as isize).max(0);
    let centre = if forced && !classes.is_empty() {
        let v = if cfg.class_uniform {
            let c = classes[rng.gen_range(0..classes.len())];
            c[rng.gen_range(0..c.len())]
        } else {
            let total: usize = classes.iter().map(|c| c.len()).sum();
            let mut k = rng.gen_range(0..total);
            let mut pick = classes[0][0];
            for c in &classes {
                if k < c.len() {
                    pick = c[k];
                    break;
                }
                k -= c.len();
            }
            pick
        };
        Some(v)
    } else {
        None
    };
    for a in 0..3 {
        origin[a] = match centre {
            Some(v) => (v[a] as isize - p[a] as isize / 2).clamp(lo(a), hi(a)),
            None => rng.gen_range(lo(a)..=hi(a)),
        };
    }
    let (image, labels) = extract(case, origin, p, cfg.pad);
    Patch {
        shape: p,
        channels: case.meta.channels,
        image,
        labels,
        origin,
        forced_foreground: centre.is_some(),
    }
}

/// Copies the box at `origin` of size `p`, padding outside the volume.
pub fn extract(
    case: &CachedCase,
    origin: [isize; 3],
    p: [usize; 3],
    pad: PadMode,
) -> (Vec<f32>, Vec<u16>) {
    let [d, h, w] = case.meta.shape;
    let n = d * h * w;
    let np = p[0] * p[1] * p[2];
    let mut image = vec![0f32; case.meta.channels * np];
    let mut labels = vec![0u16; np];
    let clampi = |v: isize, s: usize| v.clamp(0, s as isize - 1) as usize;
    for c in 0..case.meta.channels {
        let src = &case.image[c * n..(c + 1) * n];
        for a in 0..p[0] {
            let i = origin[0] + a as isize;
            for b in 0..p[1] {
                let j = origin[1] + b as isize;
                let row =
                    &mut image[c * np + (a * p[1] + b) * p[2]..c * np + (a * p[1] + b + 1) * p[2]];
                let inside_ij = i >= 0 && (i as usize) < d && j >= 0 && (j as usize) < h;
                for (k, out) in row.iter_mut().enumerate() {
                    let kk = origin[2] + k as isize;
                    let inside = inside_ij && kk >= 0 && (kk as usize) < w;
                    *out = if inside {
                        src[((i as usize) * h + j as usize) * w + kk as usize]
                    } else if pad == PadMode::Edge {
                        src[(clampi(i, d) * h + clampi(j, h)) * w + clampi(kk, w)]
                    } else {
                        0.0
                    };
                    if c == 0 && inside {
                        labels[(a * p[1] + b) * p[2] + k] =
                            case.labels[((i as usize) * h + j as usize) * w + kk as usize];
                    }
                }
            }
        }
    }
    (image, labels)
}
