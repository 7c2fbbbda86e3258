use crate::args::pair;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Image file, or a folder holding one DICOM series.
    pub image: PathBuf,
    /// Label map on the image's grid (optional).
    pub label: Option<PathBuf>,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Display window lo,hi [default: the 1st–99th percentile].
    #[arg(long, value_parser = pair, allow_hyphen_values = true)]
    pub window: Option<(f64, f64)>,
    /// JSON with label names (name → value, or a dataset.json/plans.json) for the legend.
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let image = repux_volume::read_volume(&a.image)?;
    // The label must cover the image's voxels; one stored in another axis order is reoriented.
    let label = match a.label.as_deref() {
        Some(p) => Some(
            repux_volume::read_volume(p)?
                .onto_grid(&image.geometry, repux_volume::dataset::GEOMETRY_TOLERANCE)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{}: not on the grid of {}: {e}",
                        p.display(),
                        a.image.display()
                    )
                })?,
        ),
        None => None,
    };
    let names = match &a.labels {
        Some(p) => repux_eval::evaluate::label_names_from_json(p)?,
        None => BTreeMap::new(),
    };
    repux_plot::draw_overlay(&image, label.as_ref(), &names, a.window, &a.out)?;
    println!("overlay written to {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
