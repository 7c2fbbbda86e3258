use anyhow::{bail, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use repux_infer::{input_cases, PredictOptions, Predictor};
use repux_volume::npy::{self, NpyType};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// An image file, or a folder of cases (nnU-Net naming `<case>_0000.nii.gz` groups channels).
    #[arg(short, long)]
    pub input: PathBuf,
    /// Output folder: `<case>.nii.gz` label maps on the input's exact grid.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Model directory (config.json, model.safetensors, plans.json).
    #[arg(short, long)]
    pub model: PathBuf,
    /// Tile overlap of the sliding window.
    #[arg(long, default_value_t = 0.5)]
    pub overlap: f64,
    /// Test-time augmentation: `flips` averages the 8 mirrorings.
    #[arg(long, value_enum, default_value = "none")]
    pub tta: Tta,
    /// Tiles per network call.
    #[arg(long, default_value_t = 1)]
    pub tile_batch: usize,
    /// Also write `<case>_probabilities.npy` (float16, classes × D × H × W, native grid).
    #[arg(long)]
    pub probabilities: bool,
    /// Keep only the largest connected component of each class.
    #[arg(long)]
    pub largest_component: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Tta {
    None,
    Flips,
}

pub fn run(a: Args) -> Result<ExitCode> {
    if !(0.0..1.0).contains(&a.overlap) {
        bail!("--overlap {} must be in [0, 1)", a.overlap);
    }
    let predictor = Predictor::load(&a.model)?;
    let cases = input_cases(&a.input)?;
    std::fs::create_dir_all(&a.output).map_err(|e| repux_volume::Error::io(&a.output, e))?;
    let opts = PredictOptions { overlap: a.overlap, tta: matches!(a.tta, Tta::Flips), tile_batch: a.tile_batch.max(1), probabilities: a.probabilities, largest_component: a.largest_component };
    let multi = MultiProgress::new();
    let case_bar = multi.add(ProgressBar::new(cases.len() as u64));
    case_bar.set_style(ProgressStyle::with_template("cases {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")?);
    let tile_bar = multi.add(ProgressBar::new(0));
    tile_bar.set_style(ProgressStyle::with_template("tiles {bar:30} {pos}/{len}")?);
    let mut failed = Vec::new();
    for (id, files) in &cases {
        case_bar.set_message(id.clone());
        let result = predictor.predict(files, &opts, |done, total| {
            tile_bar.set_length(total as u64);
            tile_bar.set_position(done as u64);
        });
        match result {
            Ok(p) => {
                let out = a.output.join(format!("{id}.nii.gz"));
                repux_volume::nifti::write_labels(&out, &p.geometry, &p.labels, p.classes as u32 - 1)?;
                if let Some(probs) = &p.probabilities {
                    let [d, h, w] = p.geometry.shape;
                    let values: Vec<f32> = probs.iter().map(|v| v.to_f32()).collect();
                    npy::write(&a.output.join(format!("{id}_probabilities.npy")), &[p.classes, d, h, w], &values, NpyType::F16)?;
                }
            }
            Err(e) => {
                multi.suspend(|| eprintln!("error: case {id}: {e}"));
                failed.push(id.clone());
            }
        }
        case_bar.inc(1);
    }
    case_bar.finish_and_clear();
    tile_bar.finish_and_clear();
    println!("{} of {} cases predicted into {}", cases.len() - failed.len(), cases.len(), a.output.display());
    if !failed.is_empty() {
        println!("failed: {}", failed.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
