//! Folds (nnU-Net's `splits_final.json`) and validation by sliding window in preprocessed space.

use super::TrainError;
use burn::tensor::{Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use repux_infer::window::{sliding_window, WindowConfig};
use repux_nn::Net;
use repux_prep::cache::CachedCase;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One fold: training case ids, validation case ids.
pub type Fold = (Vec<String>, Vec<String>);

/// nnU-Net's `splits_final.json`: five folds `{"train": [...], "val": [...]}`, deterministic for
/// the sorted ids (shuffled with a fixed seed), reused when the file exists.
pub fn splits(ids: &[String], path: &Path) -> Result<Vec<Fold>, TrainError> {
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
    repux_volume::fs::write_json(path, &folds)?;
    Ok(folds.into_iter().map(|s| (s.train, s.val)).collect())
}

/// Per-class Dice (classes 1..) of a network on cached cases, in preprocessed space.
pub fn validate(
    net: &Net,
    cases: &[CachedCase],
    patch: [usize; 3],
) -> Result<Vec<f64>, TrainError> {
    let (inter, sums) = validate_sums(net, cases, patch)?;
    Ok(dice_of_sums(&inter, &sums))
}

/// Dice per class 1.. from pooled counts (NaN where a class is absent from both).
pub fn dice_of_sums(inter: &[f64], sums: &[f64]) -> Vec<f64> {
    (1..inter.len())
        .map(|k| {
            if sums[k] > 0.0 {
                2.0 * inter[k] / sums[k]
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// Pooled counts per class over `cases`: agreeing voxels and predicted + true voxels — what
/// ranks sum when validation is split across them.
pub fn validate_sums<'a>(
    net: &Net,
    cases: impl IntoIterator<Item = &'a CachedCase>,
    patch: [usize; 3],
) -> Result<(Vec<f64>, Vec<f64>), TrainError> {
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
                    &repux_nn::compute_device(),
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
    Ok((inter, sums))
}
