//! The synthetic abdominal CT phantom: the embedded default dataset of the demo and the tests.
//!
//! Each case is built in a patient frame (RAS+, mm, origin at the body centre) and sampled on its
//! own grid: in-plane spacing 0.6–1.0 mm, slices 1.5–5 mm, RAS or LPS affine, varied shape.
//! Anatomy: air, a body ellipse with subcutaneous fat, a muscle wall, visceral fat, bowel loops,
//! spine and aorta (unlabelled), and four labelled organs with random smooth shapes — liver (1),
//! spleen (2), kidneys (3, both sides) and a thin, tapering pancreas-like tube (4).
//!
//! The task needs real learning: organ, bowel and muscle intensities overlap (they are drawn per
//! case from overlapping ranges, 15–75 HU), noise is 8–20 HU and a smooth bias field shifts
//! intensities by up to ±15 HU, so intensity alone cannot separate the organs; position, shape
//! and context must. The pancreas is 3.5–6 mm in radius, one to a few slices thick at 5 mm.
//!
//! Determinism: a case depends only on (seed, case index); noise is drawn per slab from a
//! generator seeded by (case seed, slab), so thread scheduling never changes a voxel.

use crate::error::{Error, Result};
use crate::geometry::{Affine, Geometry};
use crate::nifti::{write_labels, write_nifti, DataType};
use crate::volume::Volume;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use std::path::Path;

/// Label names and values written to `dataset.json`.
pub const LABELS: [(&str, u32); 5] = [
    ("background", 0),
    ("liver", 1),
    ("spleen", 2),
    ("kidneys", 3),
    ("pancreas", 4),
];

/// A star-shaped blob: ellipsoid with radius modulated by smooth functions of the direction.
#[derive(Clone, Debug)]
struct Blob {
    centre: [f64; 3],
    radii: [f64; 3],
    /// Rotation about z (cos, sin).
    rot: (f64, f64),
    /// Direction-dependent radius modulation: (frequency vector, phase, amplitude).
    waves: Vec<([f64; 3], f64, f64)>,
    /// Conservative axis-aligned bounding box in the patient frame.
    lo: [f64; 3],
    hi: [f64; 3],
}

impl Blob {
    fn new(centre: [f64; 3], radii: [f64; 3], wobble: f64, rng: &mut ChaCha8Rng) -> Blob {
        let t: f64 = rng.gen_range(-0.5..0.5);
        let waves = (0..5)
            .map(|_| {
                let f = [
                    rng.gen_range(-4.0..4.0),
                    rng.gen_range(-4.0..4.0),
                    rng.gen_range(-3.0..3.0),
                ];
                (
                    f,
                    rng.gen_range(0.0..std::f64::consts::TAU),
                    rng.gen_range(0.0..wobble),
                )
            })
            .collect::<Vec<_>>();
        let grow = 1.0 + waves.iter().map(|w| w.2).sum::<f64>();
        let rmax = radii.iter().cloned().fold(0.0, f64::max) * grow;
        let lo = [
            centre[0] - rmax,
            centre[1] - rmax,
            centre[2] - radii[2] * grow,
        ];
        let hi = [
            centre[0] + rmax,
            centre[1] + rmax,
            centre[2] + radii[2] * grow,
        ];
        Blob {
            centre,
            radii,
            rot: (t.cos(), t.sin()),
            waves,
            lo,
            hi,
        }
    }

    #[inline]
    fn contains(&self, p: [f64; 3]) -> bool {
        if (0..3).any(|a| p[a] < self.lo[a] || p[a] > self.hi[a]) {
            return false;
        }
        let d = [
            p[0] - self.centre[0],
            p[1] - self.centre[1],
            p[2] - self.centre[2],
        ];
        let (c, s) = self.rot;
        let q = [
            (c * d[0] + s * d[1]) / self.radii[0],
            (-s * d[0] + c * d[1]) / self.radii[1],
            d[2] / self.radii[2],
        ];
        let rho = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt();
        if rho < 1e-9 {
            return true;
        }
        let u = [q[0] / rho, q[1] / rho, q[2] / rho];
        let thr = 1.0
            + self
                .waves
                .iter()
                .map(|(f, ph, a)| a * (f[0] * u[0] + f[1] * u[1] + f[2] * u[2] + ph).sin())
                .sum::<f64>();
        rho < thr
    }
}

/// A tube of varying radius along a quadratic Bézier curve (the pancreas).
#[derive(Clone, Debug)]
struct Tube {
    /// Polyline samples of the centre line, with the radius at each.
    pts: Vec<([f64; 3], f64)>,
    lo: [f64; 3],
    hi: [f64; 3],
}

impl Tube {
    fn new(p0: [f64; 3], p1: [f64; 3], p2: [f64; 3], r_head: f64, r_tail: f64) -> Tube {
        let n = 40;
        let pts: Vec<([f64; 3], f64)> = (0..=n)
            .map(|i| {
                let t = i as f64 / n as f64;
                let b = |a: usize| {
                    (1.0 - t) * (1.0 - t) * p0[a] + 2.0 * (1.0 - t) * t * p1[a] + t * t * p2[a]
                };
                ([b(0), b(1), b(2)], r_head + (r_tail - r_head) * t)
            })
            .collect();
        let r = r_head.max(r_tail);
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        for (p, _) in &pts {
            for a in 0..3 {
                lo[a] = lo[a].min(p[a] - r);
                hi[a] = hi[a].max(p[a] + r);
            }
        }
        Tube { pts, lo, hi }
    }

    #[inline]
    fn contains(&self, p: [f64; 3]) -> bool {
        if (0..3).any(|a| p[a] < self.lo[a] || p[a] > self.hi[a]) {
            return false;
        }
        self.pts.windows(2).any(|w| {
            let (a, ra) = w[0];
            let (b, rb) = w[1];
            let ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
            let ap = [p[0] - a[0], p[1] - a[1], p[2] - a[2]];
            let l2 = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2];
            let t = if l2 > 0.0 {
                ((ap[0] * ab[0] + ap[1] * ab[1] + ap[2] * ab[2]) / l2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let d = [ap[0] - t * ab[0], ap[1] - t * ab[1], ap[2] - t * ab[2]];
            let r = ra + t * (rb - ra);
            d[0] * d[0] + d[1] * d[1] + d[2] * d[2] < r * r
        })
    }
}

/// Everything random about one case's anatomy and appearance, drawn before sampling.
struct Anatomy {
    /// Body ellipse semi-axes (x, y) in mm; skin-to-muscle fat thickness; muscle thickness.
    body: (f64, f64),
    fat: f64,
    muscle: f64,
    liver: Blob,
    spleen: Blob,
    kidneys: [Blob; 2],
    pancreas: Tube,
    bowel: Vec<(Blob, bool)>,
    stomach: Blob,
    gallbladder: Blob,
    spine: ([f64; 2], f64),
    aorta: ([f64; 2], f64),
    /// HU per tissue: fat, muscle, visceral fat, liver, spleen, kidney, pancreas, bowel, bone, aorta,
    /// bile.
    hu: [f64; 11],
    noise: f64,
    /// Bias field: (frequency vector in rad/mm, phase, amplitude in HU).
    bias: Vec<([f64; 3], f64, f64)>,
}

impl Anatomy {
    fn draw(rng: &mut ChaCha8Rng, half_z: f64) -> Anatomy {
        let a = rng.gen_range(55.0..70.0);
        let b = rng.gen_range(40.0..52.0);
        let j = |rng: &mut ChaCha8Rng, s: f64| rng.gen_range(-s..s);
        let liver = Blob::new(
            [
                0.42 * a + j(rng, 4.0),
                0.1 * b + j(rng, 4.0),
                0.25 * half_z + j(rng, 6.0),
            ],
            [0.36 * a, 0.52 * b, 0.5 * half_z],
            0.07,
            rng,
        );
        let spleen = Blob::new(
            [
                -0.56 * a + j(rng, 3.0),
                -0.25 * b + j(rng, 3.0),
                0.3 * half_z + j(rng, 5.0),
            ],
            [0.15 * a, 0.24 * b, 0.28 * half_z],
            0.06,
            rng,
        );
        let kz = -0.1 * half_z + j(rng, 5.0);
        let kidneys = [
            Blob::new(
                [
                    0.38 * a + j(rng, 2.0),
                    -0.5 * b + j(rng, 2.0),
                    kz + j(rng, 4.0),
                ],
                [0.11 * a, 0.15 * b, 0.3 * half_z],
                0.04,
                rng,
            ),
            Blob::new(
                [
                    -0.38 * a + j(rng, 2.0),
                    -0.5 * b + j(rng, 2.0),
                    kz + j(rng, 4.0),
                ],
                [0.11 * a, 0.15 * b, 0.3 * half_z],
                0.04,
                rng,
            ),
        ];
        let pz = 0.02 * half_z + j(rng, 5.0);
        let pancreas = Tube::new(
            [
                0.2 * a + j(rng, 3.0),
                -0.05 * b + j(rng, 3.0),
                pz - rng.gen_range(0.0..6.0),
            ],
            [-0.05 * a + j(rng, 4.0), -0.2 * b + j(rng, 4.0), pz],
            [
                -0.45 * a + j(rng, 3.0),
                -0.3 * b + j(rng, 3.0),
                pz + rng.gen_range(0.0..10.0),
            ],
            rng.gen_range(4.5..6.0),
            rng.gen_range(3.5..4.5),
        );
        // Soft-tissue distractors touching the organs: a stomach beside the spleen, a gallbladder
        // notch in the liver, bowel loops everywhere in front of the kidneys.
        let stomach = Blob::new(
            [
                -0.3 * a + j(rng, 4.0),
                0.15 * b + j(rng, 4.0),
                0.35 * half_z + j(rng, 5.0),
            ],
            [0.2 * a, 0.25 * b, 0.3 * half_z],
            0.08,
            rng,
        );
        let gallbladder = Blob::new(
            [
                0.3 * a + j(rng, 3.0),
                0.35 * b + j(rng, 3.0),
                0.05 * half_z + j(rng, 4.0),
            ],
            [0.08 * a, 0.1 * b, 0.15 * half_z],
            0.05,
            rng,
        );
        let bowel = (0..rng.gen_range(10..18))
            .map(|_| {
                let c = [
                    rng.gen_range(-0.6..0.6) * a,
                    rng.gen_range(-0.3..0.75) * b,
                    rng.gen_range(-0.9..0.6) * half_z,
                ];
                let r = rng.gen_range(6.0..12.0);
                let gas = rng.gen_bool(0.25);
                (
                    Blob::new(
                        c,
                        [r, r * rng.gen_range(0.7..1.3), r * rng.gen_range(1.0..2.0)],
                        0.15,
                        rng,
                    ),
                    gas,
                )
            })
            .collect();
        let hu = [
            rng.gen_range(-120.0..-80.0), // subcutaneous fat
            rng.gen_range(35.0..60.0),    // muscle
            rng.gen_range(-110.0..-70.0), // visceral fat
            rng.gen_range(45.0..72.0),    // liver
            rng.gen_range(40.0..65.0),    // spleen
            rng.gen_range(25.0..55.0),    // kidney
            rng.gen_range(30.0..55.0),    // pancreas
            rng.gen_range(15.0..55.0),    // bowel wall/content
            rng.gen_range(350.0..700.0),  // bone
            rng.gen_range(120.0..220.0),  // aorta (contrast)
            rng.gen_range(0.0..20.0),     // gallbladder (bile)
        ];
        let bias = (0..3)
            .map(|_| {
                let f = [
                    rng.gen_range(-0.02..0.02),
                    rng.gen_range(-0.02..0.02),
                    rng.gen_range(-0.01..0.01),
                ];
                (
                    f,
                    rng.gen_range(0.0..std::f64::consts::TAU),
                    rng.gen_range(0.0..5.0),
                )
            })
            .collect();
        Anatomy {
            body: (a, b),
            fat: rng.gen_range(0.08..0.16),
            muscle: rng.gen_range(4.0..7.0),
            liver,
            spleen,
            kidneys,
            pancreas,
            bowel,
            stomach,
            gallbladder,
            spine: ([j(rng, 2.0), -0.72 * b], 0.16 * a),
            aorta: ([0.1 * a + j(rng, 2.0), -0.45 * b + j(rng, 2.0)], 0.075 * a),
            hu,
            noise: rng.gen_range(8.0..20.0),
            bias,
        }
    }

    /// (HU before noise, label) at patient-frame point p.
    #[inline]
    fn at(&self, p: [f64; 3]) -> (f64, u8) {
        let (a, b) = self.body;
        let e = (p[0] / a).powi(2) + (p[1] / b).powi(2);
        if e > 1.0 {
            return (-1000.0, 0);
        }
        let bias: f64 = self
            .bias
            .iter()
            .map(|(f, ph, amp)| amp * (f[0] * p[0] + f[1] * p[1] + f[2] * p[2] + ph).sin())
            .sum();
        let r = e.sqrt();
        let inner = 1.0 - self.fat;
        let muscle_in = inner - self.muscle / a;
        let h = &self.hu;
        let (hu, lab) = if r > inner {
            (h[0], 0)
        } else if r > muscle_in {
            (h[1], 0)
        } else if self.gallbladder.contains(p) {
            (h[10], 0)
        } else if self.pancreas.contains(p) {
            (h[6], 4)
        } else if self.liver.contains(p) {
            (h[3], 1)
        } else if self.spleen.contains(p) {
            (h[4], 2)
        } else if self.kidneys.iter().any(|k| k.contains(p)) {
            (h[5], 3)
        } else if ((p[0] - self.spine.0[0]).powi(2) + (p[1] - self.spine.0[1]).powi(2)).sqrt()
            < self.spine.1
        {
            (h[8], 0)
        } else if ((p[0] - self.aorta.0[0]).powi(2) + (p[1] - self.aorta.0[1]).powi(2)).sqrt()
            < self.aorta.1
        {
            (h[9], 0)
        } else if self.stomach.contains(p) {
            (h[7] - 10.0, 0)
        } else if let Some((_, gas)) = self.bowel.iter().find(|(bl, _)| bl.contains(p)) {
            (if *gas { -850.0 } else { h[7] }, 0)
        } else {
            (h[2], 0)
        };
        (hu + bias, lab)
    }
}

/// One generated case: the CT image (HU) and its label map, on the same grid.
pub struct SynthCase {
    pub image: Volume,
    pub labels: Vec<f32>,
}

fn case_seed(seed: u64, index: usize) -> u64 {
    // SplitMix64 of (seed, index): independent streams per case.
    let mut z = seed
        ^ (index as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Generates case `index` of the dataset with seed `seed`.
pub fn generate_case(seed: u64, index: usize) -> SynthCase {
    let cs = case_seed(seed, index);
    let mut rng = ChaCha8Rng::seed_from_u64(cs);
    let sxy = rng.gen_range(0.6..1.0);
    let sz = rng.gen_range(1.5..5.0);
    let half_z = rng.gen_range(45.0..60.0);
    let anat = Anatomy::draw(&mut rng, half_z);
    let (a, b) = anat.body;
    let margin = rng.gen_range(4.0..12.0);
    let fov = [
        2.0 * a + 2.0 * margin,
        2.0 * b + 2.0 * margin,
        2.0 * half_z * rng.gen_range(0.8..1.0),
    ];
    let shape = [
        (fov[0] / sxy).ceil() as usize,
        (fov[1] / sxy).ceil() as usize,
        (fov[2] / sz).ceil() as usize,
    ];
    let lps = rng.gen_bool(0.5);
    let sign = if lps { -1.0 } else { 1.0 };
    let shift = [
        rng.gen_range(-8.0..8.0),
        rng.gen_range(-8.0..8.0),
        rng.gen_range(-200.0..200.0),
    ];
    // Grid centre sits at world `shift`; the patient frame is world − shift (+ a small offset).
    let mut affine: Affine = [[0.0; 4]; 4];
    let dirs = [sign * sxy, sign * sxy, sz];
    for ax in 0..3 {
        affine[ax][ax] = dirs[ax];
        affine[ax][3] = shift[ax] - dirs[ax] * (shape[ax] as f64 - 1.0) / 2.0;
    }
    affine[3][3] = 1.0;
    let geometry = Geometry::from_affine(shape, affine);
    let offset = [
        rng.gen_range(-3.0..3.0),
        rng.gen_range(-3.0..3.0),
        rng.gen_range(-3.0..3.0),
    ];
    let noise = Normal::new(0.0, anat.noise)
        .unwrap_or_else(|_| Normal::new(0.0, 10.0).expect("constant sigma"));
    let [nx, ny, nz] = shape;
    let slab = ny * nz;
    let mut image = vec![0f32; nx * slab];
    let mut labels = vec![0f32; nx * slab];
    image
        .par_chunks_mut(slab)
        .zip(labels.par_chunks_mut(slab))
        .enumerate()
        .for_each(|(i, (img, lab))| {
            let mut r =
                ChaCha8Rng::seed_from_u64(cs ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
            for jj in 0..ny {
                for k in 0..nz {
                    let w = geometry.world([i as f64, jj as f64, k as f64]);
                    let p = [
                        w[0] - shift[0] + offset[0],
                        w[1] - shift[1] + offset[1],
                        w[2] - shift[2] + offset[2],
                    ];
                    let (hu, l) = anat.at(p);
                    let v = (hu + noise.sample(&mut r)).clamp(-1024.0, 3071.0);
                    img[jj * nz + k] = v.round() as f32;
                    lab[jj * nz + k] = l as f32;
                }
            }
        });
    SynthCase {
        image: Volume::new(geometry, 1, image),
        labels,
    }
}

/// Name of case `index` in a synthesised dataset.
pub fn case_name(index: usize) -> String {
    format!("phantom_{index:03}")
}

/// Writes `cases` phantom cases as an nnU-Net v2 raw dataset in `out` (imagesTr, labelsTr,
/// dataset.json). Images are int16 HU, labels uint8. `dataset.json` is written last, so an
/// interrupted run never looks like a complete dataset.
pub fn write_dataset(
    out: &Path,
    cases: usize,
    seed: u64,
    mut progress: impl FnMut(usize),
) -> Result<()> {
    if cases == 0 {
        return Err(Error::invalid(out, "--cases must be at least 1"));
    }
    let img_dir = out.join("imagesTr");
    let lab_dir = out.join("labelsTr");
    for d in [&img_dir, &lab_dir] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    for i in 0..cases {
        let c = generate_case(seed, i);
        let name = case_name(i);
        write_nifti(
            &img_dir.join(format!("{name}_0000.nii.gz")),
            &c.image.geometry,
            1,
            &c.image.data,
            DataType::I16,
        )?;
        write_labels(
            &lab_dir.join(format!("{name}.nii.gz")),
            &c.image.geometry,
            &c.labels,
            LABELS.len() as u32 - 1,
        )?;
        progress(i + 1);
    }
    let labels: serde_json::Map<String, serde_json::Value> = LABELS
        .iter()
        .map(|(n, v)| (n.to_string(), (*v).into()))
        .collect();
    let json = serde_json::json!({
        "name": "Phantom",
        "description": format!("repux synthetic abdominal CT phantom, seed {seed}"),
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": cases,
        "file_ending": ".nii.gz",
    });
    let jp = out.join("dataset.json");
    crate::fs::write_json(&jp, &json)
}

/// Writes held-out test cases `first..first + count` (the same generator, indices disjoint from
/// the training cases `0..numTraining`) into `out/imagesTs` and `out/labelsTs`.
pub fn write_test_cases(
    out: &Path,
    first: usize,
    count: usize,
    seed: u64,
    mut progress: impl FnMut(usize),
) -> Result<()> {
    let img_dir = out.join("imagesTs");
    let lab_dir = out.join("labelsTs");
    for d in [&img_dir, &lab_dir] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    for (n, i) in (first..first + count).enumerate() {
        let c = generate_case(seed, i);
        let name = case_name(i);
        write_nifti(
            &img_dir.join(format!("{name}_0000.nii.gz")),
            &c.image.geometry,
            1,
            &c.image.data,
            DataType::I16,
        )?;
        write_labels(
            &lab_dir.join(format!("{name}.nii.gz")),
            &c.image.geometry,
            &c.labels,
            LABELS.len() as u32 - 1,
        )?;
        progress(n + 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let a = generate_case(7, 0);
        let b = generate_case(7, 0);
        assert_eq!(a.image.data, b.image.data);
        assert_eq!(a.labels, b.labels);
        let c = generate_case(7, 1);
        assert_ne!(a.image.geometry.shape, c.image.geometry.shape);
    }

    #[test]
    fn every_organ_present_with_overlapping_intensities() {
        for i in 0..4 {
            let c = generate_case(11, i);
            let g = &c.image.geometry;
            assert!(
                g.spacing[0] >= 0.6
                    && g.spacing[0] <= 1.0
                    && g.spacing[2] >= 1.5
                    && g.spacing[2] <= 5.0
            );
            let mut count = [0usize; 5];
            let mut sum = [0f64; 5];
            for (v, l) in c.image.data.iter().zip(&c.labels) {
                count[*l as usize] += 1;
                sum[*l as usize] += *v as f64;
            }
            for (l, &n) in count.iter().enumerate().skip(1) {
                assert!(n > 50, "case {i}: label {l} has only {n} voxels");
            }
            // The thin organ is much smaller than the liver.
            assert!(count[4] * 10 < count[1]);
            let mean: Vec<f64> = (1..5).map(|l| sum[l] / count[l] as f64).collect();
            // Organ means lie within 50 HU of each other: intensity alone cannot separate them.
            let (lo, hi) = mean
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &m| (a.min(m), b.max(m)));
            assert!(hi - lo < 50.0, "case {i}: organ means {mean:?}");
        }
    }
}
