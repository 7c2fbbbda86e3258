//! LiTS: `volume-N.nii` + `segmentation-N.nii`, in the folder or its subfolders.

use super::*;

/// LiTS: `volume-N.nii[.gz]` + `segmentation-N.nii[.gz]` in `dir` or its subfolders.
pub(super) fn open(dir: &Path) -> Result<Option<Dataset>> {
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
    let name = crate::fs::file_name(dir);
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
