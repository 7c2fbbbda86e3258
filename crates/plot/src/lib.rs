//! repux-plot: the pictures people look at — learning curves (`progress.png`), label overlays
//! (`repux overlay`, the demo's `overlay.png`) and the per-case QC sheet of `repux evaluate --qc`
//! — drawn with `plotters` into an RGB buffer and written as PNG.
//!
//! Text uses an embedded subset of DejaVu Sans (`assets/`, made by `tools/subset_font.sh`), so
//! drawing needs no system fonts: a fresh server or container draws the same pictures.

mod curves;
mod overlay;
mod qc;
mod slices;

pub use curves::{draw_curves, Curves, CURVES_SIZE};
pub use overlay::draw_overlay;
pub use qc::{draw_qc_sheet, QcCase};

use plotters::prelude::*;
use repux_volume::{Error, Result};
use std::path::Path;
use std::sync::Once;

/// The family name the embedded font is registered under.
const FONT: &str = "sans-serif";

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

/// Registers the embedded font with plotters (once per process).
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType file checked in with the crate; the test
        // `font_is_valid` proves it, so a failure here is a build defect.
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("the embedded font in repux-plot/assets is not TrueType"));
    });
}

/// A text style in the embedded font.
fn font(size: f64) -> TextStyle<'static> {
    register_font();
    (FONT, size).into_font().color(&BLACK)
}

/// Distinct colours for classes 1, 2, … (cycled): Tableau's 10, readable on gray CT.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (230, 57, 70),
    (69, 190, 90),
    (60, 120, 230),
    (250, 200, 40),
    (170, 80, 220),
    (40, 200, 200),
    (250, 130, 40),
    (240, 100, 180),
    (140, 200, 60),
    (150, 110, 60),
];

/// The colour of label value `l` (> 0).
pub fn class_colour(l: u32) -> RGBColor {
    let (r, g, b) = PALETTE[(l.max(1) as usize - 1) % PALETTE.len()];
    RGBColor(r, g, b)
}

/// A legend of label colours and names laid out in rows of `per_row` columns.
struct Legend {
    /// Top-left corner, pixels.
    origin: (usize, usize),
    /// Width of one entry.
    column: usize,
    per_row: usize,
    row_height: usize,
    font_size: f64,
    ink: RGBColor,
}

impl Legend {
    fn draw(
        &self,
        root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
        labels: &[u32],
        names: &std::collections::BTreeMap<u32, String>,
    ) -> DrawResult {
        for (n, &l) in labels.iter().enumerate() {
            let x = (self.origin.0 + (n % self.per_row) * self.column) as i32;
            let y = (self.origin.1 + (n / self.per_row) * self.row_height) as i32;
            root.draw(&Rectangle::new(
                [(x, y + 2), (x + 16, y + 18)],
                class_colour(l).filled(),
            ))?;
            let name = names.get(&l).map_or(String::new(), |s| format!(" {s}"));
            root.draw_text(
                &format!("{l}{name}"),
                &font(self.font_size).color(&self.ink),
                (x + 24, y + 1),
            )?;
        }
        Ok(())
    }
}

/// Draws into a `w × h` RGB buffer with `draw`, then writes it to `out` as PNG, atomically.
fn render_png(
    out: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> DrawResult,
) -> Result<()> {
    register_font();
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(&root).map_err(|e| Error::invalid(out, format!("drawing failed: {e}")))?;
        root.present()
            .map_err(|e| Error::invalid(out, format!("drawing failed: {e}")))?;
    }
    write_png(out, w, h, &buf)
}

/// What drawing code returns: plotters' errors, stringified.
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Encodes an RGB buffer as PNG and writes it atomically.
fn write_png(out: &Path, w: u32, h: u32, rgb: &[u8]) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // Plots are mostly flat colour: adaptive filtering and strong deflate make them ~10×
        // smaller than the defaults, at a few milliseconds.
        enc.set_compression(png::Compression::Best);
        enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        let mut wr = enc
            .write_header()
            .map_err(|e| Error::invalid(out, e.to_string()))?;
        wr.write_image_data(rgb)
            .map_err(|e| Error::invalid(out, e.to_string()))?;
    }
    repux_volume::fs::write_bytes_atomic(out, &bytes)
}

/// A number in at most 5 characters for tick labels (`0.85`, `12.3`, `600`, `60k`).
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{}k", (v / 1000.0).round())
    } else if a >= 100.0 || v == v.round() {
        format!("{}", v.round())
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn font_is_valid() {
        super::register_font();
    }

    #[test]
    fn short_numbers() {
        assert_eq!(super::short(60000.0), "60k");
        assert_eq!(super::short(600.0), "600");
        assert_eq!(super::short(0.85), "0.85");
        assert_eq!(super::short(12.34), "12.3");
        assert_eq!(super::short(0.0), "0");
    }
}
