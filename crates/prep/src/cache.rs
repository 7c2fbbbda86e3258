//! The preprocessed cache (`repux preprocess`): per case `<id>_image.npy` (float16, C×D×H×W),
//! `<id>_label.npy` (uint8 or uint16, D×H×W) and `<id>.json` (the inverse record, sampled
//! foreground locations per class, and the key it was made with). The JSON is written last, so a
//! case is complete exactly when its JSON exists with the current key; re-running skips those.

use crate::pipeline::{preprocess, InverseRecord};
use crate::plan::Plans;
use crate::Error;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use repux_volume::npy::{self, NpyType};
use repux_volume::{Case, Dataset};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Foreground locations kept per class for the sampler.
pub const LOCATIONS_PER_CLASS: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseMeta {
    pub id: String,
    /// Hash of the plans and the source files' names, sizes and modification times.
    pub key: String,
    pub channels: usize,
    pub shape: [usize; 3],
    pub record: InverseRecord,
    /// Class value → up to [`LOCATIONS_PER_CLASS`] voxel indices (i, j, k) of that class.
    pub class_locations: BTreeMap<u32, Vec<[u32; 3]>>,
}

/// A case loaded from the cache into memory.
#[derive(Clone, Debug)]
pub struct CachedCase {
    pub meta: CaseMeta,
    /// C × D × H × W.
    pub image: Vec<f32>,
    /// D × H × W label values.
    pub labels: Vec<u16>,
}

/// FNV-1a, 64 bit: a stable content key (not cryptographic).
fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

/// The key a case's cache entry must carry to be up to date.
pub fn case_key(plans: &Plans, case: &Case) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    fnv(
        &mut h,
        // A struct of numbers, strings and enums: serde_json fails only on maps with non-string
        // keys or a failing custom Serialize, neither of which it has.
        serde_json::to_string(&plans.prep_config())
            .expect("the preprocessing config serialises to JSON")
            .as_bytes(),
    );
    for p in case.images.iter().chain(case.label.iter()) {
        // A DICOM series is a folder: every file the reader would read counts. An unreadable
        // folder is keyed by its own path; reading the case then reports the error.
        let mut files = vec![p.clone()];
        if p.is_dir() {
            if let Ok(f) = repux_volume::dicom::files_under(p) {
                files = f;
            }
        }
        for p in &files {
            fnv(&mut h, p.to_string_lossy().as_bytes());
            if let Ok(m) = std::fs::metadata(p) {
                fnv(&mut h, &m.len().to_le_bytes());
                if let Ok(t) = m.modified().map(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos()
                }) {
                    fnv(&mut h, &t.to_le_bytes());
                }
            }
        }
    }
    format!("{h:016x}")
}

fn paths(dir: &Path, id: &str) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("{id}_image.npy")),
        dir.join(format!("{id}_label.npy")),
        dir.join(format!("{id}.json")),
    )
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Written,
    UpToDate,
    Failed(String),
}

/// Preprocesses every training case of `ds` into `out` in parallel; `progress` is called once per
/// finished case. A failing case is reported and the others still complete.
pub fn preprocess_dataset(
    ds: &Dataset,
    plans: &Plans,
    out: &Path,
    force: bool,
    progress: impl Fn(&str, &Outcome) + Sync,
) -> Result<Vec<(String, Outcome)>, Error> {
    std::fs::create_dir_all(out).map_err(|e| repux_volume::Error::io(out, e))?;
    plans.save(&out.join("plans.json"))?;
    let results = ds
        .training
        .par_iter()
        .map(|case| {
            let outcome = match cache_case(case, plans, out, force) {
                Ok(o) => o,
                Err(e) => Outcome::Failed(e.to_string()),
            };
            progress(&case.id, &outcome);
            (case.id.clone(), outcome)
        })
        .collect();
    Ok(results)
}

/// Is the cached entry for `case` present and made with the current key?
pub fn is_up_to_date(dir: &Path, plans: &Plans, case: &Case) -> bool {
    let (img, lab, meta) = paths(dir, &case.id);
    if !(img.is_file() && lab.is_file()) {
        return false;
    }
    std::fs::read_to_string(&meta)
        .ok()
        .and_then(|t| serde_json::from_str::<CaseMeta>(&t).ok())
        .is_some_and(|m| m.key == case_key(plans, case))
}

/// Every label value must be one of the plans' labels (dataset.json's): a stray value would
/// otherwise be clamped into some class or index past the one-hot.
fn check_label_values(labels: &[f32], plans: &Plans, path: &Path) -> Result<(), Error> {
    let allowed: std::collections::BTreeSet<u32> = plans.labels.values().copied().collect();
    for &v in labels {
        if v.fract() != 0.0 || v < 0.0 || !allowed.contains(&(v as u32)) {
            return Err(Error::Case { path: path.to_path_buf(), problem: format!("label value {v} is not one of the plans' labels {:?} (run `repux dataset check`)", allowed.iter().collect::<Vec<_>>()) });
        }
    }
    Ok(())
}

fn cache_case(case: &Case, plans: &Plans, out: &Path, force: bool) -> Result<Outcome, Error> {
    let key = case_key(plans, case);
    if !force && is_up_to_date(out, plans, case) {
        return Ok(Outcome::UpToDate);
    }
    let image = crate::read_case_image(case)?;
    let label_path = case
        .label
        .as_ref()
        .ok_or_else(|| Error::Other(format!("case {}: no label file", case.id)))?;
    let label = repux_volume::read_volume(label_path)?;
    let pre = preprocess(&image, Some(&label), &plans.prep_config()).map_err(|e| Error::Case {
        path: label_path.clone(),
        problem: e.to_string(),
    })?;
    let labels = pre.labels.ok_or_else(|| Error::Case {
        path: label_path.clone(),
        problem: "preprocessing returned no label map".into(),
    })?;
    check_label_values(&labels, plans, label_path)?;
    let shape = pre.image.geometry.shape;
    let (img_p, lab_p, meta_p) = paths(out, &case.id);
    npy::write(
        &img_p,
        &[pre.image.channels, shape[0], shape[1], shape[2]],
        &pre.image.data,
        NpyType::F16,
    )?;
    let max = labels.iter().cloned().fold(0.0f32, f32::max);
    npy::write(
        &lab_p,
        &shape,
        &labels,
        if max <= 255.0 {
            NpyType::U8
        } else {
            NpyType::U16
        },
    )?;
    // Sampled foreground locations per class, seeded by the case id for reproducibility.
    let mut by_class: BTreeMap<u32, Vec<[u32; 3]>> = BTreeMap::new();
    let [_, h, w] = shape;
    for (i, &v) in labels.iter().enumerate() {
        if v > 0.0 {
            by_class.entry(v as u32).or_default().push([
                (i / (h * w)) as u32,
                ((i / w) % h) as u32,
                (i % w) as u32,
            ]);
        }
    }
    let mut seed = 0xcbf2_9ce4_8422_2325u64;
    fnv(&mut seed, case.id.as_bytes());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for locs in by_class.values_mut() {
        if locs.len() > LOCATIONS_PER_CLASS {
            locs.shuffle(&mut rng);
            locs.truncate(LOCATIONS_PER_CLASS);
            locs.sort_unstable();
        }
    }
    let meta = CaseMeta {
        id: case.id.clone(),
        key,
        channels: pre.image.channels,
        shape,
        record: pre.record,
        class_locations: by_class,
    };
    let text = serde_json::to_string(&meta).map_err(|e| Error::Other(e.to_string()))?;
    repux_volume::fs::write_bytes_atomic(&meta_p, text.as_bytes())?;
    Ok(Outcome::Written)
}

/// Loads one cached case into memory.
pub fn load_case(dir: &Path, id: &str) -> Result<CachedCase, Error> {
    let (img_p, lab_p, meta_p) = paths(dir, id);
    let text = std::fs::read_to_string(&meta_p).map_err(|e| repux_volume::Error::io(&meta_p, e))?;
    let meta: CaseMeta = serde_json::from_str(&text).map_err(|e| Error::Case {
        path: meta_p.clone(),
        problem: format!("invalid cache entry: {e}"),
    })?;
    let img = npy::read(&img_p)?;
    let lab = npy::read(&lab_p)?;
    let [d, h, w] = meta.shape;
    if img.shape != [meta.channels, d, h, w] || lab.shape != [d, h, w] {
        return Err(Error::Case {
            path: img_p,
            problem: format!(
                "cached arrays {:?} / {:?} do not match the entry's shape {:?}",
                img.shape, lab.shape, meta.shape
            ),
        });
    }
    Ok(CachedCase {
        meta,
        image: img.data,
        labels: lab.data.iter().map(|&v| v as u16).collect(),
    })
}

/// Ids of complete entries (those with a JSON) in a cache folder, sorted.
pub fn cached_ids(dir: &Path) -> Result<Vec<String>, Error> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| repux_volume::Error::io(dir, e))? {
        let e = e.map_err(|e| repux_volume::Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(id) = name.strip_suffix(".json") {
            if id != "plans" && !name.starts_with('.') {
                ids.push(id.to_string());
            }
        }
    }
    ids.sort();
    Ok(ids)
}
