use crate::args::triple;
use anyhow::Result;
use repux_prep::resample::{resample, shape_for_spacing, Interp};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Time resampling a CT-sized volume to a target spacing (cubic and linear), median of runs.
    Resample {
        /// Input shape.
        #[arg(long, value_parser = triple::<usize>, default_value = "512,512,300")]
        shape: [usize; 3],
        /// Input spacing in mm.
        #[arg(long, value_parser = triple::<f64>, default_value = "0.78,0.78,1.25")]
        spacing: [f64; 3],
        /// Target spacing in mm.
        #[arg(long, value_parser = triple::<f64>, default_value = "1.5,1.5,2.0")]
        target: [f64; 3],
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// One JSON array of records instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(c: Command) -> Result<ExitCode> {
    let Command::Resample { shape, spacing, target, repeats, json } = c;
    let n: usize = shape.iter().product();
    // A smooth CT-like field with structure on every axis (deterministic).
    let data: Vec<f32> = (0..n)
        .map(|i| {
            let (a, b, k) = (i / (shape[1] * shape[2]), (i / shape[2]) % shape[1], i % shape[2]);
            (400.0 * ((a as f32) * 0.05).sin() * ((b as f32) * 0.07).cos() + 100.0 * ((k as f32) * 0.11).sin()) - 200.0
        })
        .collect();
    let out = shape_for_spacing(shape, spacing, target);
    let mut records = Vec::new();
    for (name, interp) in [("cubic", Interp::Cubic), ("linear", Interp::Linear), ("nearest", Interp::Nearest)] {
        let times: Vec<f64> = (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                let r = resample(&data, shape, out, [interp; 3]);
                std::hint::black_box(r);
                t.elapsed().as_secs_f64()
            })
            .collect();
        records.push(serde_json::json!({"op": "resample", "interpolation": name, "shape": shape, "out_shape": out, "spacing": spacing, "target": target, "threads": rayon_threads(), "median_s": median(times)}));
    }
    if json {
        println!("{}", serde_json::to_string(&records)?);
    } else {
        println!("resample {shape:?} at {spacing:?} mm → {out:?} at {target:?} mm, {} threads, median of {repeats}", rayon_threads());
        let cubic = records[0]["median_s"].as_f64().unwrap_or(f64::NAN);
        for r in &records {
            let s = r["median_s"].as_f64().unwrap_or(f64::NAN);
            println!("  {:<8} {:>8.3} s   ({:.2}× cubic's time)", r["interpolation"].as_str().unwrap_or(""), s, s / cubic);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
