//! Mixed-precision training (`precision = "bf16"`): a tiny run's loss curve tracks the fp32
//! run's from the same seed, and the choice is saved with the run and kept when it is extended. Its own test binary: the
//! GEMM precision is process-wide.

use repux_nn::ModelConfig;
use repux_prep::cache::{load_case, preprocess_dataset};
use repux_prep::plan::{fingerprint, make_plans};
use repux_prep::PlanOptions;
use repux_train::{train, Cases, Precision, RunOptions, TrainConfig};

/// Largest relative gap between the two loss curves allowed: bf16 operands perturb every
/// conv by ~2⁻⁹ relative and the perturbations compound over the steps; measured 9.9e-3 at
/// most over these 30 steps.
const LOSS_TOL: f64 = 0.05;

#[test]
fn bf16_training_tracks_fp32() {
    let d = tempfile::tempdir().unwrap();
    let ds_dir = d.path().join("ds");
    repux_volume::synth::write_dataset(&ds_dir, 1, 0, |_| {}).unwrap();
    let ds = repux_volume::Dataset::open(&ds_dir).unwrap();
    let opt = PlanOptions {
        target_spacing: Some([4.0; 3]),
        patch_size: [32, 32, 32],
        ct_window: Some((-125.0, 275.0)),
        ..PlanOptions::default()
    };
    let plans = make_plans(&ds, fingerprint(&ds, 0).unwrap(), &opt).unwrap();
    let cache = d.path().join("cache");
    preprocess_dataset(&ds, &plans, &cache, false, |_, _| {}).unwrap();
    let cases: Vec<_> = ds
        .training
        .iter()
        .map(|c| load_case(&cache, &c.id).unwrap())
        .collect();
    let model = ModelConfig {
        in_channels: 1,
        out_channels: plans.num_classes(),
        ..ModelConfig::preset("tiny").unwrap()
    };
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
