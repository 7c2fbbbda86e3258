//! `repux overlay`: axial, coronal and sagittal slices through the label's centre (or the volume
//! centre), in RAS with the radiological convention (patient right on the viewer's left, anterior
//! and superior up), square pixels (nearest-neighbour on anisotropic grids), a coloured label
//! overlay and a legend, written as an RGB PNG for people to look at.

use crate::canvas::Canvas;
use repux_volume::{Error, Result, Volume};
use std::collections::BTreeMap;
use std::path::Path;

/// Distinct colours for classes 1, 2, … (cycled).
const PALETTE: [[u8; 3]; 10] = [
    [230, 57, 70],
    [69, 190, 90],
    [60, 120, 230],
    [250, 200, 40],
    [170, 80, 220],
    [40, 200, 200],
    [250, 130, 40],
    [240, 100, 180],
    [140, 200, 60],
    [150, 110, 60],
];

/// One view: a 2-D slice (rows × cols) of gray values and labels.
struct View {
    rows: usize,
    cols: usize,
    gray: Vec<u8>,
    labels: Vec<u32>,
}

/// Renders the overlay PNG. `labels` must share the image's grid; `names` maps label values to
/// names for the legend; `window` is the display range (default: the 1st–99th percentile).
pub fn render(
    image: &Volume,
    labels: Option<&Volume>,
    names: &BTreeMap<u32, String>,
    window: Option<(f64, f64)>,
    out: &Path,
) -> Result<()> {
    let (img, ro) = image.reorient("RAS").map_err(|e| Error::invalid(out, e))?;
    let lab = match labels {
        Some(l) => {
            if l.geometry.shape != image.geometry.shape {
                return Err(Error::invalid(
                    out,
                    format!(
                        "label shape {:?} does not match image shape {:?}",
                        l.geometry.shape, image.geometry.shape
                    ),
                ));
            }
            Some(
                ro.apply_data(&l.data[..l.geometry.voxels()])
                    .into_iter()
                    .map(|v| v.max(0.0) as u32)
                    .collect::<Vec<u32>>(),
            )
        }
        None => None,
    };
    let g = &img.geometry;
    let [d, h, w] = g.shape;
    let n = g.voxels();
    let data = &img.data[..n];
    let (lo, hi) = window.unwrap_or_else(|| {
        let mut s: Vec<f32> = data
            .iter()
            .cloned()
            .filter(|v| v.is_finite())
            .step_by((n / 200_000).max(1))
            .collect();
        s.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| {
            s.get(((s.len().max(1) - 1) as f64 * p) as usize)
                .copied()
                .unwrap_or(0.0) as f64
        };
        (q(0.01), q(0.99))
    });
    // Centre: the labels' centre of mass, else the middle.
    let centre = lab
        .as_ref()
        .and_then(|l| {
            let (mut s, mut cnt) = ([0f64; 3], 0f64);
            for (v, &c) in l.iter().enumerate() {
                if c > 0 {
                    s[0] += (v / (h * w)) as f64;
                    s[1] += ((v / w) % h) as f64;
                    s[2] += (v % w) as f64;
                    cnt += 1.0;
                }
            }
            (cnt > 0.0).then(|| {
                [
                    (s[0] / cnt) as usize,
                    (s[1] / cnt) as usize,
                    (s[2] / cnt) as usize,
                ]
            })
        })
        .unwrap_or([d / 2, h / 2, w / 2]);
    let min_sp = g.spacing.iter().cloned().fold(f64::MAX, f64::min).max(1e-6);
    let scale = |a: usize| (g.shape[a] as f64 * g.spacing[a] / min_sp).round().max(1.0) as usize;
    let (sd, sh, sw) = (scale(0), scale(1), scale(2));
    let gray = |v: f32| ((((v as f64) - lo) / (hi - lo).max(1e-9)).clamp(0.0, 1.0) * 255.0) as u8;
    // A view samples voxel (i, j, k) = f(row, col) with nearest neighbour on the scaled grid.
    let make =
        |rows: usize, cols: usize, at: &dyn Fn(usize, usize) -> (usize, usize, usize)| -> View {
            let mut v = View {
                rows,
                cols,
                gray: Vec::with_capacity(rows * cols),
                labels: Vec::with_capacity(rows * cols),
            };
            for r in 0..rows {
                for c in 0..cols {
                    let (i, j, k) = at(r, c);
                    let idx = (i.min(d - 1) * h + j.min(h - 1)) * w + k.min(w - 1);
                    v.gray.push(gray(data[idx]));
                    v.labels.push(lab.as_ref().map(|l| l[idx]).unwrap_or(0));
                }
            }
            v
        };
    let idx = |x: usize, n_scaled: usize, n: usize| x * n / n_scaled;
    // Axial (k fixed): columns = i reversed (patient right on the left), rows = j reversed (anterior up).
    let axial = make(sh, sd, &|r, c| {
        (idx(sd - 1 - c, sd, d), idx(sh - 1 - r, sh, h), centre[2])
    });
    // Coronal (j fixed): columns = i reversed, rows = k reversed (superior up).
    let coronal = make(sw, sd, &|r, c| {
        (idx(sd - 1 - c, sd, d), centre[1], idx(sw - 1 - r, sw, w))
    });
    // Sagittal (i fixed): columns = j (anterior on the right), rows = k reversed.
    let sagittal = make(sw, sh, &|r, c| {
        (centre[0], idx(c, sh, h), idx(sw - 1 - r, sw, w))
    });
    let views = [axial, coronal, sagittal];
    let present: Vec<u32> = {
        let mut s: Vec<u32> = lab
            .as_ref()
            .map(|l| {
                l.iter()
                    .cloned()
                    .filter(|&c| c > 0)
                    .collect::<std::collections::BTreeSet<u32>>()
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default();
        s.sort();
        s
    };
    let gap = 6;
    let width = views.iter().map(|v| v.cols).sum::<usize>() + gap * 4;
    let legend_h = if present.is_empty() {
        0
    } else {
        24 * present.len() + 8
    };
    let height = views.iter().map(|v| v.rows).max().unwrap_or(1) + gap * 2 + legend_h;
    let mut cv = Canvas::new(width, height);
    let mut x0 = gap;
    for v in &views {
        for r in 0..v.rows {
            for c in 0..v.cols {
                let gv = v.gray[r * v.cols + c];
                let mut px = [gv; 3];
                let l = v.labels[r * v.cols + c];
                if l > 0 {
                    let col = PALETTE[(l as usize - 1) % PALETTE.len()];
                    px = std::array::from_fn(|ch| (0.55 * gv as f64 + 0.45 * col[ch] as f64) as u8);
                }
                cv.set(x0 + c, gap + r, px);
            }
        }
        x0 += v.cols + gap;
    }
    let mut y = views.iter().map(|v| v.rows).max().unwrap_or(1) + gap * 2;
    for &l in &present {
        let col = PALETTE[(l as usize - 1) % PALETTE.len()];
        for dy in 0..14 {
            for dx in 0..14 {
                cv.set(gap + dx, y + dy, col);
            }
        }
        let name = names.get(&l).cloned().unwrap_or_default();
        cv.text(gap + 22, y, &format!("{l} {name}"), [235, 235, 235]);
        y += 24;
    }
    cv.write_png(out)
}
