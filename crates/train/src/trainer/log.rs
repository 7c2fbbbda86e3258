//! `log.jsonl`: one line per iteration, validation results on the lines that validate.

use super::TrainError;
use serde::Serialize;
use std::path::Path;

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
    /// Processes training together (data-parallel ranks).
    pub world_size: usize,
    /// Seconds rank 0 has spent in collectives (gradient all-reduce, SyncBatchNorm, loss
    /// averaging) since it started, waiting for the other ranks included; only when several
    /// ranks train.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm_seconds: Option<f64>,
    /// The run's planned length (not logged: a resumed or extended run knows it only here).
    #[serde(skip)]
    pub planned: usize,
}

/// Reads `log.jsonl`, keeping the lines up to `iteration` (a resumed run rewrites what came after).
pub(super) fn read_log(path: &Path, iteration: usize) -> Result<Vec<String>, TrainError> {
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
