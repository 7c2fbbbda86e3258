//! Whole-case prediction with a model directory (`config.json`, `model.safetensors`,
//! `plans.json`): preprocess with the model's plans, sliding window in deploy mode, softmax,
//! map every class back to the native grid, arg-max — class by class, so memory holds at most
//! one class at native resolution in f32 (plus f16 probabilities when asked for).

use crate::postprocess::largest_component_per_class;
use crate::window::{sliding_window, softmax, WindowConfig};
use burn::tensor::{Tensor, TensorData};
use half::f16;
use repux_nn::{cpu, Net};
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
    #[error("{}: {msg}", path.display())]
    Case { path: PathBuf, msg: String },
}

#[derive(Clone, Debug)]
pub struct PredictOptions {
    pub overlap: f64,
    /// Average over the 8 mirrorings.
    pub tta: bool,
    pub tile_batch: usize,
    pub probabilities: bool,
    pub largest_component: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions { overlap: 0.5, tta: false, tile_batch: 1, probabilities: false, largest_component: false }
    }
}

/// A prediction on the native grid of the input.
pub struct Prediction {
    pub geometry: Geometry,
    /// Class index per voxel.
    pub labels: Vec<f32>,
    /// classes × D × H × W softmax probabilities, when asked for.
    pub probabilities: Option<Vec<f16>>,
    pub classes: usize,
}

pub struct Predictor {
    /// The deploy network (BFR, BatchNorm and SR folded).
    pub net: Net,
    pub plans: Plans,
}

impl Predictor {
    /// Loads a model directory once.
    pub fn load(dir: &Path) -> Result<Predictor, InferError> {
        let net = repux_nn::load_model_dir(dir, &cpu())?.merge();
        let plans_path = dir.join("plans.json");
        let plans = Plans::load(&plans_path)?;
        let cfg = net.config();
        if plans.normalization.len() != cfg.in_channels {
            return Err(InferError::Case { path: plans_path, msg: format!("plans normalise {} channels, the model takes {}", plans.normalization.len(), cfg.in_channels) });
        }
        if plans.num_classes() != cfg.out_channels {
            return Err(InferError::Case { path: plans_path, msg: format!("plans have {} classes, the model predicts {}", plans.num_classes(), cfg.out_channels) });
        }
        Ok(Predictor { net, plans })
    }

    pub fn classes(&self) -> usize {
        self.net.config().out_channels
    }

    /// Logits for a batch of `n` patches (n × C × P → n × classes × P).
    pub fn forward_patches(&self, batch: &[f32], n: usize) -> Vec<f32> {
        let p = self.plans.patch_size;
        let c = self.net.config().in_channels;
        let x = Tensor::<5>::from_data(TensorData::new(batch.to_vec(), [n, c, p[0], p[1], p[2]]), &cpu());
        self.net.forward(x).into_data().try_to_vec::<f32>().unwrap_or_default()
    }

    /// Predicts one case from its channel files.
    pub fn predict(&self, images: &[PathBuf], opts: &PredictOptions, progress: impl FnMut(usize, usize)) -> Result<Prediction, InferError> {
        let case = repux_volume::Case { id: String::new(), images: images.to_vec(), label: None };
        let image = repux_prep::read_case_image(&case)?;
        let first = images.first().cloned().unwrap_or_default();
        if image.channels != self.net.config().in_channels {
            return Err(InferError::Case { path: first, msg: format!("{} channels, the model takes {}", image.channels, self.net.config().in_channels) });
        }
        let pre = preprocess(&image, None, &self.plans.prep_config()).map_err(|e| InferError::Case { path: first.clone(), msg: e.to_string() })?;
        let classes = self.classes();
        let cfg = WindowConfig { patch: self.plans.patch_size, overlap: opts.overlap, mirror: opts.tta, tile_batch: opts.tile_batch };
        let mut probs = sliding_window(&pre.image.data, pre.image.channels, pre.image.geometry.shape, classes, &cfg, |b, n| self.forward_patches(b, n), progress);
        softmax(&mut probs, classes);
        let n_pre = pre.image.geometry.voxels();
        let n = image.geometry.voxels();
        let mut best = vec![f32::NEG_INFINITY; n];
        let mut labels = vec![0f32; n];
        let mut out_probs = opts.probabilities.then(|| Vec::with_capacity(classes * n));
        for c in 0..classes {
            let p = invert_channel(&probs[c * n_pre..(c + 1) * n_pre], &pre.record, if c == 0 { 1.0 } else { 0.0 });
            for ((b, l), &v) in best.iter_mut().zip(labels.iter_mut()).zip(&p) {
                if v > *b {
                    *b = v;
                    *l = c as f32;
                }
            }
            if let Some(o) = out_probs.as_mut() {
                o.extend(p.iter().map(|&v| f16::from_f32(v)));
            }
        }
        if opts.largest_component {
            largest_component_per_class(&mut labels, image.geometry.shape);
        }
        Ok(Prediction { geometry: image.geometry, labels, probabilities: out_probs, classes })
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
            .filter(|p| p.is_file() && repux_volume::Format::of(p).is_some() && !p.file_name().map(|n| n.to_string_lossy().starts_with('.')).unwrap_or(true))
            .collect();
        v.sort();
        v
    } else if input.is_file() {
        vec![input.to_path_buf()]
    } else {
        return Err(repux_volume::Error::invalid(input, "no such file or folder").into());
    };
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
    Ok(cases.into_iter().map(|(k, v)| (k, v.into_values().collect())).collect())
}
