//! `Volume`: voxel data with its geometry. Layout C × D × H × W (channel first, last axis
//! fastest), spatial axes = the file's (i, j, k) voxel axes.

use crate::geometry::{Geometry, Reorientation};
use serde::Serialize;

/// Summary statistics of the scaled voxel values, accumulated in f64 while decoding (NaN
/// propagates as in numpy: one NaN makes every statistic NaN).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub sum: f64,
    /// Count of NaN and ±inf values.
    pub nonfinite: u64,
}

impl Stats {
    /// Statistics of f32 values (used where the f64 originals are gone, e.g. after a transform).
    pub fn of(values: &[f32]) -> Stats {
        let mut acc = StatsAcc::default();
        values.iter().for_each(|&v| acc.push(v as f64));
        acc.finish()
    }
}

/// Running min/max/sum; `push` is in the hot decode loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StatsAcc {
    min: f64,
    max: f64,
    sum: f64,
    n: u64,
    nan: bool,
    nonfinite: u64,
}

impl Default for StatsAcc {
    fn default() -> Self {
        StatsAcc {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            n: 0,
            nan: false,
            nonfinite: 0,
        }
    }
}

impl StatsAcc {
    #[inline]
    pub(crate) fn push(&mut self, v: f64) {
        if !v.is_finite() {
            self.nonfinite += 1;
            if v.is_nan() {
                self.nan = true;
                return;
            }
        }
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.n += 1;
    }
    pub(crate) fn merge(mut self, o: StatsAcc) -> StatsAcc {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.n += o.n;
        self.nan |= o.nan;
        self.nonfinite += o.nonfinite;
        self
    }
    pub(crate) fn finish(self) -> Stats {
        if self.nan {
            return Stats {
                min: f64::NAN,
                max: f64::NAN,
                mean: f64::NAN,
                sum: f64::NAN,
                nonfinite: self.nonfinite,
            };
        }
        if self.n == 0 {
            return Stats::default();
        }
        Stats {
            min: self.min,
            max: self.max,
            mean: self.sum / self.n as f64,
            sum: self.sum,
            nonfinite: self.nonfinite,
        }
    }
}

/// Voxel data plus geometry. `data.len() == channels * geometry.voxels()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub geometry: Geometry,
    pub channels: usize,
    /// C × D × H × W, scaled values (NIfTI `scl_slope`/`scl_inter` applied).
    pub data: Vec<f32>,
}

impl Volume {
    /// Panics if the data length does not match; callers construct from checked sizes.
    pub fn new(geometry: Geometry, channels: usize, data: Vec<f32>) -> Volume {
        assert_eq!(
            data.len(),
            channels * geometry.voxels(),
            "Volume::new: data length does not match geometry"
        );
        Volume {
            geometry,
            channels,
            data,
        }
    }

    pub fn shape(&self) -> [usize; 3] {
        self.geometry.shape
    }

    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.geometry.voxels();
        &self.data[c * n..(c + 1) * n]
    }

    /// Linear index of voxel (i, j, k) within one channel.
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        let [_, h, w] = self.geometry.shape;
        (i * h + j) * w + k
    }

    pub fn orientation(&self) -> String {
        self.geometry.orientation()
    }

    /// Exact reorientation (permutation and flips only) to `target`, e.g. `"RAS"`, with the
    /// record that undoes it.
    pub fn reorient(&self, target: &str) -> Result<(Volume, Reorientation), String> {
        let ro = self.geometry.reorientation_to(target)?;
        Ok((self.apply(&ro), ro))
    }

    /// This volume on grid `g`: itself when the grids agree, else reoriented onto it; see
    /// [`Geometry::reorientation_onto`], which checks a grid without the data.
    pub fn onto_grid(self, g: &Geometry, tol: f64) -> Result<Volume, String> {
        Ok(match self.geometry.reorientation_onto(g, tol)? {
            None => self,
            Some(ro) => self.apply(&ro),
        })
    }

    /// Applies a reorientation whose `from_shape` is this volume's shape.
    pub fn apply(&self, ro: &Reorientation) -> Volume {
        assert_eq!(
            ro.from_shape, self.geometry.shape,
            "reorientation made for another shape"
        );
        let geometry = ro.apply_geometry(&self.geometry);
        if ro.is_identity() {
            return Volume {
                geometry,
                channels: self.channels,
                data: self.data.clone(),
            };
        }
        let mut data = Vec::with_capacity(self.data.len());
        for c in 0..self.channels {
            data.extend(ro.apply_data(self.channel(c)));
        }
        Volume {
            geometry,
            channels: self.channels,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_follow_numpy_nan_rules() {
        let s = Stats::of(&[1.0, 2.0, 3.0]);
        assert_eq!(
            (s.min, s.max, s.mean, s.sum, s.nonfinite),
            (1.0, 3.0, 2.0, 6.0, 0)
        );
        let s = Stats::of(&[1.0, f32::NAN]);
        assert!(s.min.is_nan() && s.sum.is_nan());
        assert_eq!(s.nonfinite, 1);
        let s = Stats::of(&[1.0, f32::INFINITY]);
        assert_eq!(s.max, f64::INFINITY);
        assert_eq!(s.nonfinite, 1);
    }
}
