//! KiTS (19/21/23): `case_XXXXX/imaging.nii.gz` + `segmentation.nii.gz`.

use super::*;

/// KiTS: `case_*/imaging.nii.gz` (+ `segmentation.nii.gz`), in `dir` or `dir/data`.
pub(super) fn open(dir: &Path) -> Result<Option<Dataset>> {
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
            let id = crate::fs::file_name(&f);
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
        let name = crate::fs::file_name(dir);
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
