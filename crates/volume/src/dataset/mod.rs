//! Dataset layouts, each read as shipped into one [`Dataset`] (case id → image channel paths,
//! label path), and the integrity check `repux dataset check` runs (nnU-Net's
//! `verify_dataset_integrity`, plus NaN/inf and geometry checks).
//!
//! Layouts:
//! - nnU-Net v2 raw: `dataset.json` (`channel_names`, `labels`, `numTraining`, `file_ending`,
//!   optional `dataset` with explicit paths), `imagesTr/<case>_<XXXX><ending>`,
//!   `labelsTr/<case><ending>`, optional `imagesTs/`.
//! - Medical Segmentation Decathlon: `dataset.json` (`modality`, `labels`, `training`, `test`);
//!   multi-channel cases are 4-D files.
//! - Paired folders: `images/` and `labels/` (or `imagesTr/` and `labelsTr/` without a
//!   `dataset.json`), matched by file name; an image `<case>_<XXXX>` is channel XXXX of `<case>`.
//! - KiTS (19/21/23): case folders `case_XXXXX/imaging.nii.gz` + `segmentation.nii.gz`, directly
//!   in the folder or under `data/`; a case folder without a segmentation is a test case.
//! - LiTS: `volume-N.nii` + `segmentation-N.nii`, in the folder or its subfolders (the
//!   challenge ships `Training Batch 1/` and `Training Batch 2/`); case id `liver_N`.
//! - TCIA Pancreas-CT: DICOM series in `PANCREAS_NNNN/<study>/<series>/` + `labelNNNN.nii.gz`,
//!   as NBIA downloads them; the image of a case is its patient folder.
//!
//! One layout per file (`nnunet`, `msd`, `paired`, `kits`, `lits`, `tcia`); `check` is the
//! integrity check.

mod check;
mod kits;
mod lits;
mod msd;
mod nnunet;
mod paired;
mod tcia;

pub use check::{check, CaseCheck, CheckReport, GEOMETRY_TOLERANCE};

use crate::error::{Error, Result};
use crate::Format;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Layout {
    NnUnetV2,
    Decathlon,
    Paired,
    Kits,
    Lits,
    TciaPancreas,
}

/// One case: its image channel files (in channel order; a DICOM series is its folder) and its
/// label file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Case {
    pub id: String,
    pub images: Vec<PathBuf>,
    pub label: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    pub name: String,
    /// Channel (modality) names in channel order, e.g. `["CT"]`.
    pub channel_names: Vec<String>,
    /// Declared labels `(name, value)`, sorted by value, background included; empty when the
    /// layout declares none (paired folders).
    pub labels: Vec<(String, u32)>,
    pub file_ending: String,
    pub training: Vec<Case>,
    pub test: Vec<Case>,
    /// Problems found while listing files (an image without a label, a missing channel, …).
    pub problems: Vec<String>,
}

pub(super) fn json_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::new(path, crate::ErrorKind::Json(msg.into()))
}

pub(super) fn key<'a>(v: &'a Value, k: &str, path: &Path, needs: &str) -> Result<&'a Value> {
    v.get(k)
        .ok_or_else(|| json_err(path, format!("missing key \"{k}\" ({needs})")))
}

/// `{"0": "CT", "1": "T2"}` → names in numeric key order.
pub(super) fn indexed_names(v: &Value, what: &str, path: &Path) -> Result<Vec<String>> {
    let obj = v.as_object().ok_or_else(|| {
        json_err(
            path,
            format!("\"{what}\" must be an object like {{\"0\": \"CT\"}}"),
        )
    })?;
    let mut items: Vec<(usize, String)> = Vec::new();
    for (k, n) in obj {
        let i = k.parse::<usize>().map_err(|_| {
            json_err(
                path,
                format!("\"{what}\" key {k:?} is not a channel number"),
            )
        })?;
        let n = n
            .as_str()
            .ok_or_else(|| json_err(path, format!("\"{what}\".{k} must be a string")))?;
        items.push((i, n.to_string()));
    }
    items.sort();
    for (pos, (i, _)) in items.iter().enumerate() {
        if *i != pos {
            return Err(json_err(
                path,
                format!("\"{what}\" keys must be 0..{} without gaps", items.len()),
            ));
        }
    }
    Ok(items.into_iter().map(|(_, n)| n).collect())
}

pub(super) const NNUNET_KEYS: &str =
    "nnU-Net v2 dataset.json needs channel_names, labels, numTraining, file_ending";

pub(super) const MSD_KEYS: &str = "Decathlon dataset.json needs modality, labels, training";

impl Dataset {
    /// Detects the layout of `dir` and lists its cases. Errors name the file and the problem;
    /// listing problems that do not stop reading (e.g. an image without its label) are kept in
    /// `problems` for [`check`] to report.
    pub fn open(dir: &Path) -> Result<Dataset> {
        if !dir.is_dir() {
            return Err(Error::invalid(dir, "not a folder"));
        }
        let json_path = dir.join("dataset.json");
        let ds = if json_path.is_file() {
            let text = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
            let v: Value =
                serde_json::from_str(&text).map_err(|e| json_err(&json_path, e.to_string()))?;
            if v.get("channel_names").is_some() {
                nnunet::open(dir, &json_path, &v)?
            } else if v.get("training").is_some() || v.get("modality").is_some() {
                msd::open(dir, &json_path, &v)?
            } else {
                return Err(json_err(&json_path, "has neither \"channel_names\" (nnU-Net v2) nor \"training\"/\"modality\" (Decathlon)"));
            }
        } else if let Some((img, lab)) = [("images", "labels"), ("imagesTr", "labelsTr")]
            .iter()
            .map(|(i, l)| (dir.join(i), dir.join(l)))
            .find(|(i, _)| i.is_dir())
        {
            paired::open(dir, &img, &lab)?
        } else if let Some(ds) = kits::open(dir)? {
            ds
        } else if let Some(ds) = lits::open(dir)? {
            ds
        } else if let Some(ds) = tcia::open(dir)? {
            ds
        } else {
            return Err(Error::invalid(dir, "not a dataset: no dataset.json, no images/ + labels/ (or imagesTr/ + labelsTr/) folders, no KiTS case_*/imaging.nii.gz folders, no LiTS volume-N files, no TCIA PANCREAS_NNNN folders"));
        };
        if ds.training.is_empty() {
            return Err(Error::invalid(
                dir,
                format!("no training cases found ({:?} layout)", ds.layout),
            ));
        }
        Ok(ds)
    }

    pub fn label_values(&self) -> Vec<u32> {
        self.labels.iter().map(|(_, v)| *v).collect()
    }

    pub fn case(&self, id: &str) -> Option<&Case> {
        self.training
            .iter()
            .chain(self.test.iter())
            .find(|c| c.id == id)
    }
}

/// Visible entries of a folder that are folders (`dirs`) or files, sorted. Names starting with
/// '.' are skipped: macOS `._` droppings ship in the Decathlon archives.
pub(super) fn visible(dir: &Path, dirs: bool) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let p = e.path();
        if !e.file_name().to_string_lossy().starts_with('.')
            && (if dirs { p.is_dir() } else { p.is_file() })
        {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

/// Visible subfolders of a folder, sorted.
pub(super) fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    visible(dir, true)
}

/// Visible files of a folder, sorted.
pub(super) fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    visible(dir, false)
}

/// `case_0003` → (`case`, 3): nnU-Net's channel suffix.
pub fn split_channel(stem: &str) -> Option<(&str, usize)> {
    let (case, ch) = stem.rsplit_once('_')?;
    if ch.len() == 4 && ch.bytes().all(|b| b.is_ascii_digit()) {
        Some((case, ch.parse().ok()?))
    } else {
        None
    }
}

/// Case id from a file name: the name without its image extension.
pub fn case_id(path: &Path) -> String {
    let name = crate::fs::file_name(path);
    for ext in [
        ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr.gz", ".hdr", ".img.gz", ".img",
    ] {
        if name.to_ascii_lowercase().ends_with(ext) {
            return name[..name.len() - ext.len()].to_string();
        }
    }
    name
}

/// The file ending of an image path (`.nii.gz`, `.nii`, `.nrrd`, …).
pub fn ending_of(path: &Path) -> String {
    let name = crate::fs::file_name(path);
    name[case_id(path).len()..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_suffix() {
        assert_eq!(split_channel("case_001_0000"), Some(("case_001", 0)));
        assert_eq!(split_channel("case_001_12"), None);
        assert_eq!(split_channel("abc"), None);
        assert_eq!(case_id(Path::new("/a/b/la_003.nii.gz")), "la_003");
        assert_eq!(ending_of(Path::new("/a/b/la_003.nii.gz")), ".nii.gz");
        assert_eq!(case_id(Path::new("x.nrrd")), "x");
    }

    #[test]
    fn decathlon_label_names_must_be_strings() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("dataset.json"),
            r#"{"modality": {"0": "CT"}, "labels": {"0": "background", "1": 7}, "training": []}"#,
        )
        .unwrap();
        let e = Dataset::open(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("dataset.json") && e.contains("must be a string"),
            "{e}"
        );
    }
}
