//! Intensity normalisation schemes (pure data in the plans, applied per channel).

use serde::{Deserialize, Serialize};

/// How one channel's intensities are normalised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Normalization {
    /// nnU-Net's CT scheme: clip to `[lower, upper]` (the dataset's 0.5/99.5 foreground
    /// percentiles), then `(x − mean) / std` with the dataset's foreground mean and std.
    Ct {
        lower: f64,
        upper: f64,
        mean: f64,
        std: f64,
    },
    /// A fixed window `[a_min, a_max]` mapped to `[0, 1]` with clipping (the paper's HU window
    /// `[−125, 275]`).
    Window { a_min: f64, a_max: f64 },
    /// Z-score: with the given dataset statistics, or per image when they are absent.
    ZScore {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mean: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        std: Option<f64>,
    },
    /// Per-image percentile clipping: clip to the image's `[lower, upper]` percentiles (e.g.
    /// 0.5 and 99.5), then map that range to `[0, 1]`.
    PercentileClip { lower: f64, upper: f64 },
    /// Leave values as they are.
    None,
}

/// Percentile (0–100) of unsorted values, linear interpolation between order statistics as
/// numpy's default. Sorts a copy.
pub fn percentile(values: &[f32], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v: Vec<f32> = values.to_vec();
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    percentile_sorted(&v, q)
}

pub fn percentile_sorted(v: &[f32], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = (q / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let t = pos - lo as f64;
    v[lo] as f64 * (1.0 - t) + v[hi] as f64 * t
}

fn mean_std(x: &[f32]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

impl Normalization {
    /// Normalises one channel in place.
    pub fn apply(&self, x: &mut [f32]) {
        match *self {
            Normalization::Ct {
                lower,
                upper,
                mean,
                std,
            } => {
                let s = std.max(1e-8);
                x.iter_mut()
                    .for_each(|v| *v = ((((*v as f64).clamp(lower, upper)) - mean) / s) as f32);
            }
            Normalization::Window { a_min, a_max } => {
                let r = (a_max - a_min).max(1e-8);
                x.iter_mut()
                    .for_each(|v| *v = (((*v as f64 - a_min) / r).clamp(0.0, 1.0)) as f32);
            }
            Normalization::ZScore { mean, std } => {
                let (m, s) = match (mean, std) {
                    (Some(m), Some(s)) => (m, s),
                    _ => mean_std(x),
                };
                let s = s.max(1e-8);
                x.iter_mut().for_each(|v| *v = ((*v as f64 - m) / s) as f32);
            }
            Normalization::PercentileClip { lower, upper } => {
                let mut sorted = x.to_vec();
                sorted.sort_unstable_by(|a, b| a.total_cmp(b));
                let (lo, hi) = (
                    percentile_sorted(&sorted, lower),
                    percentile_sorted(&sorted, upper),
                );
                let r = (hi - lo).max(1e-8);
                x.iter_mut()
                    .for_each(|v| *v = (((*v as f64).clamp(lo, hi) - lo) / r) as f32);
            }
            Normalization::None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        let mut x = vec![-1000.0, -125.0, 75.0, 275.0, 2000.0];
        Normalization::Window {
            a_min: -125.0,
            a_max: 275.0,
        }
        .apply(&mut x);
        assert_eq!(x, vec![0.0, 0.0, 0.5, 1.0, 1.0]);
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        Normalization::ZScore {
            mean: None,
            std: None,
        }
        .apply(&mut x);
        let (m, s) = mean_std(&x);
        assert!(m.abs() < 1e-6 && (s - 1.0).abs() < 1e-6);
        let mut x = vec![-500.0, 0.0, 100.0, 900.0];
        Normalization::Ct {
            lower: -100.0,
            upper: 200.0,
            mean: 50.0,
            std: 50.0,
        }
        .apply(&mut x);
        assert_eq!(x, vec![-3.0, -1.0, 1.0, 3.0]);
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 50.0), 2.5);
        let mut x: Vec<f32> = (0..=100).map(|v| v as f32).collect();
        Normalization::PercentileClip {
            lower: 10.0,
            upper: 90.0,
        }
        .apply(&mut x);
        assert_eq!((x[0], x[50], x[100]), (0.0, 0.5, 1.0));
    }
}
