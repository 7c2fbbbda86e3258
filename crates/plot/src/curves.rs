//! `progress.png`: the training loss (each iteration, and smoothed) and the validation Dice per
//! class with their mean, against the iteration; redrawn at every validation.

use crate::{class_colour, font, render_png, short, DrawResult};
use plotters::prelude::*;
use repux_volume::Result;
use std::path::Path;

/// What a learning-curve picture shows.
#[derive(Clone, Debug, Default)]
pub struct Curves {
    /// `(iteration, loss)` for every logged iteration.
    pub losses: Vec<(usize, f64)>,
    /// `(iteration, Dice per foreground class)` at each validation (NaN: class absent).
    pub validations: Vec<(usize, Vec<f64>)>,
    /// Names of the foreground classes (value 1, 2, …) for the legend.
    pub class_names: Vec<String>,
    /// The planned length of the run (the x axis ends there).
    pub planned: usize,
}

/// Picture size: two panels side by side.
pub const CURVES_SIZE: (u32, u32) = (1280, 480);

/// Draws `curves` to `out` (PNG, [`CURVES_SIZE`]).
pub fn draw_curves(curves: &Curves, out: &Path) -> Result<()> {
    render_png(out, CURVES_SIZE, |root| {
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(CURVES_SIZE.0 / 2);
        let x_max = curves
            .planned
            .max(curves.losses.last().map_or(1, |l| l.0))
            .max(1) as f64;
        loss_panel(&left, curves, x_max)?;
        dice_panel(&right, curves, x_max)
    })
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn loss_panel(area: &Area, c: &Curves, x_max: f64) -> DrawResult {
    let finite: Vec<(f64, f64)> = c
        .losses
        .iter()
        .filter(|l| l.1.is_finite())
        .map(|&(i, l)| (i as f64, l))
        .collect();
    let y_max = finite.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption("training loss (Dice + CE)", font(22.0))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("loss")
        .axis_desc_style(font(16.0))
        .label_style(font(14.0))
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    // Smoothed: exponential moving average over about 2 % of the run.
    let alpha = (50.0 / x_max).clamp(0.02, 1.0);
    let mut acc: Option<f64> = None;
    let ema: Vec<(f64, f64)> = finite
        .iter()
        .map(|&(i, l)| {
            let a = acc.map_or(l, |a| a + alpha * (l - a));
            acc = Some(a);
            (i, a)
        })
        .collect();
    let raw = RGBColor(180, 185, 205);
    chart
        .draw_series(LineSeries::new(finite.iter().cloned(), raw.stroke_width(1)))?
        .label("per iteration")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], raw.stroke_width(2)));
    let smooth = RGBColor(40, 70, 200);
    chart
        .draw_series(LineSeries::new(ema, smooth.stroke_width(2)))?
        .label("smoothed")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], smooth.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font(font(14.0))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

fn dice_panel(area: &Area, c: &Curves, x_max: f64) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption("validation Dice", font(22.0))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("Dice")
        .axis_desc_style(font(16.0))
        .label_style(font(14.0))
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    if c.validations.is_empty() {
        area.draw_text(
            "no validation yet",
            &font(16.0).color(&RGBColor(120, 120, 120)),
            (
                area.dim_in_pixel().0 as i32 / 2 - 60,
                area.dim_in_pixel().1 as i32 / 2,
            ),
        )?;
        return Ok(());
    }
    let classes = c.validations.iter().map(|v| v.1.len()).max().unwrap_or(0);
    for k in 0..classes {
        let pts: Vec<(f64, f64)> = c
            .validations
            .iter()
            .filter_map(|(i, d)| d.get(k).filter(|v| v.is_finite()).map(|&v| (*i as f64, v)))
            .collect();
        let colour = class_colour(k as u32 + 1);
        let name = c
            .class_names
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("class {}", k + 1));
        chart
            .draw_series(LineSeries::new(pts.iter().cloned(), colour.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(3)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
    }
    let mean: Vec<(f64, f64)> = c
        .validations
        .iter()
        .filter_map(|(i, d)| {
            let f: Vec<f64> = d.iter().cloned().filter(|v| v.is_finite()).collect();
            (!f.is_empty()).then(|| (*i as f64, f.iter().sum::<f64>() / f.len() as f64))
        })
        .collect();
    chart
        .draw_series(LineSeries::new(mean, BLACK.stroke_width(3)))?
        .label("mean")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(3)));
    chart
        .configure_series_labels()
        .label_font(font(14.0))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}
