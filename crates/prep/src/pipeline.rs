//! The per-case preprocessing pipeline and its exact inverse.
//!
//! Forward: reorient to RAS → normalise intensities per channel → crop to the foreground bounding
//! box (+ margin) → resample to the target spacing. Each step's record goes into
//! [`InverseRecord`]; [`invert_labels`] / [`invert_probabilities`] undo them in reverse order and
//! return data on the exact native grid (shape and affine) of the original file.

use crate::intensity::Normalization;
use crate::resample::{
    resample, resample_labels, resampled_geometry, separate_z_axis, shape_for_spacing, Interp,
};
use repux_volume::{Geometry, Reorientation, Volume};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error("image has {0} NaN or infinite voxels")]
    NonFinite(u64),
    #[error("label map does not match the image: {0}")]
    LabelMismatch(String),
    #[error("{0}")]
    Config(String),
}

/// Label resampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelInterp {
    Nearest,
    OneHotLinear,
}

/// When to resample the low-resolution axis separately (nnU-Net).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeparateZ {
    /// If max/min spacing exceeds the anisotropy threshold: in-plane with the image order,
    /// along the coarse axis nearest neighbour.
    Auto,
    Never,
}

/// How a case is cropped and resampled: the plans' choices besides target spacing and
/// normalisation. Flattened into [`PrepConfig`] and the plans, so JSON keeps flat keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResampleOptions {
    pub image_interpolation: Interp,
    pub label_interpolation: LabelInterp,
    pub separate_z: SeparateZ,
    pub anisotropy_threshold: f64,
    pub crop_to_foreground: bool,
    /// Voxels added around the foreground box on each side (native resolution).
    pub crop_margin: usize,
}

impl Default for ResampleOptions {
    /// nnU-Net's: cubic images, one-hot-linear labels, separate z beyond 3× anisotropy; crop to the
    /// foreground with a 2-voxel margin.
    fn default() -> Self {
        ResampleOptions {
            image_interpolation: Interp::Cubic,
            label_interpolation: LabelInterp::OneHotLinear,
            separate_z: SeparateZ::Auto,
            anisotropy_threshold: 3.0,
            crop_to_foreground: true,
            crop_margin: 2,
        }
    }
}

/// What the pipeline needs from the plans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrepConfig {
    pub target_spacing: [f64; 3],
    pub normalization: Vec<Normalization>,
    #[serde(flatten)]
    pub resampling: ResampleOptions,
}

/// A crop `[start, end)` of a grid of `shape`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crop {
    pub shape: [usize; 3],
    pub start: [usize; 3],
    pub end: [usize; 3],
}

impl Crop {
    pub fn out_shape(&self) -> [usize; 3] {
        [
            self.end[0] - self.start[0],
            self.end[1] - self.start[1],
            self.end[2] - self.start[2],
        ]
    }
    pub fn is_identity(&self) -> bool {
        self.start == [0; 3] && self.end == self.shape
    }
    /// Cuts one channel.
    pub fn apply(&self, data: &[f32]) -> Vec<f32> {
        let [_, h, w] = self.shape;
        let o = self.out_shape();
        let mut out = Vec::with_capacity(o.iter().product());
        for i in self.start[0]..self.end[0] {
            for j in self.start[1]..self.end[1] {
                let b = (i * h + j) * w;
                out.extend_from_slice(&data[b + self.start[2]..b + self.end[2]]);
            }
        }
        out
    }
    /// Puts one channel back into the full grid, `fill` elsewhere.
    pub fn undo(&self, data: &[f32], fill: f32) -> Vec<f32> {
        let [_, h, w] = self.shape;
        let o = self.out_shape();
        let mut out = vec![fill; self.shape.iter().product()];
        for (a, i) in (self.start[0]..self.end[0]).enumerate() {
            for (b, j) in (self.start[1]..self.end[1]).enumerate() {
                let src = &data[(a * o[1] + b) * o[2]..(a * o[1] + b + 1) * o[2]];
                let d = (i * h + j) * w + self.start[2];
                out[d..d + o[2]].copy_from_slice(src);
            }
        }
        out
    }
    /// Geometry of the cropped grid (origin moves to the first kept voxel).
    pub fn apply_geometry(&self, g: &Geometry) -> Geometry {
        let w = g.world([
            self.start[0] as f64,
            self.start[1] as f64,
            self.start[2] as f64,
        ]);
        let mut a = g.affine;
        for r in 0..3 {
            a[r][3] = w[r];
        }
        Geometry {
            shape: self.out_shape(),
            spacing: g.spacing,
            affine: a,
        }
    }
}

/// Bounding box of voxels where `keep(i)` holds, grown by `margin`, clipped to the grid; the
/// whole grid when nothing is kept.
pub fn bounding_box(shape: [usize; 3], margin: usize, keep: impl Fn(usize) -> bool) -> Crop {
    let [d, h, w] = shape;
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for i in 0..d {
        for j in 0..h {
            for k in 0..w {
                if keep((i * h + j) * w + k) {
                    let p = [i, j, k];
                    for a in 0..3 {
                        lo[a] = lo[a].min(p[a]);
                        hi[a] = hi[a].max(p[a] + 1);
                    }
                }
            }
        }
    }
    if lo[0] == usize::MAX {
        return Crop {
            shape,
            start: [0; 3],
            end: shape,
        };
    }
    let mut start = [0; 3];
    let mut end = [0; 3];
    for a in 0..3 {
        start[a] = lo[a].saturating_sub(margin);
        end[a] = (hi[a] + margin).min(shape[a]);
    }
    Crop { shape, start, end }
}

/// Everything needed to map preprocessed-grid data back to the native grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InverseRecord {
    /// The original file's grid.
    pub native: Geometry,
    /// Native → RAS.
    pub reorientation: Reorientation,
    /// Crop of the RAS grid.
    pub crop: Crop,
    /// Shape after resampling (= the preprocessed shape).
    pub resampled_shape: [usize; 3],
    /// Grid of the preprocessed data (world positions of its voxels).
    pub geometry: Geometry,
}

/// A preprocessed case: image (C × D × H × W), optional labels, and the inverse record.
#[derive(Clone, Debug)]
pub struct Preprocessed {
    pub image: Volume,
    pub labels: Option<Vec<f32>>,
    pub record: InverseRecord,
}

/// Per-axis interpolation for one resampling, with nnU-Net's separate-z rule.
pub fn axis_interp(cfg: &PrepConfig, spacing: [f64; 3], order: Interp) -> [Interp; 3] {
    let mut it = [order; 3];
    if cfg.resampling.separate_z == SeparateZ::Auto {
        if let Some(ax) = separate_z_axis(
            spacing,
            cfg.target_spacing,
            cfg.resampling.anisotropy_threshold,
        ) {
            it[ax] = Interp::Nearest;
        }
    }
    it
}

/// Runs the forward pipeline on one case.
pub fn preprocess(
    image: &Volume,
    labels: Option<&Volume>,
    cfg: &PrepConfig,
) -> Result<Preprocessed, PrepError> {
    if cfg.normalization.len() != image.channels {
        return Err(PrepError::Config(format!(
            "plans normalise {} channels, the image has {}",
            cfg.normalization.len(),
            image.channels
        )));
    }
    let bad = image.data.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(PrepError::NonFinite(bad as u64));
    }
    // A label stored in another axis order over the same voxels is reoriented onto the image.
    let reoriented: Option<Volume> = match labels {
        Some(l) => l
            .geometry
            .reorientation_onto(&image.geometry, repux_volume::dataset::GEOMETRY_TOLERANCE)
            .map_err(|e| PrepError::LabelMismatch(format!("label: {e}")))?
            .map(|ro| l.apply(&ro)),
        None => None,
    };
    let labels = reoriented.as_ref().or(labels);
    let (ras, ro) = image.reorient("RAS").map_err(PrepError::Config)?;
    let ras_labels = labels.map(|l| ro.apply_data(&l.data[..l.geometry.voxels()]));
    let n = ras.geometry.voxels();
    let mut data = ras.data;
    for (c, norm) in cfg.normalization.iter().enumerate() {
        norm.apply(&mut data[c * n..(c + 1) * n]);
    }
    // Foreground: anything above channel 0's floor (air after CT clipping/windowing), plus labels.
    let crop = if cfg.resampling.crop_to_foreground {
        let ch0 = &data[..n];
        let floor = ch0.iter().cloned().fold(f32::INFINITY, f32::min);
        let lab = ras_labels.as_deref();
        bounding_box(ras.geometry.shape, cfg.resampling.crop_margin, |i| {
            ch0[i] > floor + 1e-6 || lab.is_some_and(|l| l[i] > 0.0)
        })
    } else {
        Crop {
            shape: ras.geometry.shape,
            start: [0; 3],
            end: ras.geometry.shape,
        }
    };
    let cropped_geom = crop.apply_geometry(&ras.geometry);
    let out_shape = shape_for_spacing(cropped_geom.shape, cropped_geom.spacing, cfg.target_spacing);
    let img_interp = axis_interp(
        cfg,
        cropped_geom.spacing,
        cfg.resampling.image_interpolation,
    );
    let lab_interp = axis_interp(cfg, cropped_geom.spacing, Interp::Linear);
    let mut out = Vec::with_capacity(out_shape.iter().product::<usize>() * image.channels);
    for c in 0..image.channels {
        let cut = crop.apply(&data[c * n..(c + 1) * n]);
        out.extend(resample(&cut, cropped_geom.shape, out_shape, img_interp));
    }
    let labels_out = ras_labels.map(|l| {
        resample_labels(
            &crop.apply(&l),
            cropped_geom.shape,
            out_shape,
            cfg.resampling.label_interpolation == LabelInterp::OneHotLinear,
            lab_interp,
        )
    });
    let geometry = resampled_geometry(&cropped_geom, out_shape);
    let record = InverseRecord {
        native: image.geometry.clone(),
        reorientation: ro,
        crop,
        resampled_shape: out_shape,
        geometry: geometry.clone(),
    };
    Ok(Preprocessed {
        image: Volume::new(geometry, image.channels, out),
        labels: labels_out,
        record,
    })
}

/// Maps a label map on the preprocessed grid back to the native grid (nearest neighbour,
/// background outside the crop). The result lies exactly on `record.native`.
pub fn invert_labels(labels: &[f32], record: &InverseRecord) -> Vec<f32> {
    let cs = record.crop.out_shape();
    let back = resample(labels, record.resampled_shape, cs, [Interp::Nearest; 3]);
    let full = record.crop.undo(&back, 0.0);
    record.reorientation.inverse().apply_data(&full)
}

/// Maps one channel of continuous values (a class probability) on the preprocessed grid back to
/// the native grid: linear resampling, `fill` outside the crop.
pub fn invert_channel(values: &[f32], record: &InverseRecord, fill: f32) -> Vec<f32> {
    let back = resample(
        values,
        record.resampled_shape,
        record.crop.out_shape(),
        [Interp::Linear; 3],
    );
    record
        .reorientation
        .inverse()
        .apply_data(&record.crop.undo(&back, fill))
}

/// Maps per-class probabilities (C × preprocessed grid) back to the native grid: linear
/// resampling per class, background probability 1 outside the crop.
pub fn invert_probabilities(probs: &[f32], classes: usize, record: &InverseRecord) -> Vec<f32> {
    let n: usize = record.resampled_shape.iter().product();
    let mut out = Vec::with_capacity(classes * record.native.voxels());
    for c in 0..classes {
        out.extend(invert_channel(
            &probs[c * n..(c + 1) * n],
            record,
            if c == 0 { 1.0 } else { 0.0 },
        ));
    }
    out
}
