//! `repux overlay`: axial, coronal and sagittal slices through the label's centre (or the volume
//! centre), in RAS with the radiological convention (patient right on the viewer's left, anterior
//! and superior up), square pixels (nearest-neighbour on anisotropic grids), a coloured label
//! overlay and a legend, written as an RGB PNG for people to look at.

use repux_volume::{Error, Result, Volume};
use std::collections::BTreeMap;
use std::path::Path;

/// Distinct colours for classes 1, 2, … (cycled).
const PALETTE: [[u8; 3]; 10] = [[230, 57, 70], [69, 190, 90], [60, 120, 230], [250, 200, 40], [170, 80, 220], [40, 200, 200], [250, 130, 40], [240, 100, 180], [140, 200, 60], [150, 110, 60]];

/// A 5×7 bitmap font for the legend (rows top to bottom, 5 bits each, MSB left).
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_lowercase() {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [30, 1, 1, 14, 1, 1, 30],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        'a' => [14, 17, 17, 31, 17, 17, 17],
        'b' => [30, 17, 17, 30, 17, 17, 30],
        'c' => [14, 17, 16, 16, 16, 17, 14],
        'd' => [30, 17, 17, 17, 17, 17, 30],
        'e' => [31, 16, 16, 30, 16, 16, 31],
        'f' => [31, 16, 16, 30, 16, 16, 16],
        'g' => [14, 17, 16, 23, 17, 17, 15],
        'h' => [17, 17, 17, 31, 17, 17, 17],
        'i' => [14, 4, 4, 4, 4, 4, 14],
        'j' => [7, 2, 2, 2, 2, 18, 12],
        'k' => [17, 18, 20, 24, 20, 18, 17],
        'l' => [16, 16, 16, 16, 16, 16, 31],
        'm' => [17, 27, 21, 21, 17, 17, 17],
        'n' => [17, 17, 25, 21, 19, 17, 17],
        'o' => [14, 17, 17, 17, 17, 17, 14],
        'p' => [30, 17, 17, 30, 16, 16, 16],
        'q' => [14, 17, 17, 17, 21, 18, 13],
        'r' => [30, 17, 17, 30, 20, 18, 17],
        's' => [15, 16, 16, 14, 1, 1, 30],
        't' => [31, 4, 4, 4, 4, 4, 4],
        'u' => [17, 17, 17, 17, 17, 17, 14],
        'v' => [17, 17, 17, 17, 17, 10, 4],
        'w' => [17, 17, 17, 21, 21, 21, 10],
        'x' => [17, 17, 10, 4, 10, 17, 17],
        'y' => [17, 17, 10, 4, 4, 4, 4],
        'z' => [31, 1, 2, 4, 8, 16, 31],
        '_' => [0, 0, 0, 0, 0, 0, 31],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '=' => [0, 0, 31, 0, 31, 0, 0],
        _ => [0; 7],
    }
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Canvas { w, h, px: vec![0; w * h * 3] }
    }
    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.w && y < self.h {
            self.px[(y * self.w + x) * 3..(y * self.w + x) * 3 + 3].copy_from_slice(&c);
        }
    }
    /// Text at (x, y), scale 2.
    fn text(&mut self, x: usize, y: usize, s: &str, c: [u8; 3]) {
        for (n, ch) in s.chars().enumerate() {
            for (r, bits) in glyph(ch).iter().enumerate() {
                for col in 0..5 {
                    if bits & (16 >> col) != 0 {
                        for dy in 0..2 {
                            for dx in 0..2 {
                                self.set(x + n * 12 + col * 2 + dx, y + r * 2 + dy, c);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One view: a 2-D slice (rows × cols) of gray values and labels.
struct View {
    rows: usize,
    cols: usize,
    gray: Vec<u8>,
    labels: Vec<u32>,
}

/// Renders the overlay PNG. `labels` must share the image's grid; `names` maps label values to
/// names for the legend; `window` is the display range (default: the 1st–99th percentile).
pub fn render(image: &Volume, labels: Option<&Volume>, names: &BTreeMap<u32, String>, window: Option<(f64, f64)>, out: &Path) -> Result<()> {
    let (img, ro) = image.reorient("RAS").map_err(|e| Error::invalid(out, e))?;
    let lab = match labels {
        Some(l) => {
            if l.geometry.shape != image.geometry.shape {
                return Err(Error::invalid(out, format!("label shape {:?} does not match image shape {:?}", l.geometry.shape, image.geometry.shape)));
            }
            Some(ro.apply_data(&l.data[..l.geometry.voxels()]).into_iter().map(|v| v.max(0.0) as u32).collect::<Vec<u32>>())
        }
        None => None,
    };
    let g = &img.geometry;
    let [d, h, w] = g.shape;
    let n = g.voxels();
    let data = &img.data[..n];
    let (lo, hi) = window.unwrap_or_else(|| {
        let mut s: Vec<f32> = data.iter().cloned().filter(|v| v.is_finite()).step_by((n / 200_000).max(1)).collect();
        s.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| s.get(((s.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or(0.0) as f64;
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
            (cnt > 0.0).then(|| [(s[0] / cnt) as usize, (s[1] / cnt) as usize, (s[2] / cnt) as usize])
        })
        .unwrap_or([d / 2, h / 2, w / 2]);
    let min_sp = g.spacing.iter().cloned().fold(f64::MAX, f64::min).max(1e-6);
    let scale = |a: usize| (g.shape[a] as f64 * g.spacing[a] / min_sp).round().max(1.0) as usize;
    let (sd, sh, sw) = (scale(0), scale(1), scale(2));
    let gray = |v: f32| ((((v as f64) - lo) / (hi - lo).max(1e-9)).clamp(0.0, 1.0) * 255.0) as u8;
    // A view samples voxel (i, j, k) = f(row, col) with nearest neighbour on the scaled grid.
    let make = |rows: usize, cols: usize, at: &dyn Fn(usize, usize) -> (usize, usize, usize)| -> View {
        let mut v = View { rows, cols, gray: Vec::with_capacity(rows * cols), labels: Vec::with_capacity(rows * cols) };
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
    let axial = make(sh, sd, &|r, c| (idx(sd - 1 - c, sd, d), idx(sh - 1 - r, sh, h), centre[2]));
    // Coronal (j fixed): columns = i reversed, rows = k reversed (superior up).
    let coronal = make(sw, sd, &|r, c| (idx(sd - 1 - c, sd, d), centre[1], idx(sw - 1 - r, sw, w)));
    // Sagittal (i fixed): columns = j (anterior on the right), rows = k reversed.
    let sagittal = make(sw, sh, &|r, c| (centre[0], idx(c, sh, h), idx(sw - 1 - r, sw, w)));
    let views = [axial, coronal, sagittal];
    let present: Vec<u32> = {
        let mut s: Vec<u32> = lab.as_ref().map(|l| l.iter().cloned().filter(|&c| c > 0).collect::<std::collections::BTreeSet<u32>>().into_iter().collect()).unwrap_or_default();
        s.sort();
        s
    };
    let gap = 6;
    let width = views.iter().map(|v| v.cols).sum::<usize>() + gap * 4;
    let legend_h = if present.is_empty() { 0 } else { 24 * present.len() + 8 };
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
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, cv.w as u32, cv.h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|e| Error::invalid(out, e.to_string()))?;
        wr.write_image_data(&cv.px).map_err(|e| Error::invalid(out, e.to_string()))?;
    }
    repux_volume::nifti::write_bytes_atomic(out, &bytes)
}
