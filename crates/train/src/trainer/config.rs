//! What a run is told: `train.toml`'s [`TrainConfig`] with the learning-rate [`Schedule`], and
//! [`RunOptions`] (resume, extend, initial weights, stop signal).

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// The learning-rate schedule over the planned iterations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The paper's: the base rate throughout.
    Constant,
    /// nnU-Net's: `lr · (1 − (t−1)/T)^0.9`.
    Poly,
    /// Linear warm-up over `warmup` iterations, then half a cosine down to 0 at T.
    Cosine,
}

/// What the dense-conv GEMMs multiply during training (forward, backward and validation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 throughout.
    #[default]
    Fp32,
    /// Mixed precision as PyTorch's autocast: bf16 GEMM operands, fp32 sums; fp32 master
    /// weights, optimizer state, norms, depthwise convs and loss.
    Bf16,
}

impl Precision {
    pub fn kernels(self) -> repux_kernels::Precision {
        match self {
            Precision::Fp32 => repux_kernels::Precision::Fp32,
            Precision::Bf16 => repux_kernels::Precision::Bf16,
        }
    }
}

/// Everything about a training run that is not the data or the model; also the `train.toml`
/// file (every field optional, defaults below).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Planned iterations (steps). Default 60 000 (the paper: 40 000–80 000 by dataset).
    pub iterations: usize,
    /// Validate (and write `checkpoint_latest`) every this many iterations. Default 500.
    pub val_interval: usize,
    /// Base learning rate. Default 1e-4.
    pub lr: f64,
    /// AdamW's decoupled weight decay. Default 0.01.
    pub weight_decay: f64,
    /// Default `constant`.
    pub schedule: Schedule,
    /// Warm-up iterations of the cosine schedule. Default 0.
    pub warmup: usize,
    pub seed: u64,
    /// Volumes per step. Default 1.
    pub volumes_per_step: usize,
    /// Crops per volume. Default 2 (the paper's batch of 2 crops of one volume). The batch
    /// BatchNorm sees is `volumes_per_step × crops_per_volume`.
    pub crops_per_volume: usize,
    /// Training patch size; default the plans' (`patch_size`). Checkpoints carry plans with the
    /// patch used, so prediction tiles with it too.
    pub patch_size: Option<[usize; 3]>,
    /// Augmentation preset: `paper` (default), `nnunet` or `none`.
    pub augment: String,
    /// Data-loading threads. Default 1.
    pub workers: usize,
    /// Foreground crops centre on a class drawn uniformly first, then a voxel of it (nnU-Net's
    /// oversampling; rare classes are seen as often as large ones). Default false: a uniformly
    /// drawn foreground voxel (the paper's MONAI `RandCropByPosNegLabeld`).
    pub class_uniform: bool,
    /// Stop when the validation mean Dice has not improved for this many validations.
    pub early_stopping: Option<usize>,
    /// Per-class cross-entropy weights (background first).
    pub class_weights: Option<Vec<f32>>,
    /// GEMM precision. Default `fp32` (checkpoints written before this field trained in fp32).
    pub precision: Precision,
}

impl Default for TrainConfig {
    /// The paper's recipe (Lee et al., MICCAI 2023, implementation details).
    fn default() -> Self {
        TrainConfig {
            iterations: 60_000,
            val_interval: 500,
            lr: 1e-4,
            weight_decay: 0.01,
            schedule: Schedule::Constant,
            warmup: 0,
            seed: 0,
            volumes_per_step: 1,
            crops_per_volume: 2,
            patch_size: None,
            augment: "paper".into(),
            workers: 1,
            class_uniform: false,
            early_stopping: None,
            class_weights: None,
            precision: Precision::Fp32,
        }
    }
}

impl TrainConfig {
    /// The learning rate of iteration `it` (1-based).
    pub fn lr_at(&self, it: usize) -> f64 {
        let t = self.iterations.max(1) as f64;
        let i = it.saturating_sub(1) as f64;
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Poly => self.lr * (1.0 - i / t).max(0.0).powf(0.9),
            Schedule::Cosine => {
                let w = self.warmup as f64;
                if i < w {
                    self.lr * (i + 1.0) / w
                } else {
                    0.5 * self.lr
                        * (1.0
                            + (std::f64::consts::PI * ((i - w) / (t - w).max(1.0)).min(1.0)).cos())
                }
            }
        }
    }
}

/// How a run starts and when it stops early.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Continue from `OUT/checkpoint_latest` with its saved configuration.
    pub resume: bool,
    /// Train this many iterations past the planned length (implies `resume`).
    pub extend: usize,
    /// Start from these weights (a model directory, or a training folder's `checkpoint_final`).
    pub init_from: Option<&'a Path>,
    /// With `init_from`: replace the output head (a different class count).
    pub new_head: bool,
    /// Set (e.g. by Ctrl-C) to save a checkpoint and stop after the current iteration. A file
    /// named `STOP` in the output folder does the same.
    pub stop: Option<&'a AtomicBool>,
}
