use anyhow::{anyhow, Result};
use repux_eval::evaluate::{
    evaluate_folders_remapped, labels_from_json, means, write_summary, Remap, Tolerances,
};
use std::collections::BTreeMap;
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
    Ok(ExitCode::SUCCESS)
}
