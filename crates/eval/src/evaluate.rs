//! `repux evaluate`: every case of a reference folder against the prediction with the same case
//! id, per class, in parallel; `summary.json` in nnU-Net's shape (`foreground_mean`, `mean`,
//! `metric_per_case`) plus `summary.csv` and `summary.md`. JSON has no NaN or ∞: those are
//! written as `null` (NaN = both masks empty, excluded from means; ∞ = one mask empty).

use crate::metrics::{class_metrics, ClassMetrics};
use rayon::prelude::*;
use repux_volume::dataset::{case_id, GEOMETRY_TOLERANCE};
use repux_volume::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct CaseResult {
    pub case: String,
    pub prediction_file: PathBuf,
    pub reference_file: PathBuf,
    pub metrics: BTreeMap<u32, ClassMetrics>,
}

/// NSD tolerance in mm per class (default 1 mm).
#[derive(Clone, Debug)]
pub struct Tolerances {
    pub default: f64,
    pub per_class: BTreeMap<u32, f64>,
}

impl Tolerances {
    pub fn of(&self, class: u32) -> f64 {
        *self.per_class.get(&class).unwrap_or(&self.default)
    }
}

/// Label values rewritten before evaluation, e.g. to score a FLARE model (kidney = 2) on KiTS
/// (kidney and masses = 1, 2, 3): `pred {2→1}`, `reference {1→1, 2→1, 3→1}`. A non-empty map
/// sends every value it does not name to background.
#[derive(Clone, Debug, Default)]
pub struct Remap {
    pub pred: BTreeMap<u32, u32>,
    pub reference: BTreeMap<u32, u32>,
}

impl Remap {
    /// Parses `a=b,c=d` into a map.
    pub fn parse(s: &str) -> std::result::Result<BTreeMap<u32, u32>, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let (a, b) = p
                    .split_once('=')
                    .ok_or_else(|| format!("{p:?} is not from=to"))?;
                let num = |x: &str| {
                    x.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("{x:?} is not a label value"))
                };
                Ok((num(a)?, num(b)?))
            })
            .collect()
    }
}

fn apply(map: &BTreeMap<u32, u32>, data: &[f32]) -> Vec<f32> {
    data.iter()
        .map(|&v| {
            if v >= 0.0 {
                map.get(&(v as u32)).copied().unwrap_or(0) as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// The image files of a folder (hidden files skipped) by case id.
pub fn image_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        let name = repux_volume::fs::file_name(&p);
        if p.is_file() && !name.starts_with('.') && repux_volume::Format::of(&p).is_some() {
            out.insert(case_id(&p), p);
        }
    }
    Ok(out)
}

/// Labels to evaluate: from a JSON file (an object name → value, or a file with such a `labels`
/// object: dataset.json, plans.json), background excluded.
pub fn labels_from_json(path: &Path) -> Result<Vec<u32>> {
    let labels: Vec<u32> = label_names_from_json(path)?
        .into_keys()
        .filter(|&v| v > 0)
        .collect();
    if labels.is_empty() {
        return Err(Error::invalid(path, "no foreground label values found"));
    }
    Ok(labels)
}

/// Label value → name from a JSON object of name → value (nnU-Net's `dataset.json`, repux's
/// `plans.json`, or a bare object) or of value → name (the Decathlon's `dataset.json`),
/// background included. A value that is not a non-negative
/// integer is an error naming the label (nnU-Net's region lists are not supported).
pub fn label_names_from_json(path: &Path) -> Result<BTreeMap<u32, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::new(path, repux_volume::ErrorKind::Json(e.to_string())))?;
    let obj = v.get("labels").unwrap_or(&v).as_object().ok_or_else(|| {
        Error::invalid(
            path,
            "expected an object of label name → value (or a \"labels\" key holding one)",
        )
    })?;
    let mut names = BTreeMap::new();
    for (name, value) in obj {
        // The Decathlon's dataset.json maps the other way: {"1": "liver"}.
        if let (Some(s), Ok(x)) = (value.as_str(), name.parse::<u32>()) {
            names.insert(x, s.to_string());
            continue;
        }
        let x = value
            .as_u64()
            .filter(|&x| x <= u32::MAX as u64)
            .ok_or_else(|| {
                Error::invalid(
                    path,
                    format!(
                        "label {name:?}: {value} is not a label value (a non-negative integer)"
                    ),
                )
            })?;
        names.insert(x as u32, name.clone());
    }
    Ok(names)
}

/// Evaluates one prediction against its reference.
pub fn evaluate_case(
    pred: &Path,
    reference: &Path,
    labels: &[u32],
    tol: &Tolerances,
    remap: &Remap,
) -> Result<CaseResult> {
    let (p, r) = rayon::join(
        || repux_volume::read_volume(pred),
        || repux_volume::read_volume(reference),
    );
    let (mut p, mut r) = (p?, r?);
    if !remap.pred.is_empty() {
        p.data = apply(&remap.pred, &p.data);
    }
    if !remap.reference.is_empty() {
        r.data = apply(&remap.reference, &r.data);
    }
    // A reference stored in another axis order over the same voxels is reoriented onto the
    // prediction's grid (a DICOM series' labels as NIfTI, for one).
    let r = r.onto_grid(&p.geometry, GEOMETRY_TOLERANCE).map_err(|e| {
        Error::invalid(
            pred,
            format!("does not match the reference {}: {e}", reference.display()),
        )
    })?;
    let n = r.geometry.voxels();
    let (pv, rv) = (&p.data[..n], &r.data[..n]);
    let metrics = labels
        .par_iter()
        .map(|&c| {
            let pm: Vec<bool> = pv.iter().map(|&v| v as u32 == c && v >= 0.0).collect();
            let rm: Vec<bool> = rv.iter().map(|&v| v as u32 == c && v >= 0.0).collect();
            (
                c,
                class_metrics(&pm, &rm, r.geometry.shape, r.geometry.spacing, tol.of(c)),
            )
        })
        .collect();
    Ok(CaseResult {
        case: case_id(reference),
        prediction_file: pred.to_path_buf(),
        reference_file: reference.to_path_buf(),
        metrics,
    })
}

/// Evaluates every reference case. A missing prediction is an error naming the cases.
pub fn evaluate_folders(
    pred_dir: &Path,
    ref_dir: &Path,
    labels: Option<Vec<u32>>,
    tol: &Tolerances,
) -> Result<Vec<CaseResult>> {
    evaluate_folders_remapped(pred_dir, ref_dir, labels, tol, &Remap::default())
}

/// [`evaluate_folders`] with label values rewritten first (labels default to the mapped
/// reference values).
pub fn evaluate_folders_remapped(
    pred_dir: &Path,
    ref_dir: &Path,
    labels: Option<Vec<u32>>,
    tol: &Tolerances,
    remap: &Remap,
) -> Result<Vec<CaseResult>> {
    let refs = image_files(ref_dir)?;
    if refs.is_empty() {
        return Err(Error::invalid(ref_dir, "holds no reference images"));
    }
    let preds = image_files(pred_dir)?;
    let missing: Vec<&String> = refs.keys().filter(|k| !preds.contains_key(*k)).collect();
    if !missing.is_empty() {
        return Err(Error::invalid(
            pred_dir,
            format!(
                "no prediction for {} reference case(s): {}",
                missing.len(),
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let labels = match labels {
        Some(l) => l,
        None => {
            // The union of foreground values in the references.
            let mut set = std::collections::BTreeSet::new();
            for p in refs.values() {
                for v in repux_volume::read_volume(p)?.data {
                    if v > 0.0 {
                        let v = if remap.reference.is_empty() {
                            v as u32
                        } else {
                            remap.reference.get(&(v as u32)).copied().unwrap_or(0)
                        };
                        if v > 0 {
                            set.insert(v);
                        }
                    }
                }
            }
            set.into_iter().collect()
        }
    };
    refs.iter()
        .map(|(id, r)| evaluate_case(&preds[id], r, &labels, tol, remap))
        .collect()
}

fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

const KEYS: [&str; 11] = [
    "Dice", "IoU", "HD95", "ASD", "NSD", "TP", "FP", "FN", "TN", "n_pred", "n_ref",
];

fn values(m: &ClassMetrics) -> [f64; 11] {
    [
        m.Dice,
        m.IoU,
        m.HD95,
        m.ASD,
        m.NSD,
        m.TP as f64,
        m.FP as f64,
        m.FN as f64,
        m.TN as f64,
        m.n_pred as f64,
        m.n_ref as f64,
    ]
}

fn obj(vals: &[f64; 11]) -> Value {
    Value::Object(
        KEYS.iter()
            .zip(vals)
            .map(|(k, v)| (k.to_string(), num(*v)))
            .collect::<Map<_, _>>(),
    )
}

/// Mean ignoring NaN (nnU-Net's nanmean); NaN if all are NaN.
fn nanmean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v
        .filter(|x| !x.is_nan())
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Per-class means and the foreground mean (mean over classes of the class means).
pub fn means(results: &[CaseResult]) -> (BTreeMap<u32, [f64; 11]>, [f64; 11]) {
    let classes: Vec<u32> = results
        .first()
        .map(|r| r.metrics.keys().copied().collect())
        .unwrap_or_default();
    let per_class: BTreeMap<u32, [f64; 11]> = classes
        .iter()
        .map(|&c| {
            (
                c,
                std::array::from_fn(|i| {
                    nanmean(
                        results
                            .iter()
                            .filter_map(|r| r.metrics.get(&c))
                            .map(|m| values(m)[i]),
                    )
                }),
            )
        })
        .collect();
    let fg = std::array::from_fn(|i| nanmean(per_class.values().map(|v| v[i])));
    (per_class, fg)
}

/// Writes summary.json, summary.csv and summary.md into `out` (atomically each).
pub fn write_summary(results: &[CaseResult], out: &Path, tol: &Tolerances) -> Result<Value> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let (per_class, fg) = means(results);
    let summary = json!({
        "foreground_mean": obj(&fg),
        "mean": Value::Object(per_class.iter().map(|(c, v)| (c.to_string(), obj(v))).collect()),
        "metric_per_case": results.iter().map(|r| json!({
            "metrics": Value::Object(r.metrics.iter().map(|(c, m)| (c.to_string(), obj(&values(m)))).collect()),
            "prediction_file": r.prediction_file.to_string_lossy(),
            "reference_file": r.reference_file.to_string_lossy(),
        })).collect::<Vec<_>>(),
        "nsd_tolerance_mm": {"default": tol.default, "per_class": tol.per_class.iter().map(|(c, t)| (c.to_string(), *t)).collect::<BTreeMap<_, _>>()},
    });
    repux_volume::fs::write_json(&out.join("summary.json"), &summary)?;
    let mut csv = format!("case,class,{}\n", KEYS.join(","));
    for r in results {
        for (c, m) in &r.metrics {
            csv.push_str(&format!(
                "{},{c},{}\n",
                r.case,
                values(m)
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
    }
    repux_volume::fs::write_bytes_atomic(&out.join("summary.csv"), csv.as_bytes())?;
    repux_volume::fs::write_bytes_atomic(
        &out.join("summary.md"),
        markdown(&per_class, &fg).as_bytes(),
    )?;
    Ok(summary)
}

/// The per-class mean table (Dice, IoU, HD95, ASD in mm, NSD), foreground mean last.
pub fn markdown(per_class: &BTreeMap<u32, [f64; 11]>, fg: &[f64; 11]) -> String {
    let mut s = String::from(
        "| class | Dice | IoU | HD95 (mm) | ASD (mm) | NSD |\n|---|---|---|---|---|---|\n",
    );
    let row = |name: String, v: &[f64; 11]| {
        format!(
            "| {name} | {:.4} | {:.4} | {:.2} | {:.2} | {:.4} |\n",
            v[0], v[1], v[2], v[3], v[4]
        )
    };
    for (c, v) in per_class {
        s.push_str(&row(c.to_string(), v));
    }
    s.push_str(&row("foreground mean".into(), fg));
    s
}
