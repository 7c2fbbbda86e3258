//! `repux overlay`: axial, coronal and sagittal slices through the labels' centre (or the volume
//! centre) with the labels in colour, patient directions at the edges and a legend of label
//! names.

use crate::slices::{blend, centre_of, ras_labels, upscale, Plane, RasImage};
use crate::{font, render_png, Legend};
use plotters::prelude::*;
use repux_volume::{Result, Volume};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Views are enlarged (by whole pixels) to at least this height, so small volumes stay readable.
const MIN_VIEW_HEIGHT: usize = 360;
const GAP: usize = 28;
const TITLE: usize = 34;
const LEGEND_ROW: usize = 26;
const BACKGROUND: RGBColor = RGBColor(24, 24, 28);
const INK: RGBColor = RGBColor(235, 235, 235);

/// Renders the overlay PNG. `labels` must share the image's grid; `names` maps label values to
/// names for the legend; `window` is the display range (default: the 1st–99th percentile).
pub fn draw_overlay(
    image: &Volume,
    labels: Option<&Volume>,
    names: &BTreeMap<u32, String>,
    window: Option<(f64, f64)>,
    out: &Path,
) -> Result<()> {
    let img = RasImage::new(image, window, out)?;
    let lab = labels.map(|l| ras_labels(l, image, out)).transpose()?;
    let [d, h, w] = img.grid.shape;
    let centre = lab
        .as_deref()
        .and_then(|l| centre_of(l, img.grid.shape))
        .unwrap_or([d / 2, h / 2, w / 2]);
    let views: Vec<(Plane, usize, usize, Vec<RGBColor>)> = Plane::ALL
        .iter()
        .map(|&p| {
            let (rows, cols, vox) = img.grid.sample(p, centre);
            let px = vox
                .iter()
                .map(|&v| blend(img.gray(v), lab.as_ref().map_or(0, |l| l[v])))
                .collect();
            (p, rows, cols, px)
        })
        .collect();
    let max_rows = views.iter().map(|v| v.1).max().unwrap_or(1);
    let f = MIN_VIEW_HEIGHT.div_ceil(max_rows).max(1);
    let present: Vec<u32> = lab
        .as_deref()
        .map(|l| {
            l.iter()
                .cloned()
                .filter(|&c| c > 0)
                .collect::<BTreeSet<u32>>()
        })
        .unwrap_or_default()
        .into_iter()
        .collect();
    let width = views.iter().map(|v| v.2 * f + GAP).sum::<usize>() + GAP;
    let per_row = ((width - GAP) / 220).max(1);
    let legend_rows = present.len().div_ceil(per_row);
    let height = TITLE + max_rows * f + GAP + legend_rows * LEGEND_ROW + GAP / 2;
    render_png(out, (width as u32, height as u32), |root| {
        root.fill(&BACKGROUND)?;
        let text = font(18.0).color(&INK);
        let small = font(15.0).color(&RGBColor(190, 190, 120));
        let mut x0 = GAP;
        for (plane, rows, cols, px) in &views {
            let (pw, ph) = (cols * f, rows * f);
            let buf = upscale(*rows, *cols, px, f);
            let el = BitMapElement::with_owned_buffer(
                (x0 as i32, TITLE as i32),
                (pw as u32, ph as u32),
                buf,
            )
            .ok_or("overlay buffer has the wrong size")?;
            root.draw(&el)?;
            root.draw_text(plane.name(), &text, (x0 as i32, 8))?;
            let [l, r, t, b] = plane.edges();
            let (xm, ym) = ((x0 + pw / 2) as i32, (TITLE + ph / 2) as i32);
            root.draw_text(l, &small, (x0 as i32 + 4, ym - 8))?;
            root.draw_text(r, &small, ((x0 + pw) as i32 - 14, ym - 8))?;
            root.draw_text(t, &small, (xm - 5, TITLE as i32 + 4))?;
            root.draw_text(b, &small, (xm - 5, (TITLE + ph) as i32 - 20))?;
            x0 += pw + GAP;
        }
        let legend = Legend {
            origin: (GAP, TITLE + max_rows * f + GAP / 2),
            column: 220,
            per_row,
            row_height: LEGEND_ROW,
            font_size: 16.0,
            ink: INK,
        };
        legend.draw(root, &present, names)
    })
}
