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
//!
//! Layout: `config` (what a run is told), `checkpoint` (writing, resuming, initial weights),
//! `log` (`log.jsonl`), `validation` (folds, sliding-window Dice); the loop is here.

mod checkpoint;
mod config;
mod log;
mod validation;

pub use checkpoint::eval_copy;
pub use config::{Precision, RunOptions, Schedule, TrainConfig};
pub use log::LogLine;
pub use validation::{dice_of_sums, splits, validate, validate_sums, Fold};

use self::log::read_log;
use crate::loss::{dice_ce, one_hot};
use crate::optim::AdamW;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use checkpoint::{init_weights, load_checkpoint, save_checkpoint, TrainerState};
use repux_nn::{ModelConfig, Net};
use repux_plot::{draw_curves, Curves};
use repux_prep::augment::AugmentConfig;
use repux_prep::cache::CachedCase;
use repux_prep::loader::{Loader, LoaderConfig};
use repux_prep::sampler::{PadMode, SamplerConfig};
use repux_prep::Plans;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
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

/// A fold's data: the cases training draws crops from and the cases it validates on.
pub struct Cases<'a> {
    pub train: Vec<CachedCase>,
    pub val: &'a [CachedCase],
}

/// Trains (or resumes) a network; `on_log` sees every log line (also appended to
/// `out/log.jsonl` as it is made).
pub fn train(
    model: &ModelConfig,
    plans: &Plans,
    cases: Cases,
    cfg: &TrainConfig,
    out: &Path,
    opts: &RunOptions,
    mut on_log: impl FnMut(&LogLine),
) -> Result<Outcome, TrainError> {
    let Cases {
        train: train_cases,
        val: val_cases,
    } = cases;
    if train_cases.is_empty() {
        return Err(TrainError::Config("no training cases".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| repux_volume::Error::io(out, e))?;
    let device = repux_nn::compute_device().autodiff();
    // Data-parallel: the process group installed by the launcher (MPI), else one process.
    // Rank 0 alone writes files; every rank reads the same checkpoint on resume.
    let group = repux_nn::collective::group();
    let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank(), g.size()));
    let lead = rank == 0;
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
    if let Some(g) = &group {
        crate::optim::broadcast_weights(&mut net, g.as_ref()).map_err(TrainError::Config)?;
    }
    cfg.val_interval = cfg.val_interval.max(1);
    // A resumed run keeps the precision it was started with (the saved configuration's).
    repux_kernels::set_precision(cfg.precision.kernels());
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
    if lead {
        repux_volume::fs::write_json(&out.join("config.json"), &model)?;
        plans.save(&out.join("plans.json"))?;
    }
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
        shard: repux_prep::loader::Shard { rank, world },
    };
    let mut loader = Loader::spawn(Arc::new(train_cases), loader_cfg, state.iteration as u64);
    let classes = model.out_channels;
    let log_path = out.join("log.jsonl");
    // The log so far (a resumed run drops lines past its checkpoint), then one line per step.
    let kept = read_log(&log_path, state.iteration)?;
    let mut curves = Curves {
        class_names: class_names(plans, classes),
        planned: cfg.iterations,
        ..Curves::default()
    };
    for l in &kept {
        // `read_log` kept only lines that parse and carry an iteration.
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
            let it = v["iteration"].as_u64().unwrap_or(0) as usize;
            curves
                .losses
                .push((it, v["loss"].as_f64().unwrap_or(f64::NAN)));
            if let Some(d) = v["val_dice"].as_array() {
                let d = d.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect();
                curves.validations.push((it, d));
            }
        }
    }
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let mut log = if lead {
        repux_volume::fs::write_bytes_atomic(&log_path, text.as_bytes())?;
        Some(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .map_err(|e| repux_volume::Error::io(&log_path, e))?,
        )
    } else {
        None
    };
    // Validation cases are split across ranks; their Dice counts are summed.
    let my_val: Vec<&repux_prep::cache::CachedCase> = val_cases
        .iter()
        .enumerate()
        .filter(|(i, _)| i % world == rank)
        .map(|(_, c)| c)
        .collect();
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
        // Reading the loss is where a device that failed this step's forward says so.
        let scalar = |t: &Tensor<1>, what: &str| -> Result<f64, TrainError> {
            let v = repux_nn::values(t.clone(), what).map_err(|e| {
                TrainError::Config(format!(
                    "iteration {it}: {e}; the last good state is in {}",
                    out.join("checkpoint_latest").display()
                ))
            })?;
            Ok(v.first().copied().unwrap_or(f32::NAN) as f64)
        };
        let (mut lv, mut dv, mut cv) = (
            scalar(&loss, "loss")?,
            scalar(&dice, "Dice loss")?,
            scalar(&ce, "cross-entropy")?,
        );
        if !lv.is_finite() {
            return Err(TrainError::Config(format!(
                "loss became {lv} at iteration {it}; the last good state is in {}",
                out.join("checkpoint_latest").display()
            )));
        }
        let lr = cfg.lr_at(it);
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        if let Some(g) = &group {
            // The global batch's loss: the mean of the ranks' (each a mean over its crops).
            let mut l = [lv, dv, cv];
            g.all_reduce_sum_f64(&mut l);
            [lv, dv, cv] = l.map(|v| v / world as f64);
        }
        opt.step_synced(&mut net, grads, lr, group.as_deref())
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
            world_size: world,
            comm_seconds: group.as_ref().map(|g| g.busy_seconds()),
        };
        curves.losses.push((it, lv));
        let mut early = false;
        if it % cfg.val_interval == 0 || it == cfg.iterations {
            if !val_cases.is_empty() {
                let (mut inter, mut sums) =
                    validate_sums(&eval_copy(&net)?, my_val.iter().copied(), plans.patch_size)?;
                if let Some(g) = &group {
                    g.all_reduce_sum_f64(&mut inter);
                    g.all_reduce_sum_f64(&mut sums);
                }
                let d = dice_of_sums(&inter, &sums);
                let finite: Vec<f64> = d.iter().cloned().filter(|v| v.is_finite()).collect();
                let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
                curves.validations.push((it, d.clone()));
                line.val_dice = Some(d);
                line.val_mean_dice = Some(mean);
                if state.best_val_dice.is_none_or(|b| mean > b) {
                    state.best_val_dice = Some(mean);
                    state.best_iteration = it;
                    state.validations_since_best = 0;
                    if lead {
                        save_checkpoint(&net, plans, &opt, &state, &cfg, out, "checkpoint_best")?;
                    }
                } else {
                    state.validations_since_best += 1;
                    early = cfg
                        .early_stopping
                        .is_some_and(|p| state.validations_since_best >= p);
                }
            }
            if lead {
                save_checkpoint(&net, plans, &opt, &state, &cfg, out, "checkpoint_latest")?;
                draw_curves(&curves, &out.join("progress.png"))?;
            }
        }
        if let Some(log) = log.as_mut() {
            let mut s =
                serde_json::to_string(&line).map_err(|e| TrainError::Config(e.to_string()))?;
            s.push('\n');
            log.write_all(s.as_bytes())
                .map_err(|e| repux_volume::Error::io(&log_path, e))?;
            on_log(&line);
        }
        if early {
            ending = Ending::EarlyStopped;
            break;
        }
        let mut stop_now =
            opts.stop.is_some_and(|f| f.load(Ordering::SeqCst)) || stop_file.exists();
        if let Some(g) = &group {
            // Rank 0's decision, so that every rank leaves the loop at the same step.
            let mut flag = [f32::from(u8::from(stop_now))];
            g.broadcast(&mut flag);
            stop_now = flag[0] > 0.5;
        }
        if stop_now && state.iteration < cfg.iterations {
            if lead {
                save_checkpoint(&net, plans, &opt, &state, &cfg, out, "checkpoint_latest")?;
                let _ = std::fs::remove_file(&stop_file);
                draw_curves(&curves, &out.join("progress.png"))?;
            }
            return Ok(Outcome {
                net,
                iteration: state.iteration,
                ending: Ending::Stopped,
                best_val_dice: state.best_val_dice,
            });
        }
    }
    if let Some(log) = log.as_mut() {
        log.flush()
            .map_err(|e| repux_volume::Error::io(&log_path, e))?;
        save_checkpoint(&net, plans, &opt, &state, &cfg, out, "checkpoint_latest")?;
        save_checkpoint(&net, plans, &opt, &state, &cfg, out, "checkpoint_final")?;
        repux_volume::fs::write_json(&out.join("train_config.json"), &cfg)?;
        draw_curves(&curves, &out.join("progress.png"))?;
    }
    Ok(Outcome {
        net,
        iteration: state.iteration,
        ending,
        best_val_dice: state.best_val_dice,
    })
}

/// Names of the foreground classes 1..classes from the plans' labels (nnU-Net's name → value).
fn class_names(plans: &Plans, classes: usize) -> Vec<String> {
    (1..classes)
        .map(|k| {
            plans
                .labels
                .iter()
                .find(|(_, &v)| v as usize == k)
                .map_or_else(|| format!("class {k}"), |(name, _)| name.clone())
        })
        .collect()
}
