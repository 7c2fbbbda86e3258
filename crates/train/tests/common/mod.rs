//! Set-up the training test binaries share: preprocessed phantom cases and the tiny preset.
#![allow(dead_code)] // each test binary uses its own part

use repux_nn::ModelConfig;
use repux_prep::cache::{load_case, preprocess_dataset, CachedCase};
use repux_prep::plan::{fingerprint, make_plans};
use repux_prep::{PlanOptions, Plans};
use std::path::Path;

/// `cases` phantom cases preprocessed at `spacing` with `patch`.
pub fn setup(
    dir: &Path,
    cases: usize,
    spacing: [f64; 3],
    patch: [usize; 3],
) -> (repux_volume::Dataset, Plans, Vec<CachedCase>) {
    let ds_dir = dir.join("ds");
    repux_volume::synth::write_dataset(&ds_dir, cases, 2, |_| {}).unwrap();
    let ds = repux_volume::Dataset::open(&ds_dir).unwrap();
    let opt = PlanOptions {
        target_spacing: Some(spacing),
        patch_size: patch,
        ct_window: Some((-125.0, 275.0)),
        ..PlanOptions::default()
    };
    let plans = make_plans(&ds, fingerprint(&ds, 0).unwrap(), &opt).unwrap();
    let cache = dir.join("cache");
    preprocess_dataset(&ds, &plans, &cache, false, |_, _| {}).unwrap();
    let cases = ds
        .training
        .iter()
        .map(|c| load_case(&cache, &c.id).unwrap())
        .collect();
    (ds, plans, cases)
}

pub fn tiny(plans: &Plans) -> ModelConfig {
    ModelConfig {
        in_channels: 1,
        out_channels: plans.num_classes(),
        ..ModelConfig::preset("tiny").unwrap()
    }
}
