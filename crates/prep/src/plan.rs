//! Dataset fingerprint → plans: nnU-Net's split. The fingerprint is what the data are; the plans
//! are plain JSON decisions derived from it (target spacing, normalisation, patch and batch size)
//! that every later step reads. Every field can be overridden ([`PlanOptions`]) or edited.

use crate::intensity::{percentile_sorted, Normalization};
use crate::pipeline::{PrepConfig, ResampleOptions};
use crate::Error;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use repux_volume::Dataset;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseFingerprint {
    pub id: String,
    /// Spacing and shape after reorientation to RAS.
    pub spacing: [f64; 3],
    pub shape: [usize; 3],
}

/// Foreground intensity statistics of one channel, from voxels sampled under the labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelFingerprint {
    pub channel: String,
    pub samples: usize,
    pub mean: f64,
    pub std: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub percentile_00_5: f64,
    pub percentile_99_5: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub cases: Vec<CaseFingerprint>,
    pub foreground: Vec<ChannelFingerprint>,
}

/// Foreground voxels sampled per case and channel (nnU-Net uses 10 000).
pub const SAMPLES_PER_CASE: usize = 10_000;

/// Reads every training case (in parallel) and measures spacings, shapes and foreground
/// intensities. Errors name the file.
pub fn fingerprint(ds: &Dataset, seed: u64) -> Result<Fingerprint, Error> {
    let per_case: Vec<(CaseFingerprint, Vec<Vec<f32>>)> = ds
        .training
        .par_iter()
        .enumerate()
        .map(|(idx, case)| -> Result<_, Error> {
            let image = crate::read_case_image(case)?;
            let label_path = case
                .label
                .as_ref()
                .ok_or_else(|| Error::Other(format!("case {}: no label file", case.id)))?;
            let label = repux_volume::read_volume(label_path)?;
            if label.geometry.shape != image.geometry.shape {
                return Err(Error::Case {
                    path: label_path.clone(),
                    problem: format!(
                        "label shape {:?} does not match image shape {:?}",
                        label.geometry.shape, image.geometry.shape
                    ),
                });
            }
            let ro = image
                .geometry
                .reorientation_to("RAS")
                .map_err(Error::Other)?;
            let g = ro.apply_geometry(&image.geometry);
            let n = image.geometry.voxels();
            let fg: Vec<usize> = (0..n).filter(|&i| label.data[i] > 0.0).collect();
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed ^ (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let picks: Vec<usize> = if fg.len() > SAMPLES_PER_CASE {
                fg.choose_multiple(&mut rng, SAMPLES_PER_CASE)
                    .copied()
                    .collect()
            } else {
                fg
            };
            let samples = (0..image.channels)
                .map(|c| {
                    picks
                        .iter()
                        .map(|&i| image.data[c * n + i])
                        .filter(|v| v.is_finite())
                        .collect()
                })
                .collect();
            Ok((
                CaseFingerprint {
                    id: case.id.clone(),
                    spacing: g.spacing,
                    shape: g.shape,
                },
                samples,
            ))
        })
        .collect::<Result<_, _>>()?;
    let channels = ds
        .channel_names
        .len()
        .max(per_case.first().map(|p| p.1.len()).unwrap_or(0));
    // Every case must bring every channel: a case short of one would leave that channel's
    // intensity statistics (and so its normalisation) to the other cases without a word.
    if let Some((case, samples)) = per_case.iter().find(|(_, s)| s.len() != channels) {
        return Err(Error::Other(format!(
            "case {}: {} image channel(s), but the dataset has {channels} ({})",
            case.id,
            samples.len(),
            if ds.channel_names.len() == channels {
                "channel_names"
            } else {
                "its other cases"
            }
        )));
    }
    let foreground = (0..channels)
        .map(|c| {
            let mut v: Vec<f32> = per_case
                .iter()
                .flat_map(|(_, s)| s[c].iter().copied())
                .collect();
            v.sort_unstable_by(|a, b| a.total_cmp(b));
            let n = v.len().max(1) as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            ChannelFingerprint {
                channel: ds
                    .channel_names
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| format!("channel{c}")),
                samples: v.len(),
                mean,
                std,
                median: percentile_sorted(&v, 50.0),
                min: v.first().map(|&x| x as f64).unwrap_or(0.0),
                max: v.last().map(|&x| x as f64).unwrap_or(0.0),
                percentile_00_5: percentile_sorted(&v, 0.5),
                percentile_99_5: percentile_sorted(&v, 99.5),
            }
        })
        .collect();
    Ok(Fingerprint {
        cases: per_case.into_iter().map(|(c, _)| c).collect(),
        foreground,
    })
}

/// One channel's normalisation, with the channel's name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelNormalization {
    pub channel: String,
    #[serde(flatten)]
    pub scheme: Normalization,
}

fn default_orientation() -> String {
    "RAS".into()
}

/// The plans file: pure data, produced once, read by preprocessing, training and inference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plans {
    pub dataset_name: String,
    pub channel_names: Vec<String>,
    /// Label name → value, background included.
    pub labels: BTreeMap<String, u32>,
    /// Target voxel size in mm along the RAS-reoriented (i, j, k) axes.
    pub target_spacing: [f64; 3],
    /// Training patch size, each side a multiple of the planned size multiple (16, or 32 for
    /// SwinUNETR).
    pub patch_size: [usize; 3],
    /// Crops per training step (the paper: 1 volume × 2 crops).
    pub batch_size: usize,
    pub normalization: Vec<ChannelNormalization>,
    #[serde(default = "default_orientation")]
    pub orientation: String,
    #[serde(flatten)]
    pub resampling: ResampleOptions,
    /// Fraction of training crops centred on a foreground voxel.
    pub foreground_fraction: f64,
    /// Median case shape at the target spacing (before cropping).
    pub median_shape: [usize; 3],
    pub fingerprint: Fingerprint,
}

/// User choices for [`make_plans`]; `None` means "derive it".
#[derive(Clone, Debug)]
pub struct PlanOptions {
    pub target_spacing: Option<[f64; 3]>,
    pub patch_size: [usize; 3],
    pub batch_size: usize,
    /// Use the paper's fixed HU window for CT channels instead of nnU-Net's CT scheme.
    pub ct_window: Option<(f64, f64)>,
    pub resampling: ResampleOptions,
    pub foreground_fraction: f64,
    /// Every patch side is a multiple of this: 16 for the UX-Nets, 32 for SwinUNETR.
    pub size_multiple: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            target_spacing: None,
            patch_size: [96; 3],
            batch_size: 2,
            ct_window: None,
            resampling: ResampleOptions::default(),
            foreground_fraction: 0.5,
            size_multiple: 16,
        }
    }
}

fn median_f64(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 1.0;
    }
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// nnU-Net's 3d_fullres target spacing: the per-axis median, except that an axis both much
/// coarser (> 3× the finest other median spacing) and with few voxels (3 × its median size <
/// the smallest other) takes the 10th percentile of its spacings, but never finer than the
/// other axes.
pub fn target_spacing(cases: &[CaseFingerprint]) -> [f64; 3] {
    let mut t = [0.0; 3];
    let mut size = [0.0; 3];
    for a in 0..3 {
        t[a] = median_f64(cases.iter().map(|c| c.spacing[a]).collect(), 50.0);
        size[a] = median_f64(cases.iter().map(|c| c.shape[a] as f64).collect(), 50.0);
    }
    let worst = (0..3).max_by(|&a, &b| t[a].total_cmp(&t[b])).unwrap_or(2);
    let others: Vec<usize> = (0..3).filter(|&a| a != worst).collect();
    let max_other = others.iter().map(|&a| t[a]).fold(f64::MIN, f64::max);
    let min_other_size = others.iter().map(|&a| size[a]).fold(f64::MAX, f64::min);
    if t[worst] > 3.0 * max_other && size[worst] * 3.0 < min_other_size {
        let mut p10 = median_f64(cases.iter().map(|c| c.spacing[worst]).collect(), 10.0);
        if p10 < max_other {
            p10 = max_other.max(p10) + 1e-5;
        }
        t[worst] = p10;
    }
    t
}

/// Derives plans from a fingerprint.
pub fn make_plans(ds: &Dataset, fp: Fingerprint, opt: &PlanOptions) -> Result<Plans, Error> {
    if fp.cases.is_empty() {
        return Err(Error::Other("no cases to plan from".into()));
    }
    let target = opt
        .target_spacing
        .unwrap_or_else(|| target_spacing(&fp.cases));
    if target.iter().any(|&t| !(t > 0.0 && t.is_finite())) {
        return Err(Error::Other(format!(
            "target spacing {target:?} must be positive"
        )));
    }
    let mut median_shape = [0usize; 3];
    for a in 0..3 {
        median_shape[a] = median_f64(
            fp.cases
                .iter()
                .map(|c| (c.shape[a] as f64 * c.spacing[a] / target[a]).round())
                .collect(),
            50.0,
        )
        .round() as usize;
    }
    let mut patch = [0usize; 3];
    let m = opt.size_multiple;
    if m == 0 {
        return Err(Error::Other("size multiple must be positive".into()));
    }
    for a in 0..3 {
        if opt.patch_size[a] == 0 || !opt.patch_size[a].is_multiple_of(m) {
            return Err(Error::Other(format!(
                "patch size {:?}: every side must be a positive multiple of {m}",
                opt.patch_size
            )));
        }
        // Shrink to fit small images: the largest multiple of m not above the median size.
        let fit = (median_shape[a] / m * m).max(m);
        patch[a] = opt.patch_size[a].min(fit);
    }
    let normalization = fp
        .foreground
        .iter()
        .map(|f| {
            let scheme = if f.channel.eq_ignore_ascii_case("ct") {
                match opt.ct_window {
                    Some((a_min, a_max)) => Normalization::Window { a_min, a_max },
                    None => Normalization::Ct {
                        lower: f.percentile_00_5,
                        upper: f.percentile_99_5,
                        mean: f.mean,
                        std: f.std,
                    },
                }
            } else {
                Normalization::ZScore {
                    mean: None,
                    std: None,
                }
            };
            ChannelNormalization {
                channel: f.channel.clone(),
                scheme,
            }
        })
        .collect();
    let labels = if ds.labels.is_empty() {
        // Paired folders declare none: use the label values seen in the data later; keep 0.
        BTreeMap::from([("background".to_string(), 0)])
    } else {
        ds.labels.iter().cloned().collect()
    };
    Ok(Plans {
        dataset_name: ds.name.clone(),
        channel_names: ds.channel_names.clone(),
        labels,
        target_spacing: target,
        patch_size: patch,
        batch_size: opt.batch_size.max(1),
        normalization,
        orientation: "RAS".into(),
        resampling: opt.resampling.clone(),
        foreground_fraction: opt.foreground_fraction.clamp(0.0, 1.0),
        median_shape,
        fingerprint: fp,
    })
}

impl Plans {
    pub fn prep_config(&self) -> PrepConfig {
        PrepConfig {
            target_spacing: self.target_spacing,
            normalization: self
                .normalization
                .iter()
                .map(|n| n.scheme.clone())
                .collect(),
            resampling: self.resampling.clone(),
        }
    }

    /// Number of classes (largest label value + 1).
    pub fn num_classes(&self) -> usize {
        self.labels.values().copied().max().unwrap_or(0) as usize + 1
    }

    pub fn load(path: &Path) -> Result<Plans, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| repux_volume::Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Case {
            path: path.to_path_buf(),
            problem: format!("invalid plans: {e}"),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), Error> {
        Ok(repux_volume::fs::write_json(path, self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(spacing: [f64; 3], shape: [usize; 3]) -> CaseFingerprint {
        CaseFingerprint {
            id: String::new(),
            spacing,
            shape,
        }
    }

    #[test]
    fn target_spacing_rules() {
        // Isotropic-ish: plain median.
        let t = target_spacing(&[
            c([1.0, 1.0, 1.5], [200, 200, 150]),
            c([0.8, 0.8, 1.0], [200, 200, 150]),
            c([0.9, 0.9, 2.0], [200, 200, 150]),
        ]);
        assert_eq!(t, [0.9, 0.9, 1.5]);
        // Anisotropic with few slices: 10th percentile of the coarse axis.
        let cases: Vec<_> = [4.0, 5.0, 5.0, 5.0, 3.2]
            .iter()
            .map(|&z| c([0.7, 0.7, z], [512, 512, 40]))
            .collect();
        let t = target_spacing(&cases);
        assert!(
            (t[2] - (3.2 + 0.1 * 4.0 * (4.0 - 3.2))).abs() < 1e-9,
            "{t:?}"
        );
    }
}
