//! bf16 in training and validation: a tiny mixed-precision run's loss curve tracks the fp32
//! run's from the same seed, the choice is saved with the run and kept when it is extended, and
//! bf16 inference keeps a trained network's Dice. Its own test binary: the GEMM precision is
//! process-wide.

mod common;

use common::{setup, tiny};
use repux_nn::ModelConfig;
use repux_prep::cache::CachedCase;
use repux_train::{train, Cases, Precision, RunOptions, TrainConfig};

/// Largest relative gap between the two loss curves allowed: bf16 operands perturb every
/// conv by ~2⁻⁹ relative and the perturbations compound over the steps; measured 9.9e-3 at
/// most over these 30 steps.
const LOSS_TOL: f64 = 0.05;

/// One preprocessed phantom case at 4 mm with a 32³ patch, and the tiny preset for it.
fn one_case() -> (
    tempfile::TempDir,
    repux_prep::Plans,
    Vec<CachedCase>,
    ModelConfig,
) {
    let d = tempfile::tempdir().unwrap();
    let (_, plans, cases) = setup(d.path(), 1, [4.0; 3], [32; 3]);
    let model = tiny(&plans);
    (d, plans, cases, model)
}

/// The precision is process-wide: the tests here take turns.
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn bf16_training_tracks_fp32() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (d, plans, cases, model) = one_case();
    let run = |precision: Precision| {
        let cfg = TrainConfig {
            iterations: 30,
            val_interval: 30,
            lr: 1e-2,
            augment: "none".into(),
            precision,
            ..TrainConfig::default()
        };
        let out = d.path().join(format!("{precision:?}"));
        let mut losses = Vec::new();
        train(
            &model,
            &plans,
            Cases {
                train: cases.clone(),
                val: &cases,
            },
            &cfg,
            &out,
            &RunOptions::default(),
            |l| losses.push(l.loss),
        )
        .unwrap();
        let saved = std::fs::read_to_string(out.join("train_config.json")).unwrap();
        (losses, saved)
    };
    let (fp32, saved32) = run(Precision::Fp32);
    let (bf16, saved16) = run(Precision::Bf16);
    // Extending the bf16 run continues in bf16 whatever the caller's configuration says: the
    // saved one is used.
    repux_kernels::set_precision(repux_kernels::Precision::Fp32);
    train(
        &model,
        &plans,
        Cases {
            train: cases.clone(),
            val: &cases,
        },
        &TrainConfig::default(),
        &d.path().join("Bf16"),
        &RunOptions {
            extend: 2,
            ..RunOptions::default()
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(
        repux_kernels::bf16::precision(),
        repux_kernels::Precision::Bf16
    );
    repux_kernels::set_precision(repux_kernels::Precision::Fp32);
    assert!(saved32.contains("\"precision\": \"fp32\""), "{saved32}");
    assert!(saved16.contains("\"precision\": \"bf16\""), "{saved16}");
    let gaps: Vec<f64> = fp32
        .iter()
        .zip(&bf16)
        .map(|(a, b)| (a - b).abs() / a.abs())
        .collect();
    let worst = gaps.iter().cloned().fold(0.0, f64::max);
    eprintln!("loss fp32 {fp32:.4?}\nloss bf16 {bf16:.4?}\nlargest relative gap {worst:.2e}");
    assert_eq!(fp32.len(), 30);
    assert!(worst > 0.0, "the bf16 run computed exactly the fp32 losses");
    assert!(worst <= LOSS_TOL, "largest relative loss gap {worst}");
    // Both learn: the last losses are below the first.
    assert!(bf16[29] < bf16[0] && fp32[29] < fp32[0]);
}

/// bf16 inference of a network trained in fp32 keeps its Dice: the tiny network trained to
/// overfit one case (as `tiny_network_overfits_and_checkpoints_predict`) validates within 0.002
/// mean Dice of its fp32 validation when its GEMMs take bf16 operands.
#[test]
fn bf16_inference_keeps_the_dice_of_an_fp32_network() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (d, plans, cases, model) = one_case();
    let cfg = TrainConfig {
        iterations: 300,
        val_interval: 300,
        lr: 1e-2,
        schedule: repux_train::Schedule::Cosine,
        warmup: 10,
        augment: "none".into(),
        class_uniform: true,
        ..TrainConfig::default()
    };
    let res = train(
        &model,
        &plans,
        Cases {
            train: cases.clone(),
            val: &cases,
        },
        &cfg,
        &d.path().join("model"),
        &RunOptions::default(),
        |_| {},
    )
    .unwrap();
    let net = repux_train::trainer::eval_copy(&res.net).unwrap();
    let mean = |dice: Vec<f64>| dice.iter().sum::<f64>() / dice.len() as f64;
    let fp32 = mean(repux_train::trainer::validate(&net, &cases, plans.patch_size).unwrap());
    repux_kernels::set_precision(repux_kernels::Precision::Bf16);
    let bf16 = repux_train::trainer::validate(&net, &cases, plans.patch_size);
    repux_kernels::set_precision(repux_kernels::Precision::Fp32);
    let bf16 = mean(bf16.unwrap());
    eprintln!("mean Dice: fp32 {fp32:.4}, bf16 inference {bf16:.4}");
    assert!(fp32 >= 0.9, "the fp32 network did not learn: {fp32}");
    assert!((fp32 - bf16).abs() <= 0.002, "fp32 {fp32}, bf16 {bf16}");
}
