//! nnU-Net v2 raw datasets: `dataset.json` with `channel_names`, `labels`, `numTraining`,
//! `file_ending` (and optional explicit `dataset` paths), `imagesTr/<case>_<XXXX><ending>`,
//! `labelsTr/<case><ending>`, optional `imagesTs/`.

use super::*;

pub(super) fn labels_nnunet(v: &Value, path: &Path) -> Result<Vec<(String, u32)>> {
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
pub(super) fn group_channels(
    files: &[PathBuf],
    ending: &str,
    n_channels: usize,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Vec<PathBuf>> {
    let mut cases: BTreeMap<String, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    for f in files {
        let name = crate::fs::file_name(f);
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

pub(super) fn open(dir: &Path, jp: &Path, v: &Value) -> Result<Dataset> {
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
        .unwrap_or_else(|| crate::fs::file_name(dir));
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
