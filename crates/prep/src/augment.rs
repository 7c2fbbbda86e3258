//! Seeded, reproducible augmentation of training patches: affine rotation and scaling about the
//! patch centre (trilinear for images, nearest for labels, border padding), flips, intensity
//! shift and scale, Gaussian noise, gamma. The same rng state gives the same result.

use crate::sampler::Patch;
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Probability of the spatial (rotation + scaling) transform.
    pub p_affine: f64,
    /// Largest rotation in degrees about each axis (i, j, k).
    pub rotate_deg: [f64; 3],
    /// Largest relative scale change per axis (0.1 = ±10 %).
    pub scale: f64,
    /// Probability of flipping, per axis.
    pub p_flip: [f64; 3],
    /// Intensity shift: `x += U(−shift, shift)` with probability `p_shift`.
    pub shift: f64,
    pub p_shift: f64,
    /// Intensity scale: `x *= U(1 − s, 1 + s)` with probability `p_intensity_scale`.
    pub intensity_scale: f64,
    pub p_intensity_scale: f64,
    /// Gaussian noise with σ ~ U(0, noise_std) with probability `p_noise`.
    pub noise_std: f64,
    pub p_noise: f64,
    /// Gamma γ ~ U(gamma.0, gamma.1) on the patch's range, with probability `p_gamma`.
    pub gamma: (f64, f64),
    pub p_gamma: f64,
}

impl AugmentConfig {
    /// The paper's pipeline (3D UX-Net / RepUX-Net code): RandAffine with rotation ±π/30 (6°)
    /// about the third axis and ±10 % scale per axis (p = 1), RandShiftIntensity ±0.1 (p = 0.5).
    pub fn paper() -> Self {
        AugmentConfig {
            p_affine: 1.0,
            rotate_deg: [0.0, 0.0, 6.0],
            scale: 0.1,
            p_flip: [0.0; 3],
            shift: 0.1,
            p_shift: 0.5,
            intensity_scale: 0.0,
            p_intensity_scale: 0.0,
            noise_std: 0.0,
            p_noise: 0.0,
            gamma: (1.0, 1.0),
            p_gamma: 0.0,
        }
    }

    /// A wider, nnU-Net-like preset: rotation ±30° about all axes and scale 0.7–1.4 (p 0.2),
    /// flips (p 0.5 per axis), noise, intensity scale, gamma.
    pub fn nnunet() -> Self {
        AugmentConfig {
            p_affine: 0.2,
            rotate_deg: [30.0; 3],
            scale: 0.3,
            p_flip: [0.5; 3],
            shift: 0.0,
            p_shift: 0.0,
            intensity_scale: 0.25,
            p_intensity_scale: 0.15,
            noise_std: 0.1,
            p_noise: 0.1,
            gamma: (0.7, 1.5),
            p_gamma: 0.3,
        }
    }

    /// No augmentation.
    pub fn none() -> Self {
        AugmentConfig {
            p_affine: 0.0,
            p_shift: 0.0,
            p_flip: [0.0; 3],
            ..Self::paper()
        }
    }

    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "paper" => Some(Self::paper()),
            "nnunet" => Some(Self::nnunet()),
            "none" => Some(Self::none()),
            _ => None,
        }
    }
}

fn rot(axis: usize, t: f64) -> [[f64; 3]; 3] {
    let (c, s) = (t.cos(), t.sin());
    let mut m = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let (a, b) = match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    m[a][a] = c;
    m[a][b] = -s;
    m[b][a] = s;
    m[b][b] = c;
    m
}

fn mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

/// Applies the configured augmentations to `patch` in place, drawing from `rng` in a fixed order.
pub fn augment(patch: &mut Patch, cfg: &AugmentConfig, rng: &mut impl Rng) {
    let [d, h, w] = patch.shape;
    let np = d * h * w;
    if cfg.p_affine > 0.0 && rng.gen_bool(cfg.p_affine.min(1.0)) {
        let mut m = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        for ax in 0..3 {
            let lim = cfg.rotate_deg[ax].to_radians();
            let t = if lim > 0.0 {
                rng.gen_range(-lim..=lim)
            } else {
                0.0
            };
            m = mul(&rot(ax, t), &m);
        }
        // Output voxel q samples the input at c + M⁻¹(q − c); with M = R·S, M⁻¹ = S⁻¹Rᵀ.
        let mut inv = [[0.0; 3]; 3];
        for ax in 0..3 {
            let s = if cfg.scale > 0.0 {
                1.0 + rng.gen_range(-cfg.scale..=cfg.scale)
            } else {
                1.0
            };
            for j in 0..3 {
                inv[ax][j] = m[j][ax] / s;
            }
        }
        let c = [
            (d as f64 - 1.0) / 2.0,
            (h as f64 - 1.0) / 2.0,
            (w as f64 - 1.0) / 2.0,
        ];
        let src_img = patch.image.clone();
        let src_lab = patch.labels.clone();
        let at = |i: isize, j: isize, k: isize| {
            ((i.clamp(0, d as isize - 1) as usize * h) + j.clamp(0, h as isize - 1) as usize) * w
                + k.clamp(0, w as isize - 1) as usize
        };
        for a in 0..d {
            for b in 0..h {
                for k in 0..w {
                    let q = [a as f64 - c[0], b as f64 - c[1], k as f64 - c[2]];
                    let x: [f64; 3] = std::array::from_fn(|r| {
                        c[r] + inv[r][0] * q[0] + inv[r][1] * q[1] + inv[r][2] * q[2]
                    });
                    let o = (a * h + b) * w + k;
                    patch.labels[o] = src_lab[at(
                        x[0].round() as isize,
                        x[1].round() as isize,
                        x[2].round() as isize,
                    )];
                    let f = x.map(|v| v.floor());
                    let t = [x[0] - f[0], x[1] - f[1], x[2] - f[2]];
                    let (i0, j0, k0) = (f[0] as isize, f[1] as isize, f[2] as isize);
                    for ch in 0..patch.channels {
                        let s = &src_img[ch * np..(ch + 1) * np];
                        let mut v = 0.0;
                        for (di, wi) in [(0, 1.0 - t[0]), (1, t[0])] {
                            for (dj, wj) in [(0, 1.0 - t[1]), (1, t[1])] {
                                for (dk, wk) in [(0, 1.0 - t[2]), (1, t[2])] {
                                    v += wi * wj * wk * s[at(i0 + di, j0 + dj, k0 + dk)] as f64;
                                }
                            }
                        }
                        patch.image[ch * np + o] = v as f32;
                    }
                }
            }
        }
    }
    for ax in 0..3 {
        if cfg.p_flip[ax] > 0.0 && rng.gen_bool(cfg.p_flip[ax].min(1.0)) {
            let ro = repux_volume::Reorientation {
                from_shape: patch.shape,
                perm: [0, 1, 2],
                flip: std::array::from_fn(|a| a == ax),
            };
            patch.labels = ro.apply_data(&patch.labels);
            let mut img = Vec::with_capacity(patch.image.len());
            for ch in 0..patch.channels {
                img.extend(ro.apply_data(&patch.image[ch * np..(ch + 1) * np]));
            }
            patch.image = img;
        }
    }
    if cfg.p_intensity_scale > 0.0 && rng.gen_bool(cfg.p_intensity_scale.min(1.0)) {
        let s = 1.0 + rng.gen_range(-cfg.intensity_scale..=cfg.intensity_scale) as f32;
        patch.image.iter_mut().for_each(|v| *v *= s);
    }
    if cfg.p_shift > 0.0 && rng.gen_bool(cfg.p_shift.min(1.0)) {
        let s = rng.gen_range(-cfg.shift..=cfg.shift) as f32;
        patch.image.iter_mut().for_each(|v| *v += s);
    }
    if cfg.p_noise > 0.0 && rng.gen_bool(cfg.p_noise.min(1.0)) {
        let sigma = rng.gen_range(0.0..=cfg.noise_std.max(0.0));
        if let Ok(n) = Normal::new(0.0, sigma) {
            patch
                .image
                .iter_mut()
                .for_each(|v| *v += n.sample(rng) as f32);
        }
    }
    if cfg.p_gamma > 0.0 && rng.gen_bool(cfg.p_gamma.min(1.0)) {
        let g = rng.gen_range(cfg.gamma.0..=cfg.gamma.1.max(cfg.gamma.0));
        for ch in 0..patch.channels {
            let s = &mut patch.image[ch * np..(ch + 1) * np];
            let (lo, hi) = s
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let r = (hi - lo).max(1e-8);
            s.iter_mut()
                .for_each(|v| *v = (((*v - lo) / r) as f64).powf(g) as f32 * r + lo);
        }
    }
}
