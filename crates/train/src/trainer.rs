//! The iteration-based trainer: AdamW (the paper: lr 1e-4, weight decay 0.01, constant), the
//! paper's DiceCE, batches from the seeded worker-pool loader over the preprocessed cache,
//! validation by sliding window on the fold's validation cases (in preprocessed space), and
//! checkpoints written atomically as model directories that predict on their own
//! (`config.json`, `model.safetensors`, `plans.json`).
//!
//! Not yet here (see the training issue): optimizer state in checkpoints and exact resume,
//! schedules other than constant, `progress.png`, a stop file. BatchNorm sees the crops of one
//! step as its batch (the paper: 1 volume × 2 crops); with batch 1 its batch statistics come from
//! one crop.

use crate::loss::{dice_ce, one_hot};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use repux_infer::window::{sliding_window, WindowConfig};
use repux_nn::{cpu, ModelConfig, Net, Weights};
use repux_prep::augment::AugmentConfig;
use repux_prep::cache::CachedCase;
use repux_prep::loader::{Loader, LoaderConfig};
use repux_prep::sampler::{PadMode, SamplerConfig};
use repux_prep::Plans;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Prep(#[from] repux_prep::Error),
    #[error(transparent)]
    Volume(#[from] repux_volume::Error),
    #[error(transparent)]
    Weights(#[from] repux_nn::WeightError),
    #[error("{0}")]
    Config(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub iterations: usize,
    pub val_interval: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub volumes_per_step: usize,
    pub crops_per_volume: usize,
    /// Augmentation preset: `paper`, `nnunet` or `none`.
    pub augment: String,
    pub workers: usize,
}

impl Default for TrainConfig {
    /// The paper's recipe (ARCHITECTURE §3), except the length, which callers set.
    fn default() -> Self {
        TrainConfig { iterations: 60_000, val_interval: 500, lr: 1e-4, weight_decay: 0.01, seed: 0, volumes_per_step: 1, crops_per_volume: 2, augment: "paper".into(), workers: 1 }
    }
}

/// One line of `log.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct LogLine {
    pub iteration: usize,
    pub loss: f64,
    pub dice_loss: f64,
    pub ce: f64,
    pub lr: f64,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_dice: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_mean_dice: Option<f64>,
}

/// nnU-Net's `splits_final.json`: five folds `{"train": [...], "val": [...]}`, deterministic for
/// the sorted ids (shuffled with a fixed seed), reused when the file exists.
pub fn splits(ids: &[String], path: &Path) -> Result<Vec<(Vec<String>, Vec<String>)>, TrainError> {
    #[derive(Serialize, Deserialize)]
    struct Split {
        train: Vec<String>,
        val: Vec<String>,
    }
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| repux_volume::Error::io(path, e))?;
        let s: Vec<Split> = serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: invalid splits: {e}", path.display())))?;
        return Ok(s.into_iter().map(|s| (s.train, s.val)).collect());
    }
    let mut ids = ids.to_vec();
    ids.sort();
    ids.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(12345));
    let k = 5.min(ids.len()).max(1);
    let folds: Vec<Split> = (0..k)
        .map(|f| {
            let val: Vec<String> = ids.iter().enumerate().filter(|(i, _)| i % k == f).map(|(_, s)| s.clone()).collect();
            let train = ids.iter().filter(|s| !val.contains(s)).cloned().collect();
            Split { train, val }
        })
        .collect();
    repux_volume::nifti::write_json(path, &folds)?;
    Ok(folds.into_iter().map(|s| (s.train, s.val)).collect())
}

/// A copy of the (autodiff-device) network on the plain CPU device: BatchNorm then uses its
/// running statistics.
pub fn eval_copy(net: &Net) -> Result<Net, TrainError> {
    let mut plain = Net::new(net.config(), &cpu());
    let mut im = repux_nn::weights::Importer::new(repux_nn::state_dict(net), &cpu());
    plain.visit("", &mut im);
    im.finish()?;
    Ok(plain)
}

/// Per-class Dice (classes 1..) of a network on cached cases, in preprocessed space.
pub fn validate(net: &Net, cases: &[CachedCase], patch: [usize; 3]) -> Vec<f64> {
    let classes = net.config().out_channels;
    let cin = net.config().in_channels;
    let cfg = WindowConfig { patch, overlap: 0.5, mirror: false, tile_batch: 1 };
    let mut inter = vec![0f64; classes];
    let mut sums = vec![0f64; classes];
    for c in cases {
        let logits = sliding_window(&c.image, c.meta.channels, c.meta.shape, classes, &cfg, |b, n| {
            let x = Tensor::<5>::from_data(TensorData::new(b.to_vec(), [n, cin, patch[0], patch[1], patch[2]]), &cpu());
            net.forward(x).into_data().try_to_vec::<f32>().unwrap_or_default()
        }, |_, _| {});
        let n: usize = c.meta.shape.iter().product();
        for v in 0..n {
            let pred = (0..classes).max_by(|&a, &b| logits[a * n + v].total_cmp(&logits[b * n + v])).unwrap_or(0);
            let truth = c.labels[v] as usize;
            if pred == truth {
                inter[pred] += 1.0;
            }
            sums[pred] += 1.0;
            sums[truth.min(classes - 1)] += 1.0;
        }
    }
    (1..classes).map(|k| if sums[k] > 0.0 { 2.0 * inter[k] / sums[k] } else { f64::NAN }).collect()
}

fn save_checkpoint(net: &Net, plans: &Plans, dir: &Path) -> Result<(), TrainError> {
    repux_nn::save_model_dir(&eval_copy(net)?, dir)?;
    plans.save(&dir.join("plans.json"))?;
    Ok(())
}

/// Trains a fresh network; `on_log` sees every log line (also appended to `out/log.jsonl`).
pub fn train(model: &ModelConfig, plans: &Plans, train_cases: Vec<CachedCase>, val_cases: &[CachedCase], cfg: &TrainConfig, out: &Path, mut on_log: impl FnMut(&LogLine)) -> Result<Net, TrainError> {
    if train_cases.is_empty() {
        return Err(TrainError::Config("no training cases".into()));
    }
    if model.out_channels != plans.num_classes() || model.in_channels != plans.normalization.len() {
        return Err(TrainError::Config(format!("the model takes {} channels and predicts {} classes; the plans have {} and {}", model.in_channels, model.out_channels, plans.normalization.len(), plans.num_classes())));
    }
    let augment = AugmentConfig::preset(&cfg.augment).ok_or_else(|| TrainError::Config(format!("unknown augmentation preset {:?} (paper, nnunet, none)", cfg.augment)))?;
    std::fs::create_dir_all(out).map_err(|e| repux_volume::Error::io(out, e))?;
    let device = cpu().autodiff();
    device.seed(cfg.seed);
    let mut net = Net::new(model, &device);
    let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay as f32).with_epsilon(1e-8).init();
    let sampler = SamplerConfig { patch: plans.patch_size, foreground_fraction: plans.foreground_fraction, class_uniform: false, pad: PadMode::Zero };
    let loader_cfg = LoaderConfig { sampler, augment, volumes_per_step: cfg.volumes_per_step, crops_per_volume: cfg.crops_per_volume, seed: cfg.seed, workers: cfg.workers, prefetch: 2 };
    let mut loader = Loader::spawn(Arc::new(train_cases), loader_cfg, 0);
    let classes = model.out_channels;
    let log_path = out.join("log.jsonl");
    let mut log = String::new();
    let start = Instant::now();
    let mut best = f64::NEG_INFINITY;
    for it in 1..=cfg.iterations {
        let batch = loader.next().ok_or_else(|| TrainError::Config("the data loader stopped".into()))?;
        let p = batch.patch;
        let dims = [batch.batch, batch.channels, p[0], p[1], p[2]];
        let x = Tensor::<5>::from_data(TensorData::new(batch.image, dims), &device);
        let y = one_hot(&batch.labels, classes, [batch.batch, classes, p[0], p[1], p[2]], &device);
        let (loss, dice, ce) = dice_ce(net.forward(x), y, None);
        let scalar = |t: &Tensor<1>| t.clone().into_data().try_to_vec::<f32>().ok().and_then(|v| v.first().copied()).unwrap_or(f32::NAN) as f64;
        let (lv, dv, cv) = (scalar(&loss), scalar(&dice), scalar(&ce));
        if !lv.is_finite() {
            return Err(TrainError::Config(format!("loss became {lv} at iteration {it}")));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(cfg.lr, net, grads);
        let mut line = LogLine { iteration: it, loss: lv, dice_loss: dv, ce: cv, lr: cfg.lr, seconds: start.elapsed().as_secs_f64(), val_dice: None, val_mean_dice: None };
        if (it % cfg.val_interval.max(1) == 0 || it == cfg.iterations) && !val_cases.is_empty() {
            let d = validate(&eval_copy(&net)?, val_cases, plans.patch_size);
            let finite: Vec<f64> = d.iter().cloned().filter(|v| v.is_finite()).collect();
            let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
            line.val_dice = Some(d);
            line.val_mean_dice = Some(mean);
            save_checkpoint(&net, plans, &out.join("checkpoint_latest"))?;
            if mean > best {
                best = mean;
                save_checkpoint(&net, plans, &out.join("checkpoint_best"))?;
            }
        }
        log.push_str(&serde_json::to_string(&line).map_err(|e| TrainError::Config(e.to_string()))?);
        log.push('\n');
        on_log(&line);
    }
    repux_volume::nifti::write_bytes_atomic(&log_path, log.as_bytes())?;
    save_checkpoint(&net, plans, &out.join("checkpoint_final"))?;
    repux_volume::nifti::write_json(&out.join("train_config.json"), cfg)?;
    Ok(net)
}
