//! `progress.png`: the training loss (raw, and smoothed) and the validation mean foreground Dice
//! against the iteration, redrawn at every validation.

use repux_eval::canvas::Canvas;
use std::path::Path;

const W: usize = 960;
const H: usize = 340;
const PANEL: usize = 440;
const TOP: usize = 40;
const BOTTOM: usize = 300;

/// Draws the two panels from `(iteration, loss)` and `(iteration, mean Dice)` points.
pub fn draw(
    losses: &[(usize, f64)],
    dice: &[(usize, f64)],
    total: usize,
    out: &Path,
) -> repux_volume::Result<()> {
    let mut cv = Canvas::new(W, H);
    cv.px.iter_mut().for_each(|p| *p = 250);
    let x_max = total.max(losses.last().map(|l| l.0).unwrap_or(1)).max(1) as f64;
    // Smoothed loss: exponential moving average over about 2 % of the run.
    let alpha = (50.0 / x_max).clamp(0.02, 1.0);
    let mut ema = Vec::with_capacity(losses.len());
    let mut acc = None;
    for &(i, l) in losses.iter().filter(|l| l.1.is_finite()) {
        let a = acc.map(|a: f64| a + alpha * (l - a)).unwrap_or(l);
        acc = Some(a);
        ema.push((i, a));
    }
    let finite: Vec<f64> = losses
        .iter()
        .map(|l| l.1)
        .filter(|v| v.is_finite())
        .collect();
    let l_max = finite.iter().cloned().fold(0.0, f64::max).max(1e-6);
    panel(
        &mut cv,
        40,
        "loss",
        l_max,
        x_max,
        &[(losses, [190, 190, 210], 1), (&ema, [40, 70, 200], 2)],
    );
    panel(
        &mut cv,
        40 + PANEL + 40,
        "val mean Dice",
        1.0,
        x_max,
        &[(dice, [200, 60, 60], 2)],
    );
    cv.write_png(out)
}

type Series<'a> = (&'a [(usize, f64)], [u8; 3], usize);

fn panel(cv: &mut Canvas, x0: usize, title: &str, y_max: f64, x_max: f64, series: &[Series]) {
    let ink = [40, 40, 40];
    let (l, r, t, b) = (x0 as f64, (x0 + PANEL) as f64, TOP as f64, BOTTOM as f64);
    cv.line((l, t), (l, b), ink, 1);
    cv.line((l, b), (r, b), ink, 1);
    cv.text(x0 + 4, 10, title, ink);
    cv.text(x0 - 36, TOP - 6, &short(y_max), ink);
    cv.text(x0 - 12, BOTTOM - 8, "0", ink);
    cv.text(
        x0 + PANEL - 12 * short(x_max).len(),
        BOTTOM + 10,
        &short(x_max),
        ink,
    );
    cv.text(x0, BOTTOM + 10, "iteration", ink);
    let px = |(i, v): (usize, f64)| {
        (
            l + (i as f64 / x_max) * (r - l),
            b - (v / y_max).clamp(0.0, 1.0) * (b - t),
        )
    };
    for &(pts, colour, thick) in series {
        let pts: Vec<(usize, f64)> = pts.iter().cloned().filter(|p| p.1.is_finite()).collect();
        if pts.len() == 1 {
            let p = px(pts[0]);
            cv.line(p, p, colour, thick + 2);
        }
        for w in pts.windows(2) {
            cv.line(px(w[0]), px(w[1]), colour, thick);
        }
    }
}

/// A number in at most 5 characters (`0.85`, `12.3`, `600`, `60k`).
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", (v / 1000.0).round())
    } else if v >= 100.0 {
        format!("{}", v.round())
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
