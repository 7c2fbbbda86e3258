//! 2-D slices of RAS-reoriented volumes as people read them: radiological convention (patient
//! right on the viewer's left, anterior and superior up), square pixels in millimetres (nearest
//! neighbour along coarse axes), gray from a display window, labels blended in colour.

use plotters::style::RGBColor;
use repux_volume::{Error, Geometry, Result, Volume};
use std::path::Path;

/// The three orthogonal planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plane {
    Axial,
    Coronal,
    Sagittal,
}

impl Plane {
    pub(crate) const ALL: [Plane; 3] = [Plane::Axial, Plane::Coronal, Plane::Sagittal];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Coronal => "coronal",
            Plane::Sagittal => "sagittal",
        }
    }

    /// Patient directions at the (left, right, top, bottom) edges of the picture.
    pub(crate) fn edges(self) -> [&'static str; 4] {
        match self {
            Plane::Axial => ["R", "L", "A", "P"],
            Plane::Coronal => ["R", "L", "S", "I"],
            Plane::Sagittal => ["P", "A", "S", "I"],
        }
    }
}

/// A volume's grid after `Volume::reorient("RAS")`: voxel (i, j, k) at `(i·h + j)·w + k`, the
/// axes pointing to the patient's right, anterior and superior.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RasGrid {
    pub shape: [usize; 3],
    pub spacing: [f64; 3],
}

impl RasGrid {
    fn of(g: &Geometry) -> RasGrid {
        RasGrid {
            shape: g.shape,
            spacing: g.spacing,
        }
    }

    /// Pixels along axis `a` at the finest spacing (so a pixel is square in mm).
    fn scaled(&self, a: usize) -> usize {
        let min = self
            .spacing
            .iter()
            .cloned()
            .fold(f64::MAX, f64::min)
            .max(1e-6);
        (self.shape[a] as f64 * self.spacing[a] / min)
            .round()
            .max(1.0) as usize
    }

    /// The picture of `plane` through voxel `at`: (rows, cols, voxel index per pixel).
    pub(crate) fn sample(&self, plane: Plane, at: [usize; 3]) -> (usize, usize, Vec<usize>) {
        let [d, h, w] = self.shape;
        let (sd, sh, sw) = (self.scaled(0), self.scaled(1), self.scaled(2));
        let idx = |x: usize, n_scaled: usize, n: usize| (x * n / n_scaled).min(n - 1);
        let (rows, cols) = match plane {
            Plane::Axial => (sh, sd),
            Plane::Coronal => (sw, sd),
            Plane::Sagittal => (sw, sh),
        };
        let mut out = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                let (i, j, k) = match plane {
                    // k fixed: columns = i reversed (right on the left), rows = j reversed.
                    Plane::Axial => (idx(sd - 1 - c, sd, d), idx(sh - 1 - r, sh, h), at[2]),
                    // j fixed: columns = i reversed, rows = k reversed (superior up).
                    Plane::Coronal => (idx(sd - 1 - c, sd, d), at[1], idx(sw - 1 - r, sw, w)),
                    // i fixed: columns = j (anterior on the right), rows = k reversed.
                    Plane::Sagittal => (at[0], idx(c, sh, h), idx(sw - 1 - r, sw, w)),
                };
                out.push((i.min(d - 1) * h + j.min(h - 1)) * w + k.min(w - 1));
            }
        }
        (rows, cols, out)
    }
}

/// An image reoriented to RAS with its display window.
pub(crate) struct RasImage {
    pub grid: RasGrid,
    pub data: Vec<f32>,
    pub window: (f64, f64),
}

impl RasImage {
    /// First channel of `image` in RAS; `window` defaults to the 1st–99th percentile.
    pub(crate) fn new(image: &Volume, window: Option<(f64, f64)>, out: &Path) -> Result<RasImage> {
        let (img, _) = image.reorient("RAS").map_err(|e| Error::invalid(out, e))?;
        let n = img.geometry.voxels();
        let data = img.data[..n].to_vec();
        let window = window.unwrap_or_else(|| percentile_window(&data));
        Ok(RasImage {
            grid: RasGrid::of(&img.geometry),
            data,
            window,
        })
    }

    pub(crate) fn gray(&self, voxel: usize) -> u8 {
        let (lo, hi) = self.window;
        let v = (self.data[voxel] as f64 - lo) / (hi - lo).max(1e-9);
        (v.clamp(0.0, 1.0) * 255.0) as u8
    }
}

/// The 1st–99th percentile of the finite values (sampled), as CT viewers' auto window.
fn percentile_window(data: &[f32]) -> (f64, f64) {
    let step = (data.len() / 200_000).max(1);
    let mut s: Vec<f32> = data
        .iter()
        .step_by(step)
        .cloned()
        .filter(|v| v.is_finite())
        .collect();
    if s.is_empty() {
        return (0.0, 1.0);
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| s[((s.len() - 1) as f64 * p) as usize] as f64;
    (q(0.01), q(0.99))
}

/// A label map reoriented to RAS; it must share `like`'s grid (same shape before reorienting).
pub(crate) fn ras_labels(labels: &Volume, like: &Volume, out: &Path) -> Result<Vec<u32>> {
    if labels.geometry.shape != like.geometry.shape {
        return Err(Error::invalid(
            out,
            format!(
                "label shape {:?} does not match image shape {:?}",
                labels.geometry.shape, like.geometry.shape
            ),
        ));
    }
    let ro = like
        .geometry
        .reorientation_to("RAS")
        .map_err(|e| Error::invalid(out, e))?;
    Ok(ro
        .apply_data(&labels.data[..labels.geometry.voxels()])
        .into_iter()
        .map(|v| v.max(0.0) as u32)
        .collect())
}

/// The grid of a volume reoriented to RAS (for label-only pictures).
pub(crate) fn ras_grid(v: &Volume, out: &Path) -> Result<RasGrid> {
    let ro = v
        .geometry
        .reorientation_to("RAS")
        .map_err(|e| Error::invalid(out, e))?;
    Ok(RasGrid::of(&ro.apply_geometry(&v.geometry)))
}

/// The labels' centre of mass (voxel indices), if any voxel is foreground.
pub(crate) fn centre_of(labels: &[u32], shape: [usize; 3]) -> Option<[usize; 3]> {
    let [_, h, w] = shape;
    let (mut s, mut n) = ([0f64; 3], 0f64);
    for (v, &c) in labels.iter().enumerate() {
        if c > 0 {
            s[0] += (v / (h * w)) as f64;
            s[1] += ((v / w) % h) as f64;
            s[2] += (v % w) as f64;
            n += 1.0;
        }
    }
    (n > 0.0).then(|| s.map(|x| (x / n) as usize))
}

/// `gray` with label colour blended in (45 % colour) where `label > 0`.
pub(crate) fn blend(gray: u8, label: u32) -> RGBColor {
    if label == 0 {
        return RGBColor(gray, gray, gray);
    }
    let c = crate::class_colour(label);
    let mix = |a: u8| (0.55 * gray as f64 + 0.45 * a as f64) as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// Nearest-neighbour upscaling by an integer factor of an RGB picture.
pub(crate) fn upscale(rows: usize, cols: usize, px: &[RGBColor], f: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * cols * f * f * 3);
    for r in 0..rows * f {
        for c in 0..cols * f {
            let p = px[(r / f) * cols + c / f];
            out.extend_from_slice(&[p.0, p.1, p.2]);
        }
    }
    out
}
