//! Checkpoints: a model directory plus optimizer and trainer state, written into a temporary
//! directory and swapped in by rename; reading one back to resume; initial weights from a model
//! directory or a weight file.

use super::config::TrainConfig;
use super::TrainError;
use crate::optim::AdamW;
use repux_nn::{Net, Weights};
use repux_prep::Plans;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `trainer_state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct TrainerState {
    pub iteration: usize,
    pub best_val_dice: Option<f64>,
    pub best_iteration: usize,
    pub validations_since_best: usize,
    pub seconds: f64,
}

/// A copy of the (autodiff-device) network on the plain compute device: BatchNorm then uses its
/// running statistics.
pub fn eval_copy(net: &Net) -> Result<Net, TrainError> {
    let device = repux_nn::compute_device();
    let mut plain = Net::new(net.config(), &device);
    let mut im = repux_nn::weights::Importer::new(repux_nn::state_dict(net)?, &device);
    plain.visit("", &mut im);
    im.finish()?;
    Ok(plain)
}

/// Writes a whole checkpoint into `OUT/.NAME.tmp`, then swaps it in by rename.
pub(super) fn save_checkpoint(
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
    repux_volume::fs::write_json(&tmp.join("trainer_state.json"), state)?;
    repux_volume::fs::write_json(&tmp.join("train_config.json"), cfg)?;
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
pub(super) fn load_checkpoint(
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
    let net = repux_nn::load_model_dir(&dir, &repux_nn::compute_device().autodiff())?;
    Ok((net, opt, state, cfg))
}

/// Weights for `model` from `from`: a model directory or a training folder (repux's training W),
/// or a weight file such as the authors' `.pth` (deploy-form kernels: under BFR the stored W
/// becomes `W_file / δ`, so the first forward is the file's network). With `new_head` the
/// output head keeps the fresh network's initialisation.
pub(super) fn init_weights(net: &mut Net, from: &Path, new_head: bool) -> Result<(), TrainError> {
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
    let device = repux_nn::compute_device().autodiff();
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
