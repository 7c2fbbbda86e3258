use crate::args::{pair, triple};
use anyhow::{Context, Result};
use repux_prep::plan::{fingerprint, make_plans};
use repux_prep::{Interp, LabelInterp, PlanOptions, ResampleOptions, SeparateZ};
use repux_volume::Dataset;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Dataset folder (nnU-Net v2 raw, Decathlon, or images/ + labels/).
    pub dataset: PathBuf,
    /// Where to write the plans [default: DATASET/plans.json].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Target spacing in mm, e.g. 1.5,1.5,2.0 [default: nnU-Net's rule on the median spacing].
    #[arg(long, value_parser = triple::<f64>)]
    pub target_spacing: Option<[f64; 3]>,
    /// Largest patch size; shrunk to fit small images, each side a multiple of --size-multiple.
    #[arg(long, value_parser = triple::<usize>, default_value = "96,96,96")]
    pub patch_size: [usize; 3],
    /// Every patch side a multiple of this: 16 for RepUX-Net/3D UX-Net, 32 for SwinUNETR.
    #[arg(long, default_value_t = 16)]
    pub size_multiple: usize,
    /// Crops per training step.
    #[arg(long, default_value_t = 2)]
    pub batch_size: usize,
    /// Use a fixed HU window for CT channels, mapped to [0, 1] (the paper: -125,275) instead of
    /// nnU-Net's percentile clipping + z-score.
    #[arg(long, value_parser = pair, allow_hyphen_values = true)]
    pub ct_window: Option<(f64, f64)>,
    /// Image interpolation when resampling.
    #[arg(long, value_enum, default_value = "cubic")]
    pub image_interpolation: ImageInterp,
    /// Label interpolation when resampling.
    #[arg(long, value_enum, default_value = "one-hot-linear")]
    pub label_interpolation: LabelInterpArg,
    /// Resample the coarse axis of anisotropic images separately (nnU-Net).
    #[arg(long, value_enum, default_value = "auto")]
    pub separate_z: SeparateZArg,
    /// Do not crop images to the foreground bounding box.
    #[arg(long)]
    pub no_crop: bool,
    /// Fraction of training crops centred on foreground.
    #[arg(long, default_value_t = 0.5)]
    pub foreground_fraction: f64,
    /// Seed for the foreground intensity sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ImageInterp {
    Linear,
    Cubic,
}
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LabelInterpArg {
    Nearest,
    OneHotLinear,
}
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SeparateZArg {
    Auto,
    Never,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let ds = Dataset::open(&a.dataset)?;
    let opt = PlanOptions {
        target_spacing: a.target_spacing,
        patch_size: a.patch_size,
        batch_size: a.batch_size,
        ct_window: a.ct_window,
        resampling: ResampleOptions {
            image_interpolation: match a.image_interpolation {
                ImageInterp::Linear => Interp::Linear,
                ImageInterp::Cubic => Interp::Cubic,
            },
            label_interpolation: match a.label_interpolation {
                LabelInterpArg::Nearest => LabelInterp::Nearest,
                LabelInterpArg::OneHotLinear => LabelInterp::OneHotLinear,
            },
            separate_z: match a.separate_z {
                SeparateZArg::Auto => SeparateZ::Auto,
                SeparateZArg::Never => SeparateZ::Never,
            },
            crop_to_foreground: !a.no_crop,
            ..ResampleOptions::default()
        },
        foreground_fraction: a.foreground_fraction,
        size_multiple: a.size_multiple,
    };
    let fp = fingerprint(&ds, a.seed).context("fingerprinting the dataset")?;
    let plans = make_plans(&ds, fp, &opt)?;
    let out = a.output.unwrap_or_else(|| a.dataset.join("plans.json"));
    plans.save(&out)?;
    println!(
        "plans for {} ({} training cases) written to {}",
        plans.dataset_name,
        plans.fingerprint.cases.len(),
        out.display()
    );
    println!("  target spacing  {:?} mm", plans.target_spacing);
    println!(
        "  median shape    {:?} (at the target spacing)",
        plans.median_shape
    );
    println!(
        "  patch size      {:?}, batch size {}",
        plans.patch_size, plans.batch_size
    );
    for n in &plans.normalization {
        println!(
            "  normalisation   {}: {}",
            n.channel,
            serde_json::to_string(&n.scheme)?
        );
    }
    let mut labels: Vec<_> = plans.labels.iter().collect();
    labels.sort_by_key(|(_, v)| **v);
    println!(
        "  labels          {}",
        labels
            .iter()
            .map(|(k, v)| format!("{v}={k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
