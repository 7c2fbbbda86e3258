use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Image file (.nii, .nii.gz, .hdr/.img, .nrrd, .nhdr, .mha, .mhd) or a folder of DICOM
    /// files (searched recursively).
    pub file: PathBuf,
    /// Print one JSON object with the keys shape, datatype, spacing, affine, orientation, min,
    /// max, mean, sum.
    #[arg(long)]
    pub json: bool,
    /// With a DICOM folder: the SeriesInstanceUID to describe [default: the folder's only
    /// series; with several, they are listed].
    #[arg(long)]
    pub series: Option<String>,
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
    if a.file.is_dir() && a.series.is_none() {
        let series = repux_volume::dicom::list_series(&a.file)?;
        if series.len() > 1 {
            if a.json {
                println!("{}", serde_json::to_string(&series_json(&series))?);
            } else {
                println!("{} DICOM series in {}:", series.len(), a.file.display());
                for s in &series {
                    println!(
                        "  {}  {:<4} {:>5} files  {}",
                        s.uid,
                        s.modality,
                        s.files.len(),
                        s.description
                    );
                }
                println!("describe one with --series UID");
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    let l = match &a.series {
        Some(uid) => repux_volume::dicom::read_series(&a.file, Some(uid))?,
        None => repux_volume::read(&a.file)?,
    };
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

/// `{"series": [{"uid", "modality", "description", "files"}]}`, files as counts.
fn series_json(series: &[repux_volume::dicom::SeriesInfo]) -> serde_json::Value {
    serde_json::json!({
        "series": series
            .iter()
            .map(|s| serde_json::json!({
                "uid": s.uid,
                "modality": s.modality,
                "description": s.description,
                "files": s.files.len(),
            }))
            .collect::<Vec<_>>()
    })
}
