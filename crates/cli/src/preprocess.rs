use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use repux_prep::cache::{preprocess_dataset, Outcome};
use repux_prep::Plans;
use repux_volume::Dataset;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Dataset folder.
    pub dataset: PathBuf,
    /// Plans file from `repux plan`.
    #[arg(long)]
    pub plans: PathBuf,
    /// Cache folder [default: DATASET/preprocessed] — the same flag `repux train` reads it with
    /// (`--out` is accepted as an older spelling).
    #[arg(long, alias = "out")]
    pub cache: Option<PathBuf>,
    /// Redo cases that are already up to date.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let ds = Dataset::open(&a.dataset)?;
    let plans = Plans::load(&a.plans).context("reading the plans")?;
    let out = a.cache.unwrap_or_else(|| a.dataset.join("preprocessed"));
    let bar = ProgressBar::new(ds.training.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "preprocess {bar:30} {pos}/{len} cases [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .context("progress template")?,
    );
    let results = preprocess_dataset(&ds, &plans, &out, a.force, |id, _| {
        bar.set_message(id.to_string());
        bar.inc(1)
    })?;
    bar.finish_and_clear();
    let written = results.iter().filter(|r| r.1 == Outcome::Written).count();
    let skipped = results.iter().filter(|r| r.1 == Outcome::UpToDate).count();
    let failed: Vec<_> = results
        .iter()
        .filter_map(|(id, o)| {
            if let Outcome::Failed(m) = o {
                Some((id, m))
            } else {
                None
            }
        })
        .collect();
    println!(
        "{} cases in {}: {written} written, {skipped} already up to date, {} failed",
        results.len(),
        out.display(),
        failed.len()
    );
    for (id, m) in &failed {
        println!("  failed {id}: {m}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
