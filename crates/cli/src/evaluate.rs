use anyhow::Context;
use anyhow::{anyhow, Result};
use repux_eval::evaluate::{
    evaluate_folders_remapped, image_files, label_names_from_json, labels_from_json, means,
    write_summary, CaseResult, Remap, Tolerances,
};
use repux_plot::{draw_qc_sheet, QcCase};
use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Folder of predicted label maps (matched to references by case id).
    #[arg(long)]
    pub pred: PathBuf,
    /// Folder of reference label maps.
    #[arg(long = "ref")]
    pub reference: PathBuf,
    /// JSON with the labels to evaluate (name → value, or a dataset.json/plans.json with a
    /// "labels" object) [default: every foreground value in the references].
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Where to write summary.json/.csv/.md [default: the prediction folder].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// NSD tolerance in mm for every class.
    #[arg(long, default_value_t = 1.0)]
    pub nsd_tolerance: f64,
    /// Per-class NSD tolerances, e.g. 1=2.0,4=1.0 (class=mm).
    #[arg(long)]
    pub nsd_tolerance_per_class: Option<String>,
    /// Rewrite predicted label values first, e.g. `2=1` (a FLARE model's kidney → KiTS's 1); values not named become background.
    #[arg(long)]
    pub pred_map: Option<String>,
    /// Also draw `qc.png` beside the summary: per case, the axial slice with the most reference
    /// foreground, prediction filled, reference outlined, captioned with its mean Dice.
    #[arg(long)]
    pub qc: bool,
    /// Images under the QC sheet's slices, matched by case id (`<case>_0000.nii.gz` or
    /// `<case>.nii.gz`, as in imagesTs/, or a DICOM series folder `<case>/`) [default: label maps
    /// on dark gray].
    #[arg(long, requires = "qc")]
    pub images: Option<PathBuf>,
    /// Rewrite reference label values first, e.g. `1=1,2=1,3=1` (KiTS kidney, tumour, cyst → kidney).
    #[arg(long)]
    pub ref_map: Option<String>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mut per_class = BTreeMap::new();
    if let Some(s) = &a.nsd_tolerance_per_class {
        for part in s.split(',') {
            let (c, t) = part
                .split_once('=')
                .ok_or_else(|| anyhow!("--nsd-tolerance-per-class: {part:?} is not class=mm"))?;
            per_class.insert(
                c.trim().parse::<u32>().map_err(|_| {
                    anyhow!("--nsd-tolerance-per-class: {c:?} is not a class value")
                })?,
                t.trim()
                    .parse::<f64>()
                    .map_err(|_| anyhow!("--nsd-tolerance-per-class: {t:?} is not a number"))?,
            );
        }
    }
    let tol = Tolerances {
        default: a.nsd_tolerance,
        per_class,
    };
    let labels = a.labels.as_deref().map(labels_from_json).transpose()?;
    let remap = Remap {
        pred: a
            .pred_map
            .as_deref()
            .map(Remap::parse)
            .transpose()
            .map_err(|e| anyhow!("--pred-map: {e}"))?
            .unwrap_or_default(),
        reference: a
            .ref_map
            .as_deref()
            .map(Remap::parse)
            .transpose()
            .map_err(|e| anyhow!("--ref-map: {e}"))?
            .unwrap_or_default(),
    };
    let results = evaluate_folders_remapped(&a.pred, &a.reference, labels, &tol, &remap)?;
    let out = a.output.unwrap_or_else(|| a.pred.clone());
    write_summary(&results, &out, &tol)?;
    let (per, fg) = means(&results);
    println!("{} cases evaluated", results.len());
    print!("{}", repux_eval::evaluate::markdown(&per, &fg));
    println!(
        "summary.json, summary.csv and summary.md written to {}",
        out.display()
    );
    if a.qc {
        let names = match &a.labels {
            Some(p) => label_names_from_json(p)?,
            None => BTreeMap::new(),
        };
        let qc = out.join("qc.png");
        draw_qc(&results, a.images.as_deref(), &names, &qc)?;
        println!("QC sheet written to {}", qc.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Renders one small tile per case (reading the maps again, one case at a time) and the sheet.
fn draw_qc(
    results: &[CaseResult],
    images: Option<&Path>,
    names: &BTreeMap<u32, String>,
    out: &Path,
) -> Result<()> {
    let mut image_of: BTreeMap<String, std::path::PathBuf> = match images {
        Some(dir) => image_files(dir)?
            .into_iter()
            .map(|(id, p)| {
                let case = repux_volume::dataset::split_channel(&id)
                    .filter(|&(_, ch)| ch == 0)
                    .map_or(id.clone(), |(case, _)| case.to_string());
                (case, p)
            })
            .collect(),
        None => BTreeMap::new(),
    };
    // DICOM series folders named by case (as `predict -i` reads them).
    if let Some(dir) = images {
        let rd = std::fs::read_dir(dir).map_err(|e| repux_volume::Error::io(dir, e))?;
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() && !name.starts_with('.') {
                image_of.entry(name).or_insert(p);
            }
        }
    }
    let mut tiles = Vec::with_capacity(results.len());
    for r in results {
        let dice: Vec<f64> = r
            .metrics
            .values()
            .map(|m| m.Dice)
            .filter(|d| d.is_finite())
            .collect();
        let mean = if dice.is_empty() {
            f64::NAN
        } else {
            dice.iter().sum::<f64>() / dice.len() as f64
        };
        let pred = repux_volume::read_volume(&r.prediction_file)?;
        // The reference (and image) as the metrics saw them: on the prediction's grid.
        let onto = |v: repux_volume::Volume, p: &Path| {
            v.onto_grid(&pred.geometry, repux_volume::dataset::GEOMETRY_TOLERANCE)
                .map_err(|e| {
                    anyhow!(
                        "{}: not on the grid of {}: {e}",
                        p.display(),
                        r.prediction_file.display()
                    )
                })
        };
        let reference = onto(
            repux_volume::read_volume(&r.reference_file)?,
            &r.reference_file,
        )?;
        let image = match (images, image_of.get(&r.case)) {
            (Some(dir), None) => {
                return Err(anyhow!(
                "--images {}: no image for case {} (expected {}_0000 or {} with an image ending)",
                dir.display(),
                r.case,
                r.case,
                r.case
            ))
            }
            (_, Some(p)) => Some(onto(repux_volume::read_volume(p)?, p)?),
            (None, None) => None,
        };
        let tile = QcCase::render(
            &r.case,
            mean,
            &pred,
            &reference,
            image.as_ref(),
            &r.prediction_file,
        )
        .with_context(|| format!("QC tile of case {}", r.case))?;
        tiles.push(tile);
    }
    draw_qc_sheet(&tiles, names, out)?;
    Ok(())
}
