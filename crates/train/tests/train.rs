//! Training on synthetic cases: a tiny network overfits (loss halves, training-case Dice ≥ 0.9),
//! the log, curves and checkpoints are written and a checkpoint predicts on its own; a stopped
//! and resumed run reproduces the uninterrupted one exactly; a truncated checkpoint is refused
//! by name; fine-tuning with a new head; the 5-fold splits are deterministic and reused.

mod common;

use common::{setup, tiny};
use repux_nn::ModelConfig;
use repux_prep::cache::CachedCase;
use repux_prep::Plans;
use repux_train::trainer::validate;
use repux_train::{splits, train, Cases, Ending, RunOptions, TrainConfig};
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn tiny_network_overfits_and_checkpoints_predict() {
    let d = tempfile::tempdir().unwrap();
    let (ds, plans, cases) = setup(d.path(), 1, [4.0, 4.0, 4.0], [32, 32, 32]);
    let model = tiny(&plans);
    let cfg = TrainConfig {
        iterations: 300,
        val_interval: 150,
        lr: 1e-2,
        schedule: repux_train::Schedule::Cosine,
        warmup: 10,
        augment: "none".into(),
        class_uniform: true,
        ..TrainConfig::default()
    };
    let out = d.path().join("model");
    let mut losses = Vec::new();
    let res = train(
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
    assert_eq!((res.ending, res.iteration), (Ending::Completed, 300));
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(
        last < 0.5 * first,
        "loss {first:.3} → {last:.3} did not halve"
    );
    // Dice per class on the training case, with the eval-mode network (running statistics).
    let dice = validate(
        &repux_train::trainer::eval_copy(&res.net).unwrap(),
        &cases,
        plans.patch_size,
    )
    .unwrap();
    let mean = dice.iter().sum::<f64>() / dice.len() as f64;
    assert!(
        mean >= 0.9,
        "training-case Dice {dice:?} (mean {mean:.3}) < 0.9"
    );
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 300);
    assert!(out.join("progress.png").is_file());
    for c in ["checkpoint_latest", "checkpoint_best", "checkpoint_final"] {
        for f in [
            "config.json",
            "model.safetensors",
            "plans.json",
            "optimizer.safetensors",
            "trainer_state.json",
            "train_config.json",
        ] {
            assert!(out.join(c).join(f).is_file(), "{c}/{f}");
        }
    }
    // The final checkpoint alone predicts a case onto its native grid.
    let p = repux_infer::Predictor::load(&out.join("checkpoint_final")).unwrap();
    let pred = p
        .predict(
            &ds.training[0].images,
            &repux_infer::PredictOptions::default(),
            |_, _| {},
        )
        .unwrap();
    let img = repux_volume::read_volume(&ds.training[0].images[0]).unwrap();
    assert_eq!(pred.geometry, img.geometry);

    // Fine-tuning: the same weights under a new 3-class head; the trunk starts equal.
    let mut plans3 = plans.clone();
    plans3.labels.retain(|_, v| *v < 3);
    let model3 = ModelConfig {
        out_channels: 3,
        ..model.clone()
    };
    let cases3: Vec<CachedCase> = cases
        .iter()
        .cloned()
        .map(|mut c| {
            c.labels.iter_mut().for_each(|l| *l = (*l).min(2));
            c
        })
        .collect();
    let out3 = d.path().join("ft");
    let cfg1 = TrainConfig {
        iterations: 1,
        lr: 0.0,
        weight_decay: 0.0,
        ..cfg.clone()
    };
    let err = train(
        &model3,
        &plans3,
        Cases {
            train: cases3.clone(),
            val: &[],
        },
        &cfg1,
        &out3,
        &RunOptions {
            init_from: Some(&out),
            ..Default::default()
        },
        |_| {},
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("--new-head"), "{err}");
    let ft = train(
        &model3,
        &plans3,
        Cases {
            train: cases3,
            val: &[],
        },
        &cfg1,
        &out3,
        &RunOptions {
            init_from: Some(&out),
            new_head: true,
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    let a = repux_nn::state_dict(&res.net).unwrap();
    let b = repux_nn::state_dict(&ft.net).unwrap();
    let trunk: Vec<&String> =
        a.0.keys()
            .filter(|k| !k.starts_with("out.") && !k.contains("running"))
            .collect();
    assert!(
        trunk.len() > 10 && trunk.iter().all(|k| a.0[*k] == b.0[*k]),
        "lr 0: the trunk keeps the loaded weights"
    );
    assert_eq!(b.0["out.conv.conv.weight"].0[0], 3);

    // Fine-tuning from a weight file in the authors' deploy form (here the trained network's
    // own export): under BFR the first forward convolves with the file's kernels, so the
    // stored W is the trained W again (W_file / δ = δW / δ).
    let pth = d.path().join("deploy.pth");
    repux_nn::export(&res.net, &pth, repux_nn::ExportFormat::Pth).unwrap();
    let out4 = d.path().join("ft_file");
    let ft2 = train(
        &model,
        &plans,
        Cases {
            train: cases.clone(),
            val: &[],
        },
        &cfg1,
        &out4,
        &RunOptions {
            init_from: Some(&pth),
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    let c = repux_nn::state_dict(&ft2.net).unwrap();
    let mut rep_kernels = 0;
    for (k, (_, w)) in
        a.0.iter()
            .filter(|(k, _)| k.contains("stages") && k.ends_with("dwconv.weight"))
    {
        let got = &c.0[k].1;
        let worst = got
            .iter()
            .zip(w)
            .map(|(x, y)| (x - y).abs() / y.abs().max(1e-3))
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-4,
            "{k}: W from the deploy file differs from the trained W by {worst} (relative)"
        );
        rep_kernels += 1;
    }
    assert!(rep_kernels > 0);
}

#[test]
fn stopped_and_resumed_run_equals_uninterrupted_and_truncation_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (_, plans, cases) = setup(d.path(), 2, [4.0, 4.0, 4.0], [32, 32, 16]);
    let model = ModelConfig {
        in_channels: 1,
        out_channels: plans.num_classes(),
        ..ModelConfig::preset("micro").unwrap()
    };
    let cfg = TrainConfig {
        iterations: 10,
        val_interval: 4,
        lr: 3e-3,
        schedule: repux_train::Schedule::Cosine,
        warmup: 3,
        ..TrainConfig::default()
    };
    let full = d.path().join("full");
    let mut want = Vec::new();
    train(
        &model,
        &plans,
        Cases {
            train: cases.clone(),
            val: &cases[..1],
        },
        &cfg,
        &full,
        &RunOptions::default(),
        |l| want.push((l.iteration, l.loss, l.lr)),
    )
    .unwrap();
    // The same run, stopped after iteration 6 (a signal), then resumed.
    let part = d.path().join("part");
    let stop = AtomicBool::new(false);
    let mut got = Vec::new();
    let r = train(
        &model,
        &plans,
        Cases {
            train: cases.clone(),
            val: &cases[..1],
        },
        &cfg,
        &part,
        &RunOptions {
            stop: Some(&stop),
            ..Default::default()
        },
        |l| {
            got.push((l.iteration, l.loss, l.lr));
            if l.iteration == 6 {
                stop.store(true, Ordering::SeqCst);
            }
        },
    )
    .unwrap();
    assert_eq!((r.ending, r.iteration), (Ending::Stopped, 6));
    assert!(!part.join("checkpoint_final").exists());
    // Another configuration passed on resume is ignored: the checkpoint's is used.
    let other = TrainConfig {
        lr: 1.0,
        ..cfg.clone()
    };
    train(
        &model,
        &plans,
        Cases {
            train: cases.clone(),
            val: &cases[..1],
        },
        &other,
        &part,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
        |l| got.push((l.iteration, l.loss, l.lr)),
    )
    .unwrap();
    assert_eq!(
        got, want,
        "resumed losses differ from the uninterrupted run"
    );
    let log = std::fs::read_to_string(part.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 10);
    // --extend 3 continues past the planned length from the final state.
    let mut ext = Vec::new();
    let r = train(
        &model,
        &plans,
        Cases {
            train: cases.clone(),
            val: &cases[..1],
        },
        &cfg,
        &part,
        &RunOptions {
            extend: 3,
            ..Default::default()
        },
        |l| ext.push(l.iteration),
    )
    .unwrap();
    assert_eq!((ext, r.iteration), (vec![11, 12, 13], 13));

    // A truncated checkpoint: a clear error naming the file; the best checkpoint is untouched.
    let latest = part.join("checkpoint_latest");
    let f = latest.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let best_before = std::fs::read(part.join("checkpoint_best/model.safetensors")).unwrap();
    let err = train(
        &model,
        &plans,
        Cases {
            train: cases.clone(),
            val: &cases[..1],
        },
        &cfg,
        &part,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
        |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("checkpoint_latest/model.safetensors"), "{err}");
    assert_eq!(
        std::fs::read(part.join("checkpoint_best/model.safetensors")).unwrap(),
        best_before
    );
    // An interrupted write (a leftover temporary folder) leaves the previous checkpoint in use.
    std::fs::write(&f, &bytes).unwrap();
    std::fs::create_dir_all(part.join(".checkpoint_latest.tmp")).unwrap();
    std::fs::write(
        part.join(".checkpoint_latest.tmp/model.safetensors"),
        b"half",
    )
    .unwrap();
    let r = train(
        &model,
        &plans,
        Cases {
            train: cases.clone(),
            val: &cases[..1],
        },
        &cfg,
        &part,
        &RunOptions {
            extend: 1,
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(r.iteration, 14);
}

#[test]
fn early_stopping_ends_a_run_without_improvement() {
    let d = tempfile::tempdir().unwrap();
    let (_, plans, cases) = setup(d.path(), 2, [4.0, 4.0, 4.0], [32, 32, 16]);
    let model = ModelConfig {
        in_channels: 1,
        out_channels: plans.num_classes(),
        ..ModelConfig::preset("micro").unwrap()
    };
    // lr 0: the weights stay; only BatchNorm's running statistics move the validation Dice.
    let cfg = TrainConfig {
        iterations: 20,
        val_interval: 2,
        lr: 0.0,
        weight_decay: 0.0,
        early_stopping: Some(2),
        patch_size: Some([16, 16, 16]),
        ..TrainConfig::default()
    };
    let out = d.path().join("m");
    let r = train(
        &model,
        &plans,
        Cases {
            train: cases.clone(),
            val: &cases[..1],
        },
        &cfg,
        &out,
        &RunOptions::default(),
        |_| {},
    )
    .unwrap();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("checkpoint_final/trainer_state.json")).unwrap(),
    )
    .unwrap();
    let best = state["best_iteration"].as_u64().unwrap() as usize;
    assert_eq!(r.ending, Ending::EarlyStopped);
    assert_eq!(
        r.iteration,
        best + 2 * 2,
        "stops at the second validation without improvement"
    );
    assert!(
        out.join("checkpoint_final").is_dir()
            && out.join("config.json").is_file()
            && out.join("plans.json").is_file()
    );
    let p = Plans::load(&out.join("checkpoint_final/plans.json")).unwrap();
    assert_eq!(
        p.patch_size,
        [16, 16, 16],
        "checkpoints carry the patch trained with"
    );
}

#[test]
fn schedules() {
    let c = TrainConfig {
        iterations: 100,
        lr: 1.0,
        ..TrainConfig::default()
    };
    assert_eq!(c.lr_at(1), 1.0);
    assert_eq!(c.lr_at(100), 1.0);
    let p = TrainConfig {
        schedule: repux_train::Schedule::Poly,
        ..c.clone()
    };
    assert_eq!(p.lr_at(1), 1.0);
    assert!((p.lr_at(51) - 0.5f64.powf(0.9)).abs() < 1e-12);
    let k = TrainConfig {
        schedule: repux_train::Schedule::Cosine,
        warmup: 10,
        ..c
    };
    assert!((k.lr_at(1) - 0.1).abs() < 1e-12 && (k.lr_at(10) - 1.0).abs() < 1e-12);
    assert!((k.lr_at(11) - 1.0).abs() < 1e-12);
    assert!((k.lr_at(56) - 0.5).abs() < 1e-12);
    assert!(k.lr_at(100) < 0.01);
    // Every field of train.toml is optional.
    let t: TrainConfig = serde_json::from_str(r#"{"iterations": 5, "schedule": "poly"}"#).unwrap();
    assert_eq!((t.iterations, t.lr, t.crops_per_volume), (5, 1e-4, 2));
    assert!(serde_json::from_str::<TrainConfig>(r#"{"iters": 5}"#).is_err());
}

#[test]
fn splits_are_deterministic_and_reused() {
    let d = tempfile::tempdir().unwrap();
    let sp = d.path().join("splits_final.json");
    let many: Vec<String> = (0..12).map(|i| format!("case_{i:02}")).collect();
    let a = splits(&many, &sp).unwrap();
    assert_eq!(a.len(), 5);
    assert!(a
        .iter()
        .all(|(t, v)| t.len() + v.len() == 12 && v.iter().all(|x| !t.contains(x))));
    let b = splits(&many[..3], &sp).unwrap();
    assert_eq!(a, b, "an existing splits_final.json is reused");
}
