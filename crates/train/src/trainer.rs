//! The iteration-based trainer: AdamW (PyTorch's, [`crate::optim`]; the paper: lr 1e-4, weight
//! decay 0.01, constant), the paper's DiceCE, batches from the seeded worker-pool loader over the
//! preprocessed cache, validation by sliding window on the fold's validation cases (in
//! preprocessed space), and checkpoints that predict on their own and resume exactly.
//!
//! A checkpoint (`checkpoint_latest`, `checkpoint_best`, `checkpoint_final`) is a model
//! directory — `config.json`, `model.safetensors` (weights and BatchNorm running statistics in
//! PyTorch key names), `plans.json` — plus `optimizer.safetensors` (AdamW moments by parameter
//! name, step count), `trainer_state.json` (iteration, best validation Dice, early-stopping count,
//! elapsed seconds) and `train_config.json` (schedule, seed, …). The data RNG needs no state:
//! batch t depends only on (seed, t), so resuming at iteration i restarts the loader at t = i and
//! the losses after resuming equal those of an uninterrupted run. A checkpoint is written into a
//! temporary directory and swapped in by rename, so an interrupted write leaves the previous one.
//!
//! BatchNorm sees the crops of one step as its batch (the paper: 1 volume × 2 crops = 2); with
//! batch 1 its batch statistics come from one crop (BatchNorm over the spatial axes of a single
//! sample still works, but its statistics are noisier and the running averages drift more).
//!
//! The trainer runs on repux's CPU device (burn's Flex backend with repux's kernels, under
//! Autodiff); networks and loss are written against burn's dispatching `Tensor`, so another
//! backend needs only its [`repux_nn::ops::ConvBackend`] impl.

use crate::loss::{dice_ce, one_hot};
use crate::optim::AdamW;
use burn::optim::GradientsParams;
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
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
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
    #[error(transparent)]
    Window(#[from] repux_infer::window::WindowError),
    #[error("{0}")]
    Config(String),
}

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
}

impl Default for TrainConfig {
    /// The paper's recipe (ARCHITECTURE §3).
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

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Completed,
    /// Stop file or signal; `checkpoint_latest` holds the state, `--resume` continues.
    Stopped,
    EarlyStopped,
}

/// What [`train`] returns.
pub struct Outcome {
    pub net: Net,
    pub iteration: usize,
    pub ending: Ending,
    pub best_val_dice: Option<f64>,
}

/// `trainer_state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainerState {
    iteration: usize,
    best_val_dice: Option<f64>,
    best_iteration: usize,
    validations_since_best: usize,
    seconds: f64,
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
    /// The run's planned length (not logged: a resumed or extended run knows it only here).
    #[serde(skip)]
    pub planned: usize,
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
        let s: Vec<Split> = serde_json::from_str(&text)
            .map_err(|e| TrainError::Config(format!("{}: invalid splits: {e}", path.display())))?;
        return Ok(s.into_iter().map(|s| (s.train, s.val)).collect());
    }
    let mut ids = ids.to_vec();
    ids.sort();
    ids.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(12345));
    let k = 5.min(ids.len()).max(1);
    let folds: Vec<Split> = (0..k)
        .map(|f| {
            let val: Vec<String> = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| i % k == f)
                .map(|(_, s)| s.clone())
                .collect();
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
    let mut im = repux_nn::weights::Importer::new(repux_nn::state_dict(net)?, &cpu());
    plain.visit("", &mut im);
    im.finish()?;
    Ok(plain)
}

/// Per-class Dice (classes 1..) of a network on cached cases, in preprocessed space.
pub fn validate(
    net: &Net,
    cases: &[CachedCase],
    patch: [usize; 3],
) -> Result<Vec<f64>, TrainError> {
    let classes = net.config().out_channels;
    let cin = net.config().in_channels;
    let cfg = WindowConfig {
        patch,
        overlap: 0.5,
        mirror: false,
        tile_batch: 1,
    };
    let mut inter = vec![0f64; classes];
    let mut sums = vec![0f64; classes];
    for c in cases {
        let logits = sliding_window(
            &c.image,
            c.meta.channels,
            c.meta.shape,
            classes,
            &cfg,
            |b, n| {
                let x = Tensor::<5>::from_data(
                    TensorData::new(b.to_vec(), [n, cin, patch[0], patch[1], patch[2]]),
                    &cpu(),
                );
                repux_nn::values(net.forward(x), "network output")
                    .map_err(|e| TrainError::Config(e.to_string()))
            },
            |_, _| {},
        )?;
        let n: usize = c.meta.shape.iter().product();
        for v in 0..n {
            let pred = (0..classes)
                .max_by(|&a, &b| logits[a * n + v].total_cmp(&logits[b * n + v]))
                .unwrap_or(0);
            let truth = c.labels[v] as usize;
            if truth >= classes {
                return Err(TrainError::Config(format!(
                    "case {}: label value {truth} is outside the network's {classes} classes",
                    c.meta.id
                )));
            }
            if pred == truth {
                inter[pred] += 1.0;
            }
            sums[pred] += 1.0;
            sums[truth] += 1.0;
        }
    }
    Ok((1..classes)
        .map(|k| {
            if sums[k] > 0.0 {
                2.0 * inter[k] / sums[k]
            } else {
                f64::NAN
            }
        })
        .collect())
}

/// Writes a whole checkpoint into `OUT/.NAME.tmp`, then swaps it in by rename.
fn save_checkpoint(
    net: &Net,
    plans: &Plans,
    opt: &AdamW,
    state: &TrainerState,
    cfg: &TrainConfig,
    out: &Path,
    name: &str,
) -> Result<(), TrainError> {
    let dir = out.join(name);
    let tmp = out.join(format!(".{name}.tmp"));
    let old = out.join(format!(".{name}.old"));
    let io = |p: &Path, e: std::io::Error| TrainError::Volume(repux_volume::Error::io(p, e));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    // The training network's state dict is the eval copy's: no round trip through a copy.
    repux_nn::save_model_dir(net, &tmp)?;
    plans.save(&tmp.join("plans.json"))?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    repux_volume::nifti::write_json(&tmp.join("trainer_state.json"), state)?;
    repux_volume::nifti::write_json(&tmp.join("train_config.json"), cfg)?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
        }
        std::fs::rename(&dir, &old).map_err(|e| io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| io(&tmp, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    }
    Ok(())
}

/// Reads a checkpoint written by [`save_checkpoint`]: network (autodiff device), optimizer,
/// trainer state and configuration. Falls back to `.NAME.old` when a swap was interrupted.
fn load_checkpoint(
    out: &Path,
    name: &str,
) -> Result<(Net, AdamW, TrainerState, TrainConfig), TrainError> {
    let mut dir = out.join(name);
    if !dir.is_dir() && out.join(format!(".{name}.old")).is_dir() {
        dir = out.join(format!(".{name}.old"));
    }
    if !dir.is_dir() {
        return Err(TrainError::Config(format!(
            "{}: no checkpoint to resume from (train without --resume first)",
            dir.display()
        )));
    }
    let read_json = |f: &str| -> Result<serde_json::Value, TrainError> {
        let p = dir.join(f);
        let text = std::fs::read_to_string(&p).map_err(|e| repux_volume::Error::io(&p, e))?;
        serde_json::from_str(&text).map_err(|e| {
            TrainError::Config(format!("{}: invalid or truncated JSON: {e}", p.display()))
        })
    };
    let parse = |f: &str, v: serde_json::Value| {
        TrainError::Config(format!("{}: {v}", dir.join(f).display()))
    };
    let state: TrainerState = serde_json::from_value(read_json("trainer_state.json")?)
        .map_err(|e| parse("trainer_state.json", e.to_string().into()))?;
    let cfg: TrainConfig = serde_json::from_value(read_json("train_config.json")?)
        .map_err(|e| parse("train_config.json", e.to_string().into()))?;
    let opt = AdamW::load(&dir.join("optimizer.safetensors"))?;
    let net = repux_nn::load_model_dir(&dir, &cpu().autodiff())?;
    Ok((net, opt, state, cfg))
}

/// Reads `log.jsonl`, keeping the lines up to `iteration` (a resumed run rewrites what came after).
fn read_log(path: &Path, iteration: usize) -> Result<Vec<String>, TrainError> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| repux_volume::Error::io(path, e))?;
    Ok(text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("iteration").and_then(|i| i.as_u64()))
                .is_some_and(|i| i as usize <= iteration)
        })
        .map(|l| l.to_string())
        .collect())
}

/// Weights for `model` from `from`: a model directory or a training folder (repux's training W),
/// or a weight file such as the authors' `.pth` (deploy-form kernels: under BFR the stored W
/// becomes `W_file / δ`, so the first forward is the file's network). With `new_head` the
/// output head keeps the fresh network's initialisation.
fn init_weights(net: &mut Net, from: &Path, new_head: bool) -> Result<(), TrainError> {
    let (file, loaded, form) = if from.is_file() {
        let (sd, form) = repux_nn::read_weights(from)?;
        (from.to_path_buf(), sd, form)
    } else {
        let dir = if from.join("model.safetensors").is_file() {
            from.to_path_buf()
        } else {
            from.join("checkpoint_final")
        };
        let file = dir.join("model.safetensors");
        let sd = repux_nn::read_state_dict(&file)?;
        (file, sd, repux_nn::KernelForm::Training)
    };
    let mut sd = repux_nn::state_dict(net)?;
    let head = |k: &str| k.starts_with("out.");
    for (k, v) in loaded.0 {
        if !(new_head && head(&k)) {
            sd.0.insert(k, v);
        }
    }
    let device = cpu().autodiff();
    repux_nn::import_state_dict(net, sd, form, &device).map_err(|e| {
        TrainError::Config(format!(
            "{}: {e}{}",
            file.display(),
            if new_head {
                ""
            } else {
                " (a different class count needs --new-head)"
            }
        ))
    })?;
    Ok(())
}

/// Trains (or resumes) a network; `on_log` sees every log line (also appended to
/// `out/log.jsonl` as it is made).
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &ModelConfig,
    plans: &Plans,
    train_cases: Vec<CachedCase>,
    val_cases: &[CachedCase],
    cfg: &TrainConfig,
    out: &Path,
    opts: &RunOptions,
    mut on_log: impl FnMut(&LogLine),
) -> Result<Outcome, TrainError> {
    if train_cases.is_empty() {
        return Err(TrainError::Config("no training cases".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| repux_volume::Error::io(out, e))?;
    let device = cpu().autodiff();
    let (mut net, mut opt, mut state, mut cfg) = if opts.resume || opts.extend > 0 {
        let (net, opt, state, mut saved) = load_checkpoint(out, "checkpoint_latest")?;
        opt.check(&net).map_err(|e| {
            TrainError::Config(format!(
                "{}: {e}",
                out.join("checkpoint_latest/optimizer.safetensors")
                    .display()
            ))
        })?;
        saved.iterations = saved.iterations.max(state.iteration) + opts.extend;
        (net, opt, state, saved)
    } else {
        let mut net = Net::seeded(model, &device, cfg.seed);
        if let Some(dir) = opts.init_from {
            init_weights(&mut net, dir, opts.new_head)?;
        }
        (
            net,
            AdamW::new(cfg.weight_decay),
            TrainerState {
                iteration: 0,
                best_val_dice: None,
                best_iteration: 0,
                validations_since_best: 0,
                seconds: 0.0,
            },
            cfg.clone(),
        )
    };
    cfg.val_interval = cfg.val_interval.max(1);
    let mut plans = plans.clone();
    if let Some(p) = cfg.patch_size {
        if p.contains(&0) {
            return Err(TrainError::Config(format!(
                "patch_size {p:?} must be positive"
            )));
        }
        plans.patch_size = p;
    }
    let plans = &plans;
    let model = net.config().clone();
    let p = plans.patch_size;
    net.check_input([1, model.in_channels, p[0], p[1], p[2]]).map_err(|e| {
        let m = model.size_multiple();
        TrainError::Config(format!("patch size {p:?}: {e} for this model; plan with `repux plan --size-multiple {m}` or set patch_size in the train config"))
    })?;
    if model.out_channels != plans.num_classes() || model.in_channels != plans.normalization.len() {
        return Err(TrainError::Config(format!(
            "the model takes {} channels and predicts {} classes; the plans have {} and {}",
            model.in_channels,
            model.out_channels,
            plans.normalization.len(),
            plans.num_classes()
        )));
    }
    // A label past the classes would index past the one-hot; the cache rejects values outside
    // the plans' labels, and this catches a cache written under other plans.
    for c in train_cases.iter().chain(val_cases) {
        if let Some(&v) = c.labels.iter().find(|&&v| v as usize >= model.out_channels) {
            return Err(TrainError::Config(format!("case {}: label value {v} is outside the {} classes of the plans (re-run `repux preprocess`, after `repux dataset check`)", c.meta.id, model.out_channels)));
        }
    }
    if let Some(w) = &cfg.class_weights {
        if w.len() != model.out_channels {
            return Err(TrainError::Config(format!(
                "class_weights has {} entries for {} classes",
                w.len(),
                model.out_channels
            )));
        }
    }
    // The folder alone says what was trained: the model config and the plans beside the log.
    repux_volume::nifti::write_json(&out.join("config.json"), &model)?;
    plans.save(&out.join("plans.json"))?;
    let augment = AugmentConfig::preset(&cfg.augment).ok_or_else(|| {
        TrainError::Config(format!(
            "unknown augmentation preset {:?} (paper, nnunet, none)",
            cfg.augment
        ))
    })?;
    let sampler = SamplerConfig {
        patch: plans.patch_size,
        foreground_fraction: plans.foreground_fraction,
        class_uniform: cfg.class_uniform,
        pad: PadMode::Zero,
    };
    let loader_cfg = LoaderConfig {
        sampler,
        augment,
        volumes_per_step: cfg.volumes_per_step,
        crops_per_volume: cfg.crops_per_volume,
        seed: cfg.seed,
        workers: cfg.workers,
        prefetch: 2,
    };
    let mut loader = Loader::spawn(Arc::new(train_cases), loader_cfg, state.iteration as u64);
    let classes = model.out_channels;
    let log_path = out.join("log.jsonl");
    // The log so far (a resumed run drops lines past its checkpoint), then one line per step.
    let kept = read_log(&log_path, state.iteration)?;
    let mut losses: Vec<(usize, f64)> = Vec::new();
    let mut dices: Vec<(usize, f64)> = Vec::new();
    for l in &kept {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
            let it = v["iteration"].as_u64().unwrap_or(0) as usize;
            losses.push((it, v["loss"].as_f64().unwrap_or(f64::NAN)));
            if let Some(d) = v["val_mean_dice"].as_f64() {
                dices.push((it, d));
            }
        }
    }
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    repux_volume::nifti::write_bytes_atomic(&log_path, text.as_bytes())?;
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .map_err(|e| repux_volume::Error::io(&log_path, e))?;
    let start = Instant::now();
    let base_seconds = state.seconds;
    let stop_file = out.join("STOP");
    let mut ending = Ending::Completed;
    let weights = cfg.class_weights.clone();
    while state.iteration < cfg.iterations {
        let it = state.iteration + 1;
        let batch = loader
            .next()
            .ok_or_else(|| TrainError::Config("the data loader stopped".into()))?;
        let p = batch.patch;
        let dims = [batch.batch, batch.channels, p[0], p[1], p[2]];
        let x = Tensor::<5>::from_data(TensorData::new(batch.image, dims), &device);
        let y = one_hot(
            &batch.labels,
            classes,
            [batch.batch, classes, p[0], p[1], p[2]],
            &device,
        );
        let (loss, dice, ce) = dice_ce(net.forward(x), y, weights.as_deref());
        let scalar = |t: &Tensor<1>| {
            t.clone()
                .into_data()
                .try_to_vec::<f32>()
                .ok()
                .and_then(|v| v.first().copied())
                .unwrap_or(f32::NAN) as f64
        };
        let (lv, dv, cv) = (scalar(&loss), scalar(&dice), scalar(&ce));
        if !lv.is_finite() {
            return Err(TrainError::Config(format!(
                "loss became {lv} at iteration {it}; the last good state is in {}",
                out.join("checkpoint_latest").display()
            )));
        }
        let lr = cfg.lr_at(it);
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        opt.step(&mut net, grads, lr)
            .map_err(|e| TrainError::Config(format!("iteration {it}: {e}")))?;
        state.iteration = it;
        state.seconds = base_seconds + start.elapsed().as_secs_f64();
        let mut line = LogLine {
            iteration: it,
            loss: lv,
            dice_loss: dv,
            ce: cv,
            lr,
            seconds: state.seconds,
            val_dice: None,
            val_mean_dice: None,
            planned: cfg.iterations,
        };
        losses.push((it, lv));
        let mut early = false;
        if it % cfg.val_interval == 0 || it == cfg.iterations {
            if !val_cases.is_empty() {
                let d = validate(&eval_copy(&net)?, val_cases, plans.patch_size)?;
                let finite: Vec<f64> = d.iter().cloned().filter(|v| v.is_finite()).collect();
                let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
                line.val_dice = Some(d);
                line.val_mean_dice = Some(mean);
                dices.push((it, mean));
                if state.best_val_dice.is_none_or(|b| mean > b) {
                    state.best_val_dice = Some(mean);
                    state.best_iteration = it;
                    state.validations_since_best = 0;
                    save_checkpoint(&net, plans, &opt, &state, &cfg, out, "checkpoint_best")?;
                } else {
                    state.validations_since_best += 1;
                    early = cfg
                        .early_stopping
                        .is_some_and(|p| state.validations_since_best >= p);
                }
            }
            save_checkpoint(&net, plans, &opt, &state, &cfg, out, "checkpoint_latest")?;
            crate::progress::draw(&losses, &dices, cfg.iterations, &out.join("progress.png"))?;
        }
        let mut s = serde_json::to_string(&line).map_err(|e| TrainError::Config(e.to_string()))?;
        s.push('\n');
        log.write_all(s.as_bytes())
            .map_err(|e| repux_volume::Error::io(&log_path, e))?;
        on_log(&line);
        if early {
            ending = Ending::EarlyStopped;
            break;
        }
        let stop_now = opts.stop.is_some_and(|f| f.load(Ordering::SeqCst)) || stop_file.exists();
        if stop_now && state.iteration < cfg.iterations {
            save_checkpoint(&net, plans, &opt, &state, &cfg, out, "checkpoint_latest")?;
            let _ = std::fs::remove_file(&stop_file);
            crate::progress::draw(&losses, &dices, cfg.iterations, &out.join("progress.png"))?;
            return Ok(Outcome {
                net,
                iteration: state.iteration,
                ending: Ending::Stopped,
                best_val_dice: state.best_val_dice,
            });
        }
    }
    log.flush()
        .map_err(|e| repux_volume::Error::io(&log_path, e))?;
    save_checkpoint(&net, plans, &opt, &state, &cfg, out, "checkpoint_latest")?;
    save_checkpoint(&net, plans, &opt, &state, &cfg, out, "checkpoint_final")?;
    repux_volume::nifti::write_json(&out.join("train_config.json"), &cfg)?;
    crate::progress::draw(&losses, &dices, cfg.iterations, &out.join("progress.png"))?;
    Ok(Outcome {
        net,
        iteration: state.iteration,
        ending,
        best_val_dice: state.best_val_dice,
    })
}
