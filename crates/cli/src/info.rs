use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Image file (.nii, .nii.gz, .hdr/.img, .nrrd, .nhdr).
    pub file: PathBuf,
    /// Print one JSON object with the keys shape, datatype, spacing, affine, orientation, min,
    /// max, mean, sum.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Info {
    shape: Vec<usize>,
    datatype: &'static str,
    spacing: [f64; 3],
    affine: [[f64; 4]; 4],
    orientation: String,
    min: f64,
    max: f64,
    mean: f64,
    sum: f64,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let l = repux_volume::read(&a.file)?;
    let g = &l.volume.geometry;
    let info = Info {
        shape: l.shape.clone(),
        datatype: l.datatype.name(),
        spacing: g.spacing,
        affine: g.affine,
        orientation: g.orientation(),
        min: l.stats.min,
        max: l.stats.max,
        mean: l.stats.mean,
        sum: l.stats.sum,
    };
    if a.json {
        println!("{}", serde_json::to_string(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("file         {}", a.file.display());
    println!("shape        {:?}", info.shape);
    println!("datatype     {}", info.datatype);
    println!("spacing      {:?}", info.spacing);
    println!("orientation  {}", info.orientation);
    for (r, row) in info.affine.iter().enumerate() {
        let label = if r == 0 { "affine" } else { "" };
        println!(
            "{label:<12} [{}]",
            row.iter()
                .map(|v| format!("{v:>11.5}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!("min / max    {} / {}", info.min, info.max);
    println!("mean         {}", info.mean);
    println!("sum          {}", info.sum);
    if l.stats.nonfinite > 0 {
        println!(
            "non-finite   {} voxels are NaN or infinite",
            l.stats.nonfinite
        );
    }
    Ok(ExitCode::SUCCESS)
}
