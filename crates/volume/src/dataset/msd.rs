//! Medical Segmentation Decathlon datasets: `dataset.json` with `modality`, `labels`,
//! `training`, `test`; multi-channel cases are 4-D files.

use super::*;

pub(super) fn open(dir: &Path, jp: &Path, v: &Value) -> Result<Dataset> {
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
        let name = n.as_str().ok_or_else(|| {
            json_err(
                jp,
                format!("label {k:?}: the name must be a string, not {n}"),
            )
        })?;
        labels.push((name.to_string(), val));
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
