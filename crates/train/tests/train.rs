//! A short training run on synthetic cases: the loss falls by half, the log and checkpoints are
//! written, a checkpoint predicts on its own, and the 5-fold splits are deterministic and reused.

use repux_nn::ModelConfig;
use repux_prep::cache::{load_case, preprocess_dataset};
use repux_prep::plan::{fingerprint, make_plans};
use repux_prep::PlanOptions;
use repux_train::{splits, train, TrainConfig};

#[test]
fn loss_halves_and_checkpoints_predict() {
    let d = tempfile::tempdir().unwrap();
    let ds_dir = d.path().join("ds");
    repux_volume::synth::write_dataset(&ds_dir, 2, 2, |_| {}).unwrap();
    let ds = repux_volume::Dataset::open(&ds_dir).unwrap();
    let opt = PlanOptions { target_spacing: Some([2.5, 2.5, 3.0]), patch_size: [32, 32, 32], ct_window: Some((-125.0, 275.0)), ..PlanOptions::default() };
    let plans = make_plans(&ds, fingerprint(&ds, 0).unwrap(), &opt).unwrap();
    let cache = d.path().join("cache");
    preprocess_dataset(&ds, &plans, &cache, false, |_, _| {}).unwrap();
    let ids: Vec<String> = ds.training.iter().map(|c| c.id.clone()).collect();
    let cases: Vec<_> = ids.iter().map(|id| load_case(&cache, id).unwrap()).collect();
    let model = ModelConfig { in_channels: 1, out_channels: plans.num_classes(), ..ModelConfig::preset("micro").unwrap() };
    let cfg = TrainConfig { iterations: 80, val_interval: 80, lr: 1e-2, augment: "none".into(), ..TrainConfig::default() };
    let out = d.path().join("model");
    let mut losses = Vec::new();
    train(&model, &plans, cases.clone(), &cases[..1], &cfg, &out, |l| losses.push(l.loss)).unwrap();
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(last < 0.5 * first, "loss {first:.3} → {last:.3} did not halve");
    assert_eq!(std::fs::read_to_string(out.join("log.jsonl")).unwrap().lines().count(), 80);
    for c in ["checkpoint_latest", "checkpoint_best", "checkpoint_final"] {
        for f in ["config.json", "model.safetensors", "plans.json"] {
            assert!(out.join(c).join(f).is_file(), "{c}/{f}");
        }
    }
    // The final checkpoint alone predicts a case onto its native grid.
    let p = repux_infer::Predictor::load(&out.join("checkpoint_final")).unwrap();
    let pred = p.predict(&ds.training[0].images, &repux_infer::PredictOptions::default(), |_, _| {}).unwrap();
    let img = repux_volume::read_volume(&ds.training[0].images[0]).unwrap();
    assert_eq!(pred.geometry, img.geometry);
    // Splits: deterministic, written once, then reused.
    let sp = d.path().join("splits_final.json");
    let many: Vec<String> = (0..12).map(|i| format!("case_{i:02}")).collect();
    let a = splits(&many, &sp).unwrap();
    assert_eq!(a.len(), 5);
    assert!(a.iter().all(|(t, v)| t.len() + v.len() == 12 && v.iter().all(|x| !t.contains(x))));
    let b = splits(&many[..3], &sp).unwrap();
    assert_eq!(a, b, "an existing splits_final.json is reused");
}
