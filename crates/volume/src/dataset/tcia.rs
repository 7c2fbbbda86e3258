//! TCIA Pancreas-CT as NBIA and the TCIA label release ship it: patient folders
//! `PANCREAS_NNNN/<study>/<series>/*.dcm` (one CT series each) and label NIfTIs `labelNNNN.nii.gz`,
//! each anywhere up to three folders below the dataset folder (`manifest-*/Pancreas-CT/…`,
//! `TCIA_pancreas_labels-02-05-2017/…`). Case id `PANCREAS_NNNN`; its image is the patient
//! folder, read as its only DICOM series. A patient without a label is a test case.

use super::*;

fn number(name: &str, prefix: &str, suffixes: &[&str]) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits = suffixes
        .iter()
        .find_map(|s| rest.strip_suffix(s))
        .unwrap_or(rest);
    (digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Folders and files up to `depth` levels below `dir` (the TCIA download nests them).
fn walk(dir: &Path, depth: usize, dirs: &mut Vec<PathBuf>, files: &mut Vec<PathBuf>) -> Result<()> {
    files.extend(list_files(dir)?);
    for d in list_dirs(dir)? {
        let is_patient = d
            .file_name()
            .and_then(|n| number(&n.to_string_lossy(), "PANCREAS_", &[]))
            .is_some();
        if is_patient {
            dirs.push(d);
        } else if depth > 0 {
            walk(&d, depth - 1, dirs, files)?;
        }
    }
    Ok(())
}

/// TCIA Pancreas-CT, when `dir` holds `PANCREAS_NNNN` folders.
pub(super) fn open(dir: &Path) -> Result<Option<Dataset>> {
    let (mut patients, mut files) = (Vec::new(), Vec::new());
    walk(dir, 3, &mut patients, &mut files)?;
    if patients.is_empty() {
        return Ok(None);
    }
    let mut labels: BTreeMap<u32, PathBuf> = BTreeMap::new();
    let mut problems = Vec::new();
    for f in files {
        let name = crate::fs::file_name(&f);
        if let Some(n) = number(&name, "label", &[".nii.gz", ".nii"]) {
            if let Some(other) = labels.insert(n, f.clone()) {
                problems.push(format!(
                    "{}: a second label for PANCREAS_{n:04} (also {})",
                    f.display(),
                    other.display()
                ));
            }
        }
    }
    let (mut training, mut test) = (Vec::new(), Vec::new());
    let mut ids = BTreeSet::new();
    for p in patients {
        let id = crate::fs::file_name(&p);
        let Some(n) = number(&id, "PANCREAS_", &[]) else {
            continue;
        };
        if !ids.insert(n) {
            problems.push(format!("{}: a second folder for {id}", p.display()));
            continue;
        }
        let case = Case {
            id,
            images: vec![p],
            label: labels.get(&n).cloned(),
        };
        if case.label.is_some() {
            training.push(case);
        } else {
            test.push(case);
        }
    }
    for (n, l) in &labels {
        if !ids.contains(n) {
            problems.push(format!(
                "{}: label without a PANCREAS_{n:04} folder",
                l.display()
            ));
        }
    }
    let name = crate::fs::file_name(dir);
    Ok(Some(Dataset {
        root: dir.to_path_buf(),
        layout: Layout::TciaPancreas,
        name,
        channel_names: vec!["CT".into()],
        labels: vec![("background".into(), 0), ("pancreas".into(), 1)],
        file_ending: ".nii.gz".into(),
        training,
        test,
        problems,
    }))
}
