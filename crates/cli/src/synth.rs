use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Output dataset folder (created; nnU-Net v2 raw layout).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of cases.
    #[arg(long, default_value_t = 8)]
    pub cases: usize,
    /// Random seed: the same seed gives the same files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let bar = ProgressBar::new(a.cases as u64);
    bar.set_style(
        ProgressStyle::with_template("synth {bar:30} {pos}/{len} cases [{elapsed_precise}]")
            .context("progress template")?,
    );
    repux_volume::synth::write_dataset(&a.out, a.cases, a.seed, |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    println!(
        "wrote {} phantom cases to {} (nnU-Net v2 layout: dataset.json, imagesTr/, labelsTr/)",
        a.cases,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
