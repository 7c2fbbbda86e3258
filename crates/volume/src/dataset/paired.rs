//! Paired folders: `images/` and `labels/` (or `imagesTr/` and `labelsTr/` without a
//! `dataset.json`), matched by file name.

use super::*;

pub(super) fn open(dir: &Path, img_dir: &Path, lab_dir: &Path) -> Result<Dataset> {
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
    let name = crate::fs::file_name(dir);
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
