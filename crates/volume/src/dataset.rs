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
}

/// One case: its image channel files (in channel order) and its label file.
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

fn json_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::new(path, crate::ErrorKind::Json(msg.into()))
}

fn key<'a>(v: &'a Value, k: &str, path: &Path, needs: &str) -> Result<&'a Value> {
    v.get(k)
        .ok_or_else(|| json_err(path, format!("missing key \"{k}\" ({needs})")))
}

/// `{"0": "CT", "1": "T2"}` → names in numeric key order.
fn indexed_names(v: &Value, what: &str, path: &Path) -> Result<Vec<String>> {
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

const NNUNET_KEYS: &str =
    "nnU-Net v2 dataset.json needs channel_names, labels, numTraining, file_ending";
const MSD_KEYS: &str = "Decathlon dataset.json needs modality, labels, training";

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
                open_nnunet(dir, &json_path, &v)?
            } else if v.get("training").is_some() || v.get("modality").is_some() {
                open_msd(dir, &json_path, &v)?
            } else {
                return Err(json_err(&json_path, "has neither \"channel_names\" (nnU-Net v2) nor \"training\"/\"modality\" (Decathlon)"));
            }
        } else if let Some((img, lab)) = [("images", "labels"), ("imagesTr", "labelsTr")]
            .iter()
            .map(|(i, l)| (dir.join(i), dir.join(l)))
            .find(|(i, _)| i.is_dir())
        {
            open_paired(dir, &img, &lab)?
        } else if let Some(ds) = open_kits(dir)? {
            ds
        } else if let Some(ds) = open_lits(dir)? {
            ds
        } else {
            return Err(Error::invalid(dir, "not a dataset: no dataset.json, no images/ + labels/ (or imagesTr/ + labelsTr/) folders, no KiTS case_*/imaging.nii.gz folders, no LiTS volume-N files"));
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
fn visible(dir: &Path, dirs: bool) -> Result<Vec<PathBuf>> {
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
fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    visible(dir, true)
}

/// Visible files of a folder, sorted.
fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
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

fn labels_nnunet(v: &Value, path: &Path) -> Result<Vec<(String, u32)>> {
    let obj = v.as_object().ok_or_else(|| {
        json_err(
            path,
            "\"labels\" must be an object like {\"background\": 0}",
        )
    })?;
    let mut out = Vec::new();
    for (name, val) in obj {
        let n = match val {
            Value::Number(n) => n.as_u64().filter(|&n| n <= u32::MAX as u64),
            Value::Array(_) => return Err(json_err(path, format!("label {name:?} is a region (list of labels); region-based training is not supported"))),
            _ => None,
        }
        .ok_or_else(|| json_err(path, format!("label {name:?} must be a non-negative integer")))?;
        out.push((name.clone(), n as u32));
    }
    out.sort_by_key(|(_, v)| *v);
    Ok(out)
}

/// Groups `<case>_<XXXX><ending>` files by case; reports files that do not fit.
fn group_channels(
    files: &[PathBuf],
    ending: &str,
    n_channels: usize,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Vec<PathBuf>> {
    let mut cases: BTreeMap<String, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let Some(stem) = name.strip_suffix(ending) else {
            continue;
        };
        match split_channel(stem) {
            Some((case, ch)) => {
                cases
                    .entry(case.to_string())
                    .or_default()
                    .insert(ch, f.clone());
            }
            None => problems.push(format!(
                "{}: name lacks the _XXXX channel suffix (expected <case>_0000{ending})",
                f.display()
            )),
        }
    }
    let mut out = BTreeMap::new();
    for (case, chans) in cases {
        let have: Vec<usize> = chans.keys().copied().collect();
        let want: Vec<usize> = (0..n_channels).collect();
        if have != want {
            problems.push(format!(
                "case {case}: channel files {have:?}, dataset.json declares channels {want:?}"
            ));
        }
        out.insert(case, chans.into_values().collect());
    }
    out
}

fn open_nnunet(dir: &Path, jp: &Path, v: &Value) -> Result<Dataset> {
    let channel_names = indexed_names(
        key(v, "channel_names", jp, NNUNET_KEYS)?,
        "channel_names",
        jp,
    )?;
    let labels = labels_nnunet(key(v, "labels", jp, NNUNET_KEYS)?, jp)?;
    let num_training = key(v, "numTraining", jp, NNUNET_KEYS)?
        .as_u64()
        .ok_or_else(|| json_err(jp, "\"numTraining\" must be a non-negative integer"))?;
    let ending = key(v, "file_ending", jp, NNUNET_KEYS)?
        .as_str()
        .ok_or_else(|| json_err(jp, "\"file_ending\" must be a string like \".nii.gz\""))?
        .to_string();
    let name = v
        .get("name")
        .and_then(|n| n.as_str())
        .map(String::from)
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        });
    let mut problems = Vec::new();
    let mut training = Vec::new();
    if let Some(explicit) = v.get("dataset") {
        // nnU-Net v2's explicit form: {"case": {"images": [...], "label": "..."}}, paths relative.
        let obj = explicit
            .as_object()
            .ok_or_else(|| json_err(jp, "\"dataset\" must be an object of cases"))?;
        for (id, c) in obj {
            let images = c
                .get("images")
                .and_then(|i| i.as_array())
                .ok_or_else(|| json_err(jp, format!("case {id:?}: missing \"images\" list")))?;
            let images = images
                .iter()
                .map(|p| {
                    p.as_str().map(|p| dir.join(p)).ok_or_else(|| {
                        json_err(jp, format!("case {id:?}: image paths must be strings"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let label = c.get("label").and_then(|l| l.as_str()).map(|l| dir.join(l));
            training.push(Case {
                id: id.clone(),
                images,
                label,
            });
        }
    } else {
        let img_dir = dir.join("imagesTr");
        let lab_dir = dir.join("labelsTr");
        if !img_dir.is_dir() {
            return Err(Error::invalid(
                &img_dir,
                "missing: an nnU-Net v2 dataset keeps its training images in imagesTr/",
            ));
        }
        let cases = group_channels(
            &list_files(&img_dir)?,
            &ending,
            channel_names.len(),
            &mut problems,
        );
        let label_files: BTreeSet<String> = list_files(&lab_dir)?
            .iter()
            .filter_map(|p| {
                p.file_name()?
                    .to_string_lossy()
                    .strip_suffix(ending.as_str())
                    .map(String::from)
            })
            .collect();
        for id in label_files.iter().filter(|l| !cases.contains_key(*l)) {
            problems.push(format!(
                "{}: label without images",
                lab_dir.join(format!("{id}{ending}")).display()
            ));
        }
        for (id, images) in cases {
            let label = label_files
                .contains(&id)
                .then(|| lab_dir.join(format!("{id}{ending}")));
            if label.is_none() {
                problems.push(format!(
                    "case {id}: no label file {}",
                    lab_dir.join(format!("{id}{ending}")).display()
                ));
            }
            training.push(Case { id, images, label });
        }
    }
    if training.len() as u64 != num_training {
        problems.push(format!(
            "dataset.json says numTraining = {num_training}, found {} training cases",
            training.len()
        ));
    }
    let mut tp = Vec::new();
    let test = group_channels(
        &list_files(&dir.join("imagesTs"))?,
        &ending,
        channel_names.len(),
        &mut tp,
    )
    .into_iter()
    .map(|(id, images)| Case {
        id,
        images,
        label: None,
    })
    .collect();
    problems.extend(tp);
    Ok(Dataset {
        root: dir.to_path_buf(),
        layout: Layout::NnUnetV2,
        name,
        channel_names,
        labels,
        file_ending: ending,
        training,
        test,
        problems,
    })
}

/// Case id from a file name: the name without its image extension.
pub fn case_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    for ext in [
        ".nii.gz", ".nii", ".nrrd", ".nhdr", ".hdr.gz", ".hdr", ".img.gz", ".img",
    ] {
        if name.to_ascii_lowercase().ends_with(ext) {
            return name[..name.len() - ext.len()].to_string();
        }
    }
    name
}

/// The file ending of an image path (`.nii.gz`, `.nii`, `.nrrd`, …).
pub fn ending_of(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name[case_id(path).len()..].to_string()
}

fn open_msd(dir: &Path, jp: &Path, v: &Value) -> Result<Dataset> {
    let channel_names = indexed_names(key(v, "modality", jp, MSD_KEYS)?, "modality", jp)?;
    let lab = key(v, "labels", jp, MSD_KEYS)?.as_object().ok_or_else(|| {
        json_err(
            jp,
            "\"labels\" must be an object like {\"0\": \"background\"}",
        )
    })?;
    let mut labels = Vec::new();
    for (k, n) in lab {
        let val = k
            .parse::<u32>()
            .map_err(|_| json_err(jp, format!("label key {k:?} is not a number")))?;
        labels.push((n.as_str().unwrap_or_default().to_string(), val));
    }
    labels.sort_by_key(|(_, v)| *v);
    let tr = key(v, "training", jp, MSD_KEYS)?
        .as_array()
        .ok_or_else(|| json_err(jp, "\"training\" must be a list"))?;
    let mut training = Vec::new();
    for (i, e) in tr.iter().enumerate() {
        let img = e
            .get("image")
            .and_then(|s| s.as_str())
            .ok_or_else(|| json_err(jp, format!("training[{i}]: missing key \"image\"")))?;
        let label = e
            .get("label")
            .and_then(|s| s.as_str())
            .ok_or_else(|| json_err(jp, format!("training[{i}]: missing key \"label\"")))?;
        let img = dir.join(img);
        training.push(Case {
            id: case_id(&img),
            images: vec![img],
            label: Some(dir.join(label)),
        });
    }
    let mut test = Vec::new();
    for e in v
        .get("test")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
    {
        let p = e
            .as_str()
            .or_else(|| e.get("image").and_then(|s| s.as_str()));
        if let Some(p) = p {
            let img = dir.join(p);
            test.push(Case {
                id: case_id(&img),
                images: vec![img],
                label: None,
            });
        }
    }
    let mut problems = Vec::new();
    if let Some(n) = v.get("numTraining").and_then(|n| n.as_u64()) {
        if n != training.len() as u64 {
            problems.push(format!(
                "dataset.json says numTraining = {n}, its training list has {}",
                training.len()
            ));
        }
    }
    let file_ending = training
        .first()
        .map(|c| ending_of(&c.images[0]))
        .unwrap_or_else(|| ".nii.gz".into());
    let name = v
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    Ok(Dataset {
        root: dir.to_path_buf(),
        layout: Layout::Decathlon,
        name,
        channel_names,
        labels,
        file_ending,
        training,
        test,
        problems,
    })
}

fn open_paired(dir: &Path, img_dir: &Path, lab_dir: &Path) -> Result<Dataset> {
    let images: Vec<PathBuf> = list_files(img_dir)?
        .into_iter()
        .filter(|p| Format::of(p).is_some())
        .collect();
    let labels: BTreeMap<String, PathBuf> = list_files(lab_dir)?
        .into_iter()
        .filter(|p| Format::of(p).is_some())
        .map(|p| (case_id(&p), p))
        .collect();
    let mut cases: BTreeMap<String, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    for p in images {
        let stem = case_id(&p);
        let (id, ch) = match split_channel(&stem) {
            Some((c, ch)) if !labels.contains_key(&stem) => (c.to_string(), ch),
            _ => (stem, 0),
        };
        cases.entry(id).or_default().insert(ch, p);
    }
    let mut problems = Vec::new();
    let mut training = Vec::new();
    let mut n_channels = 0;
    for (id, chans) in cases {
        n_channels = n_channels.max(chans.len());
        let label = labels.get(&id).cloned();
        if label.is_none() {
            problems.push(format!("case {id}: no label file in {}", lab_dir.display()));
        }
        training.push(Case {
            id,
            images: chans.into_values().collect(),
            label,
        });
    }
    let ids: BTreeSet<&String> = training.iter().map(|c| &c.id).collect();
    for (id, p) in &labels {
        if !ids.contains(id) {
            problems.push(format!("{}: label without an image", p.display()));
        }
    }
    let file_ending = training
        .first()
        .map(|c| ending_of(&c.images[0]))
        .unwrap_or_else(|| ".nii.gz".into());
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let channel_names = (0..n_channels).map(|i| format!("channel{i}")).collect();
    Ok(Dataset {
        root: dir.to_path_buf(),
        layout: Layout::Paired,
        name,
        channel_names,
        labels: Vec::new(),
        file_ending,
        training,
        test: Vec::new(),
        problems,
    })
}

/// KiTS: `case_*/imaging.nii.gz` (+ `segmentation.nii.gz`), in `dir` or `dir/data`.
fn open_kits(dir: &Path) -> Result<Option<Dataset>> {
    for root in [dir.to_path_buf(), dir.join("data")] {
        if !root.is_dir() {
            continue;
        }
        let folders: Vec<PathBuf> = list_dirs(&root)?
            .into_iter()
            .filter(|p| p.join("imaging.nii.gz").is_file())
            .collect();
        if folders.is_empty() {
            continue;
        }
        let (mut training, mut test) = (Vec::new(), Vec::new());
        for f in folders {
            let id = f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let seg = f.join("segmentation.nii.gz");
            let case = Case {
                id,
                images: vec![f.join("imaging.nii.gz")],
                label: seg.is_file().then_some(seg),
            };
            if case.label.is_some() {
                training.push(case);
            } else {
                test.push(case);
            }
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let labels = vec![
            ("background".into(), 0),
            ("kidney".into(), 1),
            ("tumor".into(), 2),
            ("cyst".into(), 3),
        ];
        return Ok(Some(Dataset {
            root: dir.to_path_buf(),
            layout: Layout::Kits,
            name,
            channel_names: vec!["CT".into()],
            labels,
            file_ending: ".nii.gz".into(),
            training,
            test,
            problems: Vec::new(),
        }));
    }
    Ok(None)
}

/// LiTS: `volume-N.nii[.gz]` + `segmentation-N.nii[.gz]` in `dir` or its subfolders.
fn open_lits(dir: &Path) -> Result<Option<Dataset>> {
    let mut files = list_files(dir)?;
    for sub in list_dirs(dir)? {
        files.extend(list_files(&sub)?);
    }
    let number = |p: &Path, prefix: &str| -> Option<String> {
        let name = p.file_name()?.to_string_lossy().to_string();
        let rest = name.strip_prefix(prefix)?;
        let n = rest
            .strip_suffix(".nii.gz")
            .or_else(|| rest.strip_suffix(".nii"))?;
        n.parse::<u32>().ok().map(|v| v.to_string())
    };
    let volumes: BTreeMap<u32, PathBuf> = files
        .iter()
        .filter_map(|p| number(p, "volume-").map(|n| (n.parse().unwrap_or(0), p.clone())))
        .collect();
    if volumes.is_empty() {
        return Ok(None);
    }
    let segs: BTreeMap<String, PathBuf> = files
        .iter()
        .filter_map(|p| number(p, "segmentation-").map(|n| (n, p.clone())))
        .collect();
    let mut problems = Vec::new();
    let (mut training, mut test) = (Vec::new(), Vec::new());
    for (n, p) in volumes {
        let case = Case {
            id: format!("liver_{n}"),
            images: vec![p],
            label: segs.get(&n.to_string()).cloned(),
        };
        if case.label.is_some() {
            training.push(case);
        } else {
            test.push(case);
        }
    }
    let ids: BTreeSet<String> = training
        .iter()
        .chain(&test)
        .map(|c| c.id.trim_start_matches("liver_").to_string())
        .collect();
    for (n, p) in &segs {
        if !ids.contains(n) {
            problems.push(format!("{}: segmentation without a volume", p.display()));
        }
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let labels = vec![
        ("background".into(), 0),
        ("liver".into(), 1),
        ("tumor".into(), 2),
    ];
    let file_ending = training
        .first()
        .map(|c| ending_of(&c.images[0]))
        .unwrap_or_else(|| ".nii".into());
    Ok(Some(Dataset {
        root: dir.to_path_buf(),
        layout: Layout::Lits,
        name,
        channel_names: vec!["CT".into()],
        labels,
        file_ending,
        training,
        test,
        problems,
    }))
}

/// What the check found for one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseCheck {
    pub id: String,
    pub shape: Option<[usize; 3]>,
    pub spacing: Option<[f64; 3]>,
    pub orientation: Option<String>,
    pub channels: usize,
    pub label_values: Vec<u32>,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub layout: Layout,
    pub cases: Vec<CaseCheck>,
    /// Dataset-level problems (listing problems from [`Dataset::open`]).
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.cases.iter().all(|c| c.problems.is_empty())
    }
    pub fn problem_count(&self) -> usize {
        self.problems.len() + self.cases.iter().map(|c| c.problems.len()).sum::<usize>()
    }
}

/// Largest affine difference (mm) two grids of one case may have, as in the contract.
pub const GEOMETRY_TOLERANCE: f64 = 1e-4;

/// Reads every training case in parallel and checks it: files readable, channels and label on
/// the same grid (shape equal, affine within [`GEOMETRY_TOLERANCE`]), label values integer and
/// among the declared labels, no NaN/inf in the images.
pub fn check(ds: &Dataset) -> CheckReport {
    let declared: BTreeSet<u32> = ds.label_values().into_iter().collect();
    let cases = ds
        .training
        .par_iter()
        .map(|c| check_case(ds, c, &declared))
        .collect();
    CheckReport {
        layout: ds.layout,
        cases,
        problems: ds.problems.clone(),
    }
}

fn check_case(ds: &Dataset, case: &Case, declared: &BTreeSet<u32>) -> CaseCheck {
    let mut out = CaseCheck {
        id: case.id.clone(),
        shape: None,
        spacing: None,
        orientation: None,
        channels: 0,
        label_values: Vec::new(),
        problems: Vec::new(),
    };
    let mut grid: Option<(crate::Geometry, PathBuf)> = None;
    let expect_channels_per_file = if ds.layout == Layout::Decathlon {
        ds.channel_names.len()
    } else {
        1
    };
    for img in &case.images {
        if !img.is_file() {
            out.problems
                .push(format!("{}: image file is missing", img.display()));
            continue;
        }
        let loaded = match crate::read(img) {
            Ok(l) => l,
            Err(e) => {
                out.problems.push(e.to_string());
                continue;
            }
        };
        let v = loaded.volume;
        out.channels += v.channels;
        if v.channels != expect_channels_per_file && ds.layout != Layout::Paired {
            out.problems.push(format!(
                "{}: {} channels, dataset.json declares {}",
                img.display(),
                v.channels,
                expect_channels_per_file
            ));
        }
        if loaded.stats.nonfinite > 0 {
            out.problems.push(format!(
                "{}: {} voxels are NaN or infinite",
                img.display(),
                loaded.stats.nonfinite
            ));
        }
        compare_grid(&mut grid, &v.geometry, img, &mut out.problems);
    }
    if let Some((g, _)) = &grid {
        out.shape = Some(g.shape);
        out.spacing = Some(g.spacing);
        out.orientation = Some(g.orientation());
    }
    match &case.label {
        None => out
            .problems
            .push(format!("case {}: no label file", case.id)),
        Some(lp) if !lp.is_file() => out
            .problems
            .push(format!("{}: label file is missing", lp.display())),
        Some(lp) => match crate::read(lp) {
            Err(e) => out.problems.push(e.to_string()),
            Ok(l) => {
                if l.volume.channels != 1 {
                    out.problems.push(format!(
                        "{}: label map has {} channels, expected 1",
                        lp.display(),
                        l.volume.channels
                    ));
                }
                compare_grid(&mut grid, &l.volume.geometry, lp, &mut out.problems);
                let mut seen = BTreeSet::new();
                let mut bad = None;
                for &v in &l.volume.data {
                    if v >= 0.0 && v.fract() == 0.0 && v < 16_777_216.0 {
                        seen.insert(v as u32);
                    } else if bad.is_none() {
                        bad = Some(v);
                    }
                }
                if let Some(b) = bad {
                    out.problems.push(format!(
                        "{}: label value {b} is not a non-negative integer",
                        lp.display()
                    ));
                }
                if !declared.is_empty() {
                    let extra: Vec<u32> = seen
                        .iter()
                        .filter(|v| !declared.contains(v))
                        .copied()
                        .collect();
                    if !extra.is_empty() {
                        out.problems.push(format!("{}: label values {extra:?} are not declared in dataset.json (declared {:?})", lp.display(), declared));
                    }
                }
                out.label_values = seen.into_iter().collect();
            }
        },
    }
    out
}

fn compare_grid(
    first: &mut Option<(crate::Geometry, PathBuf)>,
    g: &crate::Geometry,
    path: &Path,
    problems: &mut Vec<String>,
) {
    match first {
        None => *first = Some((g.clone(), path.to_path_buf())),
        Some((f, fp)) => {
            if f.shape != g.shape {
                problems.push(format!(
                    "{}: shape {:?} does not match {} with shape {:?}",
                    path.display(),
                    g.shape,
                    fp.display(),
                    f.shape
                ));
            } else {
                let d = f.max_affine_diff(g);
                if d > GEOMETRY_TOLERANCE {
                    problems.push(format!("{}: affine differs from {} by up to {d:.3e} mm (tolerance {GEOMETRY_TOLERANCE:e})", path.display(), fp.display()));
                }
            }
        }
    }
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
}
