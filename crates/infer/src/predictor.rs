//! Whole-case prediction with one model directory (`config.json`, `model.safetensors`,
//! `plans.json`) or an ensemble of them: preprocess with the models' plans, sliding window in
//! deploy mode per model, softmax, average the models' probabilities (nnU-Net's `-f 0 1 2 3 4`),
//! map every class back to the native grid, arg-max — class by class, so memory holds at most
//! one class at native resolution in f32; probabilities, when asked for, go to a sink one class
//! at a time (`repux predict --probabilities` writes them to an f16 `.npy` slab by slab).
//!
//! [`resolve_models`] turns what users pass to `-m` into model directories: a model directory
//! itself, a training folder (the `--out` of `repux train`: `checkpoint_final`, else
//! `checkpoint_best`, or the one [`Checkpoint`] names), or a folder of `fold_K/` training folders.

use crate::postprocess::largest_component_per_class;
use crate::window::{sliding_window, softmax, WindowConfig, WindowError};
use burn::tensor::{Tensor, TensorData};
use repux_nn::Net;
use repux_prep::{invert_channel, preprocess, Plans};
use repux_volume::Geometry;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Volume(#[from] repux_volume::Error),
    #[error(transparent)]
    Prep(#[from] repux_prep::Error),
    #[error(transparent)]
    Weights(#[from] repux_nn::WeightError),
    #[error(transparent)]
    Values(#[from] repux_nn::ValuesError),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error("{}: {msg}", path.display())]
    Case { path: PathBuf, msg: String },
}

#[derive(Clone, Debug)]
pub struct PredictOptions {
    pub overlap: f64,
    /// Average over the 8 mirrorings (nnU-Net's test-time mirroring; on by default).
    pub tta: bool,
    pub tile_batch: usize,
    pub largest_component: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions {
            overlap: 0.5,
            tta: true,
            tile_batch: 1,
            largest_component: false,
        }
    }
}

/// A prediction on the native grid of the input.
pub struct Prediction {
    pub geometry: Geometry,
    /// Class index per voxel.
    pub labels: Vec<f32>,
    pub classes: usize,
}

/// Which checkpoint of a training folder to predict with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Checkpoint {
    /// `checkpoint_final`, else `checkpoint_best`.
    #[default]
    Auto,
    Final,
    Best,
    Latest,
}

fn is_model_dir(p: &Path) -> bool {
    p.join("config.json").is_file() && p.join("model.safetensors").is_file()
}

fn training_checkpoint(run: &Path, which: Checkpoint) -> Option<PathBuf> {
    let names: &[&str] = match which {
        Checkpoint::Auto => &["checkpoint_final", "checkpoint_best"],
        Checkpoint::Final => &["checkpoint_final"],
        Checkpoint::Best => &["checkpoint_best"],
        Checkpoint::Latest => &["checkpoint_latest"],
    };
    names.iter().map(|n| run.join(n)).find(|d| is_model_dir(d))
}

fn is_training_folder(p: &Path) -> bool {
    ["checkpoint_final", "checkpoint_best", "checkpoint_latest"]
        .iter()
        .any(|n| is_model_dir(&p.join(n)))
}

/// The model directories behind `-m` arguments (see the module docs), in order.
pub fn resolve_models(paths: &[PathBuf], which: Checkpoint) -> Result<Vec<PathBuf>, InferError> {
    let bad = |p: &Path, msg: String| InferError::Case {
        path: p.to_path_buf(),
        msg,
    };
    let mut out = Vec::new();
    for p in paths {
        if is_model_dir(p) {
            if which != Checkpoint::Auto {
                return Err(bad(p, "is a model directory; --checkpoint picks among a training folder's checkpoints".into()));
            }
            out.push(p.clone());
        } else if is_training_folder(p) {
            let d = training_checkpoint(p, which).ok_or_else(|| {
                bad(
                    p,
                    format!(
                        "training folder without a {} checkpoint",
                        checkpoint_name(which)
                    ),
                )
            })?;
            out.push(d);
        } else if p.is_dir() {
            let mut folds: Vec<(usize, PathBuf)> = std::fs::read_dir(p)
                .map_err(|e| repux_volume::Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|d| {
                    let k = d
                        .file_name()?
                        .to_str()?
                        .strip_prefix("fold_")?
                        .parse::<usize>()
                        .ok()?;
                    Some((k, d))
                })
                .filter(|(_, d)| is_training_folder(d) || is_model_dir(d))
                .collect();
            if folds.is_empty() {
                return Err(bad(p, "is not a model directory (config.json + model.safetensors), a training folder (checkpoint_final/best/latest) or a folder of fold_K/ training folders".into()));
            }
            folds.sort();
            for (_, d) in folds {
                if is_model_dir(&d) {
                    out.push(d);
                } else {
                    out.push(training_checkpoint(&d, which).ok_or_else(|| {
                        bad(
                            &d,
                            format!(
                                "training folder without a {} checkpoint",
                                checkpoint_name(which)
                            ),
                        )
                    })?);
                }
            }
        } else {
            return Err(repux_volume::Error::invalid(p, "no such model directory").into());
        }
    }
    Ok(out)
}

fn checkpoint_name(which: Checkpoint) -> &'static str {
    match which {
        Checkpoint::Auto => "final or best",
        Checkpoint::Final => "checkpoint_final",
        Checkpoint::Best => "checkpoint_best",
        Checkpoint::Latest => "checkpoint_latest",
    }
}

pub struct Predictor {
    /// The deploy networks (BFR, BatchNorm and SR folded), one per ensemble member.
    pub nets: Vec<Net>,
    /// The plans every member shares.
    pub plans: Plans,
    /// The model directories, in the order of `nets`.
    pub models: Vec<PathBuf>,
}

impl Predictor {
    /// Loads one model directory.
    pub fn load(dir: &Path) -> Result<Predictor, InferError> {
        Predictor::load_ensemble(&[dir.to_path_buf()])
    }

    /// Loads model directories to ensemble; they must share plans and class count.
    pub fn load_ensemble(dirs: &[PathBuf]) -> Result<Predictor, InferError> {
        let Some(first) = dirs.first() else {
            return Err(InferError::Case {
                path: PathBuf::from("-m"),
                msg: "no model given".into(),
            });
        };
        let mut nets = Vec::new();
        let mut plans: Option<Plans> = None;
        for dir in dirs {
            let net = repux_nn::load_model_dir(dir, &repux_nn::compute_device())?.merge();
            let plans_path = dir.join("plans.json");
            let p = Plans::load(&plans_path)?;
            let cfg = net.config();
            if p.normalization.len() != cfg.in_channels {
                return Err(InferError::Case {
                    path: plans_path,
                    msg: format!(
                        "plans normalise {} channels, the model takes {}",
                        p.normalization.len(),
                        cfg.in_channels
                    ),
                });
            }
            if p.num_classes() != cfg.out_channels {
                return Err(InferError::Case {
                    path: plans_path,
                    msg: format!(
                        "plans have {} classes, the model predicts {}",
                        p.num_classes(),
                        cfg.out_channels
                    ),
                });
            }
            if let Some(p0) = &plans {
                if *p0 != p {
                    let what = if p0.num_classes() != p.num_classes() {
                        format!(
                            "{} classes, {} has {}",
                            p.num_classes(),
                            first.display(),
                            p0.num_classes()
                        )
                    } else {
                        format!("plans differ from those of {} (an ensemble preprocesses once, so its members must share plans)", first.display())
                    };
                    return Err(InferError::Case {
                        path: plans_path,
                        msg: format!("cannot ensemble: {what}"),
                    });
                }
            } else {
                plans = Some(p);
            }
            nets.push(net);
        }
        let plans = plans.ok_or_else(|| InferError::Case {
            path: first.clone(),
            msg: "no model given".into(),
        })?;
        Ok(Predictor {
            nets,
            plans,
            models: dirs.to_vec(),
        })
    }

    pub fn classes(&self) -> usize {
        self.plans.num_classes()
    }

    /// Logits of network `m` for a batch of `n` patches (n × C × P → n × classes × P).
    pub fn forward_patches(
        &self,
        m: usize,
        batch: &[f32],
        n: usize,
    ) -> Result<Vec<f32>, InferError> {
        let p = self.plans.patch_size;
        let net = &self.nets[m];
        let c = net.config().in_channels;
        let x = Tensor::<5>::from_data(
            TensorData::new(batch.to_vec(), [n, c, p[0], p[1], p[2]]),
            &repux_nn::compute_device(),
        );
        Ok(repux_nn::values(net.forward(x), "network output")?)
    }

    /// Predicts one case from its channel files.
    pub fn predict(
        &self,
        images: &[PathBuf],
        opts: &PredictOptions,
        progress: impl FnMut(usize, usize),
    ) -> Result<Prediction, InferError> {
        self.predict_with(images, opts, progress, |_, _, _| Ok(()))
    }

    /// Predicts one case; `probabilities(class, native_shape, values)` receives each class's
    /// probabilities on the native grid in class order (one class in memory at a time).
    /// `progress(done, total)` counts tiles over all ensemble members.
    pub fn predict_with(
        &self,
        images: &[PathBuf],
        opts: &PredictOptions,
        mut progress: impl FnMut(usize, usize),
        mut probabilities: impl FnMut(usize, [usize; 3], &[f32]) -> Result<(), InferError>,
    ) -> Result<Prediction, InferError> {
        let case = repux_volume::Case {
            id: String::new(),
            images: images.to_vec(),
            label: None,
        };
        let image = repux_prep::read_case_image(&case)?;
        let first = images.first().cloned().ok_or_else(|| InferError::Case {
            path: PathBuf::from("-i"),
            msg: "a case with no image files".into(),
        })?;
        let cin = self.plans.normalization.len();
        if image.channels != cin {
            return Err(InferError::Case {
                path: first,
                msg: format!("{} channels, the model takes {cin}", image.channels),
            });
        }
        let pre =
            preprocess(&image, None, &self.plans.prep_config()).map_err(|e| InferError::Case {
                path: first.clone(),
                msg: e.to_string(),
            })?;
        let classes = self.classes();
        let cfg = WindowConfig {
            patch: self.plans.patch_size,
            overlap: opts.overlap,
            mirror: opts.tta,
            tile_batch: opts.tile_batch,
        };
        let members = self.nets.len();
        let mut probs: Vec<f32> = Vec::new();
        for m in 0..members {
            let mut p = sliding_window(
                &pre.image.data,
                pre.image.channels,
                pre.image.geometry.shape,
                classes,
                &cfg,
                |b, n| self.forward_patches(m, b, n),
                |done, total| progress(m * total + done, members * total),
            )?;
            softmax(&mut p, classes);
            if probs.is_empty() {
                probs = p;
            } else {
                probs.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
            }
        }
        if members > 1 {
            let k = members as f32;
            probs.iter_mut().for_each(|v| *v /= k);
        }
        let n_pre = pre.image.geometry.voxels();
        let n = image.geometry.voxels();
        let mut best = vec![f32::NEG_INFINITY; n];
        let mut labels = vec![0f32; n];
        for c in 0..classes {
            let p = invert_channel(
                &probs[c * n_pre..(c + 1) * n_pre],
                &pre.record,
                if c == 0 { 1.0 } else { 0.0 },
            );
            for ((b, l), &v) in best.iter_mut().zip(labels.iter_mut()).zip(&p) {
                if v > *b {
                    *b = v;
                    *l = c as f32;
                }
            }
            probabilities(c, image.geometry.shape, &p)?;
        }
        if opts.largest_component {
            largest_component_per_class(&mut labels, image.geometry.shape);
        }
        Ok(Prediction {
            geometry: image.geometry,
            labels,
            classes,
        })
    }
}

/// Input cases of a file or folder: nnU-Net naming (`<case>_0000.nii.gz`, …) groups channels and
/// drops the suffix; other image files are single-channel cases named by their id.
pub fn input_cases(input: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, InferError> {
    use std::collections::BTreeMap;
    let files: Vec<PathBuf> = if input.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(input)
            .map_err(|e| repux_volume::Error::io(input, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && repux_volume::Format::of(p).is_some()
                    && !p
                        .file_name()
                        .map(|n| n.to_string_lossy().starts_with('.'))
                        .unwrap_or(true)
            })
            .collect();
        v.sort();
        v
    } else if input.is_file() {
        vec![input.to_path_buf()]
    } else {
        return Err(repux_volume::Error::invalid(input, "no such file or folder").into());
    };
    if files.is_empty() && input.is_dir() {
        return dicom_cases(input);
    }
    if files.is_empty() {
        return Err(repux_volume::Error::invalid(input, "holds no image files").into());
    }
    let mut cases: BTreeMap<String, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    for f in files {
        let id = repux_volume::dataset::case_id(&f);
        let (case, ch) = match repux_volume::dataset::split_channel(&id) {
            Some((c, ch)) => (c.to_string(), ch),
            None => (id, 0),
        };
        cases.entry(case).or_default().insert(ch, f);
    }
    Ok(cases
        .into_iter()
        .map(|(k, v)| (k, v.into_values().collect()))
        .collect())
}

/// A folder without image files is read as DICOM: each series is a case, read from the folder
/// that holds its files (which must hold no other series). The case id is the first folder
/// under `input` that holds the series (the patient folder of TCIA's `PANCREAS_0001/<study>/
/// <series>/` layout) when that is unique, else the SeriesInstanceUID.
fn dicom_cases(input: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, InferError> {
    let series = repux_volume::dicom::list_series(input).map_err(|_| {
        repux_volume::Error::invalid(input, "holds no image files and no DICOM series")
    })?;
    let mut folders = Vec::with_capacity(series.len());
    for s in &series {
        let mut common = s.files[0].parent().unwrap_or(input).to_path_buf();
        while !s.files.iter().all(|f| f.starts_with(&common)) {
            common = common.parent().unwrap_or(input).to_path_buf();
        }
        folders.push(common);
    }
    for (a, fa) in folders.iter().enumerate() {
        for (b, fb) in folders.iter().enumerate() {
            if a != b && fb.starts_with(fa) {
                return Err(repux_volume::Error::invalid(
                    fa,
                    format!(
                        "holds DICOM series {} and {}; give each series its own folder to predict them",
                        series[a].uid, series[b].uid
                    ),
                )
                .into());
            }
        }
    }
    let first: Vec<Option<String>> = folders
        .iter()
        .map(|f| {
            f.strip_prefix(input)
                .ok()
                .and_then(|r| r.components().next())
                .map(|c| c.as_os_str().to_string_lossy().to_string())
        })
        .collect();
    Ok(series
        .iter()
        .zip(&folders)
        .zip(&first)
        .map(|((s, folder), top)| {
            let unique = top
                .as_ref()
                .filter(|t| first.iter().filter(|o| o.as_ref() == Some(t)).count() == 1);
            let id = match (unique, series.len()) {
                (Some(t), _) => t.clone(),
                (None, 1) => input
                    .file_name()
                    .map_or_else(|| s.uid.clone(), |n| n.to_string_lossy().to_string()),
                (None, _) => s.uid.clone(),
            };
            (id, vec![folder.clone()])
        })
        .collect())
}
