//! The QC sheet of `repux evaluate --qc`: one tile per case — the axial slice with the most
//! reference foreground, the prediction in colour, the reference's outline in white — captioned
//! with the case id and its mean foreground Dice, worst cases first.

use crate::slices::{blend, ras_grid, ras_labels, Plane, RasImage};
use crate::{font, render_png, Legend};
use plotters::prelude::*;
use repux_volume::{Error, Result, Volume};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Largest side of a case's tile, in pixels.
const TILE: usize = 240;
const COLUMNS: usize = 5;
const CAPTION: usize = 26;
const PAD: usize = 12;
const HEADER: usize = 40;
const LEGEND_ROW: usize = 24;
const BACKGROUND: RGBColor = RGBColor(24, 24, 28);
const INK: RGBColor = RGBColor(235, 235, 235);

/// One case's tile, rendered small so a sheet of hundreds of cases needs little memory.
#[derive(Clone, Debug)]
pub struct QcCase {
    pub id: String,
    /// Mean foreground Dice (NaN when undefined: no foreground in either map).
    pub dice: f64,
    rows: usize,
    cols: usize,
    rgb: Vec<u8>,
    labels: BTreeSet<u32>,
}

impl QcCase {
    /// Renders the tile of one case. `prediction` and `reference` (and `image`, when given)
    /// share one grid; without an image the slice is drawn on dark gray. `source` names the
    /// prediction file in errors.
    pub fn render(
        id: &str,
        dice: f64,
        prediction: &Volume,
        reference: &Volume,
        image: Option<&Volume>,
        source: &Path,
    ) -> Result<QcCase> {
        let pred = ras_labels(prediction, reference, source)?;
        let refl = ras_labels(reference, reference, source)?;
        let img = match image {
            Some(i) => {
                if i.geometry.shape != reference.geometry.shape {
                    return Err(Error::invalid(
                        source,
                        format!(
                            "image shape {:?} does not match the reference's {:?}",
                            i.geometry.shape, reference.geometry.shape
                        ),
                    ));
                }
                Some(RasImage::new(i, None, source)?)
            }
            None => None,
        };
        let grid = ras_grid(reference, source)?;
        let [d, h, w] = grid.shape;
        // The axial slice (k) with the most reference foreground, else prediction, else middle.
        let busiest = |l: &[u32]| {
            let mut count = vec![0usize; w];
            for (v, &c) in l.iter().enumerate() {
                if c > 0 {
                    count[v % w] += 1;
                }
            }
            (0..w).max_by_key(|&k| count[k]).filter(|&k| count[k] > 0)
        };
        let k = busiest(&refl).or_else(|| busiest(&pred)).unwrap_or(w / 2);
        let (rows, cols, vox) = grid.sample(Plane::Axial, [d / 2, h / 2, k]);
        let at = |r: usize, c: usize| refl[vox[r * cols + c]];
        let px: Vec<RGBColor> = (0..rows * cols)
            .map(|p| {
                let (r, c) = (p / cols, p % cols);
                let v = vox[p];
                let here = at(r, c);
                let edge = here > 0
                    && [(-1i64, 0i64), (1, 0), (0, -1), (0, 1)]
                        .iter()
                        .any(|&(dr, dc)| {
                            let (rr, cc) = (r as i64 + dr, c as i64 + dc);
                            rr < 0
                                || cc < 0
                                || rr >= rows as i64
                                || cc >= cols as i64
                                || at(rr as usize, cc as usize) != here
                        });
                if edge {
                    RGBColor(255, 255, 255)
                } else {
                    blend(img.as_ref().map_or(48, |i| i.gray(v)), pred[v])
                }
            })
            .collect();
        // Fit into TILE × TILE, keeping the aspect ratio (nearest neighbour).
        let s = TILE as f64 / rows.max(cols) as f64;
        let (tr, tc) = (
            ((rows as f64 * s).round() as usize).max(1),
            ((cols as f64 * s).round() as usize).max(1),
        );
        let mut rgb = Vec::with_capacity(tr * tc * 3);
        for r in 0..tr {
            for c in 0..tc {
                let p = px[(r * rows / tr).min(rows - 1) * cols + (c * cols / tc).min(cols - 1)];
                rgb.extend_from_slice(&[p.0, p.1, p.2]);
            }
        }
        let labels = pred
            .iter()
            .chain(&refl)
            .cloned()
            .filter(|&l| l > 0)
            .collect();
        Ok(QcCase {
            id: id.to_string(),
            dice,
            rows: tr,
            cols: tc,
            rgb,
            labels,
        })
    }
}

/// Writes the sheet: cases sorted by Dice (worst first, undefined last), five per row, a header
/// with the count and mean, and a legend of the label names present.
pub fn draw_qc_sheet(cases: &[QcCase], names: &BTreeMap<u32, String>, out: &Path) -> Result<()> {
    if cases.is_empty() {
        return Err(Error::invalid(out, "no cases to draw a QC sheet of"));
    }
    let mut order: Vec<&QcCase> = cases.iter().collect();
    order.sort_by(|a, b| match (a.dice.is_nan(), b.dice.is_nan()) {
        (false, false) => a.dice.total_cmp(&b.dice),
        (x, y) => x.cmp(&y),
    });
    let labels: BTreeSet<u32> = cases
        .iter()
        .flat_map(|c| c.labels.iter().cloned())
        .collect();
    let cols = COLUMNS.min(cases.len());
    let grid_rows = cases.len().div_ceil(cols);
    let cell = (TILE + PAD, TILE + CAPTION + PAD);
    let width = (cols * cell.0 + PAD).max(560);
    let per_row = ((width - PAD) / 200).max(1);
    let legend_rows = labels.len().div_ceil(per_row);
    let height = HEADER + grid_rows * cell.1 + legend_rows * LEGEND_ROW + PAD;
    let finite: Vec<f64> = cases
        .iter()
        .map(|c| c.dice)
        .filter(|d| d.is_finite())
        .collect();
    let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
    render_png(out, (width as u32, height as u32), |root| {
        root.fill(&BACKGROUND)?;
        let header = format!(
            "{} cases, mean foreground Dice {:.3} — worst first; fill: prediction, white outline: reference",
            cases.len(),
            mean
        );
        root.draw_text(&header, &font(17.0).color(&INK), (PAD as i32, 12))?;
        for (n, c) in order.iter().enumerate() {
            let x = (PAD + (n % cols) * cell.0) as i32;
            let y = (HEADER + (n / cols) * cell.1) as i32;
            // Centred across its square, standing on its caption.
            let (ox, oy) = ((TILE - c.cols) / 2, TILE - c.rows);
            let el = BitMapElement::with_owned_buffer(
                (x + ox as i32, y + oy as i32),
                (c.cols as u32, c.rows as u32),
                c.rgb.clone(),
            )
            .ok_or("QC tile buffer has the wrong size")?;
            root.draw(&el)?;
            let dice = if c.dice.is_finite() {
                format!("{:.3}", c.dice)
            } else {
                "n/a".into()
            };
            let mut id = c.id.clone();
            if id.chars().count() > 22 {
                id = id.chars().take(21).collect::<String>() + "…";
            }
            root.draw_text(
                &format!("{id}  {dice}"),
                &font(15.0).color(&INK),
                (x, y + TILE as i32 + 4),
            )?;
        }
        let legend = Legend {
            origin: (PAD, HEADER + grid_rows * cell.1),
            column: 200,
            per_row,
            row_height: LEGEND_ROW,
            font_size: 15.0,
            ink: INK,
        };
        let labels: Vec<u32> = labels.iter().cloned().collect();
        legend.draw(root, &labels, names)
    })
}
