//! `repux demo`: the whole pipeline on the embedded phantom — synthesise, plan, preprocess,
//! train a reduced RepUX-Net (21³ kernels and BFR kept; widths and patch reduced), predict the
//! held-out cases in their native geometry, evaluate, draw — and with `--compare` the paper's
//! ablation (BFR, plain large kernel, SR, 3D UX-Net) at the same budget and seeds.

use crate::args::triple;
use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use repux_eval::evaluate::{evaluate_folders, means, write_summary, Tolerances};
use repux_infer::{input_cases, PredictOptions, Predictor};
use repux_nn::{Arch, ModelConfig, Reparam};
use repux_prep::cache::{load_case, preprocess_dataset, Outcome};
use repux_prep::plan::{fingerprint, make_plans};
use repux_prep::{PlanOptions, Plans};
use repux_train::{splits, train, Cases, RunOptions, Schedule, TrainConfig};
use repux_volume::synth::LABELS;
use repux_volume::Dataset;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder: the phantom data, the model, predictions, summary.json, overlay.png.
    #[arg(long, default_value = "repux-demo")]
    pub out: PathBuf,
    /// Phantom training cases (two of them validate).
    #[arg(long, default_value_t = 10)]
    pub train_cases: usize,
    /// Held-out phantom test cases, predicted and evaluated.
    #[arg(long, default_value_t = 4)]
    pub test_cases: usize,
    /// Training iterations per model.
    #[arg(long, default_value_t = 1500)]
    pub iterations: usize,
    /// Learning rate (cosine schedule with a short warm-up; the paper's constant 1e-4 needs
    /// tens of thousands of iterations).
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    /// Model preset (its 21³ kernels and BFR are kept).
    #[arg(long, default_value = "tiny")]
    pub model_preset: String,
    /// Target spacing in mm (the phantom's pancreas is 7–12 mm thick).
    #[arg(long, value_parser = triple::<f64>, default_value = "3.5,3.5,3.5")]
    pub spacing: [f64; 3],
    /// Largest training patch (the planner shrinks it to the data: 32×16×16 at 3.5 mm).
    #[arg(long, value_parser = triple::<usize>, default_value = "48,48,32")]
    pub patch: [usize; 3],
    /// Seed of the phantom, the initialisation and the crops.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train and evaluate BFR, a plain large kernel, SR and 3D UX-Net at the same budget.
    #[arg(long)]
    pub compare: bool,
    /// Training seeds per variant with --compare (mean ± standard deviation over them).
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// GEMM precision of training and prediction: fp32 (the default, which the README's
    /// numbers were measured with), bf16 (mixed precision) or auto.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: crate::args::PrecisionArg,
    #[command(flatten)]
    pub device: crate::args::DeviceArg,
}

/// One trained and evaluated model.
struct RunResult {
    /// Dice per class (1..), then the foreground mean.
    dice: Vec<f64>,
    seconds: f64,
}

const CLASSES: usize = LABELS.len();

fn stage(name: &str, t: Instant) {
    println!("  {name:<44} {:>6.1} s", t.elapsed().as_secs_f64());
}

pub fn run(a: Args) -> Result<ExitCode> {
    let total = Instant::now();
    let precision = match crate::args::apply_device(&a.device.device, a.precision)?.1 {
        repux_kernels::Precision::Fp32 => repux_train::Precision::Fp32,
        repux_kernels::Precision::Bf16 => repux_train::Precision::Bf16,
    };
    let out = a.out.clone();
    let data = out.join("phantom");
    if a.train_cases < 3 || a.test_cases < 1 {
        anyhow::bail!("the demo needs at least 3 training cases and 1 test case");
    }
    std::fs::create_dir_all(&out).map_err(|e| repux_volume::Error::io(&out, e))?;
    // A previous demo's data, predictions and comparison runs would otherwise mix into this one
    // (e.g. more test cases then); only the demo's own subfolders are removed.
    for sub in ["phantom", "predictions", "compare"] {
        let p = out.join(sub);
        if p.is_dir() {
            std::fs::remove_dir_all(&p)
                .with_context(|| format!("removing the previous demo's {}", p.display()))?;
        }
    }
    println!("repux demo → {}", out.display());

    let t = Instant::now();
    repux_volume::synth::write_dataset(&data, a.train_cases, a.seed, |_| {})?;
    repux_volume::synth::write_test_cases(&data, a.train_cases, a.test_cases, a.seed, |_| {})?;
    stage(
        &format!(
            "synthesise {} + {} phantom cases",
            a.train_cases, a.test_cases
        ),
        t,
    );

    let t = Instant::now();
    let ds = Dataset::open(&data)?;
    let patch = a.patch;
    let opt = PlanOptions {
        target_spacing: Some(a.spacing),
        patch_size: patch,
        ct_window: Some((-125.0, 275.0)),
        ..PlanOptions::default()
    };
    let plans = make_plans(&ds, fingerprint(&ds, a.seed)?, &opt)?;
    plans.save(&data.join("plans.json"))?;
    let cache = data.join("preprocessed");
    let results = preprocess_dataset(&ds, &plans, &cache, false, |_, _| {})?;
    if let Some((id, Outcome::Failed(m))) = results
        .iter()
        .find(|(_, o)| matches!(o, Outcome::Failed(_)))
    {
        return Err(anyhow!("preprocessing {id}: {m}"));
    }
    stage(
        &format!(
            "plan ({:?} mm, patch {:?}) and preprocess",
            plans.target_spacing, plans.patch_size
        ),
        t,
    );

    let variants: Vec<(&str, ModelConfig)> = {
        let base = ModelConfig::load(&a.model_preset).map_err(|e| anyhow!(e))?;
        let base = ModelConfig {
            in_channels: 1,
            out_channels: CLASSES,
            ..base
        };
        let mut v = vec![("RepUX-Net (BFR)", base.clone())];
        if a.compare {
            v.push((
                "plain 21³ kernel",
                ModelConfig {
                    reparam: Some(Reparam::None),
                    ..base.clone()
                },
            ));
            v.push((
                "SR (21³ + 3³, 7³ branches)",
                ModelConfig {
                    reparam: Some(Reparam::Sr),
                    sr_kernels: vec![3, 7],
                    ..base.clone()
                },
            ));
            v.push((
                "3D UX-Net (7³)",
                ModelConfig {
                    arch: Arch::Uxnet,
                    kernel_size: Some(7),
                    reparam: None,
                    ..base.clone()
                },
            ));
            // MONAI's smallest SwinUNETR (feature_size 12; the UX-Net presets shrink widths alike).
            let swin = ModelConfig::preset("swinunetr-tiny")
                .ok_or_else(|| anyhow!("no swinunetr-tiny preset"))?;
            v.push((
                "SwinUNETR (feature size 12)",
                ModelConfig {
                    in_channels: 1,
                    out_channels: CLASSES,
                    ..swin
                },
            ));
        }
        v
    };
    let seeds = if a.compare { a.seeds.max(1) } else { 1 };
    let ids: Vec<String> = ds.training.iter().map(|c| c.id.clone()).collect();
    let (train_ids, val_ids) = splits(&ids, &cache.join("splits_final.json"))?.swap_remove(0);
    let load = |ids: &[String]| {
        ids.iter()
            .map(|id| load_case(&cache, id))
            .collect::<Result<Vec<_>, _>>()
    };
    let (train_cases, val_cases) = (load(&train_ids)?, load(&val_ids)?);
    let mut table: Vec<(&str, Vec<RunResult>)> = Vec::new();
    for (vi, (name, model)) in variants.iter().enumerate() {
        let mut runs = Vec::new();
        for s in 0..seeds {
            let dir = if vi == 0 && s == 0 {
                out.clone()
            } else {
                out.join("compare").join(format!("{}-seed{s}", slug(name)))
            };
            // SwinUNETR needs sides that are multiples of 32: its patch is the plans' rounded up
            // (crops and sliding windows pad where the image is smaller).
            let m = model.size_multiple();
            let patch = plans.patch_size.map(|p| p.div_ceil(m) * m);
            let cfg = TrainConfig {
                iterations: a.iterations,
                val_interval: (a.iterations / 3).max(1),
                lr: a.lr,
                schedule: Schedule::Cosine,
                warmup: (a.iterations / 20).max(1),
                seed: a.seed + s as u64,
                class_uniform: true,
                patch_size: (patch != plans.patch_size).then_some(patch),
                precision,
                ..TrainConfig::default()
            };
            let shared = Shared {
                plans: &plans,
                train_cases: &train_cases,
                val_cases: &val_cases,
                data: &data,
            };
            let r = run_one(name, model, &cfg, &shared, &dir)?;
            runs.push(r);
        }
        table.push((name, runs));
    }

    // The main run's results.
    let main = &table[0].1[0];
    println!();
    println!(
        "Held-out phantom cases ({}), native geometry — {} preset, {} iterations:",
        a.test_cases, a.model_preset, a.iterations
    );
    println!("| organ | Dice |\n|---|---|");
    for (c, (n, _)) in LABELS.iter().enumerate().skip(1) {
        println!("| {n} | {:.4} |", main.dice[c - 1]);
    }
    println!(
        "| **foreground mean** | **{:.4}** |",
        main.dice[CLASSES - 1]
    );
    let first_test = input_cases(&data.join("imagesTs"))?
        .into_iter()
        .next()
        .map(|(id, _)| id)
        .with_context(|| format!("{}: no test case to draw", data.join("imagesTs").display()))?;
    let overlay = out.join("overlay.png");
    let img = repux_volume::read_volume(
        &data
            .join("imagesTs")
            .join(format!("{first_test}_0000.nii.gz")),
    )?;
    let pred =
        repux_volume::read_volume(&out.join("predictions").join(format!("{first_test}.nii.gz")))?;
    let names: BTreeMap<u32, String> = LABELS
        .iter()
        .skip(1)
        .map(|(n, v)| (*v, n.to_string()))
        .collect();
    repux_plot::draw_overlay(&img, Some(&pred), &names, Some((-160.0, 240.0)), &overlay)?;
    println!();
    println!(
        "summary.json (nnU-Net shape), summary.csv, summary.md  {}",
        out.display()
    );
    println!(
        "training curves                                   {}",
        out.join("model/progress.png").display()
    );
    println!(
        "overlay of {first_test} (prediction)            {}",
        overlay.display()
    );
    if a.compare {
        let md = compare_markdown(&table, seeds, a.iterations);
        println!();
        print!("{md}");
        let p = out.join("compare.md");
        repux_volume::fs::write_bytes_atomic(&p, md.as_bytes())?;
        println!("written to {}", p.display());
    }
    println!("\ndemo finished in {:.1} s", total.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn slug(name: &str) -> String {
    name.split_whitespace()
        .next()
        .unwrap_or("run")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

/// What every compared run shares: the plans, the preprocessed fold and the dataset folder (its
/// `imagesTs`/`labelsTs` are the held-out test set).
#[derive(Clone, Copy)]
struct Shared<'a> {
    plans: &'a Plans,
    train_cases: &'a [repux_prep::cache::CachedCase],
    val_cases: &'a [repux_prep::cache::CachedCase],
    data: &'a Path,
}

/// Trains one model into `dir/model`, predicts the test cases into `dir/predictions` and writes
/// the evaluation into `dir` (summary.json, .csv, .md).
fn run_one(
    name: &str,
    model: &ModelConfig,
    cfg: &TrainConfig,
    shared: &Shared,
    dir: &Path,
) -> Result<RunResult> {
    let Shared {
        plans,
        train_cases,
        val_cases,
        data,
    } = *shared;
    let t = Instant::now();
    let model_dir = dir.join("model");
    if model_dir.exists() {
        // A fresh run: a previous demo's checkpoints would otherwise be resumed by nothing and
        // mixed into this one's log.
        std::fs::remove_dir_all(&model_dir)
            .with_context(|| format!("removing {}", model_dir.display()))?;
    }
    let bar = ProgressBar::new(cfg.iterations as u64);
    bar.set_style(ProgressStyle::with_template(
        "  train {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
    )?);
    train(
        model,
        plans,
        Cases {
            train: train_cases.to_vec(),
            val: val_cases,
        },
        cfg,
        &model_dir,
        &RunOptions::default(),
        |l| {
            bar.set_message(format!(
                "loss {:.3}{}",
                l.loss,
                l.val_mean_dice
                    .map(|d| format!(" val Dice {d:.3}"))
                    .unwrap_or_default()
            ));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    let train_s = t.elapsed().as_secs_f64();
    stage(&format!("train {name} (seed {})", cfg.seed), t);

    let t = Instant::now();
    let predictor = Predictor::load(&model_dir.join("checkpoint_final"))?;
    let pred_dir = dir.join("predictions");
    std::fs::create_dir_all(&pred_dir).map_err(|e| repux_volume::Error::io(&pred_dir, e))?;
    for (id, files) in input_cases(&data.join("imagesTs"))? {
        // Without mirroring (repux predict mirrors by default): the demo's table and timings in
        // the README were measured this way, and --compare trains five models per seed.
        let p = predictor.predict(
            &files,
            &PredictOptions {
                tta: false,
                ..PredictOptions::default()
            },
            |_, _| {},
        )?;
        repux_volume::nifti::write_labels(
            &pred_dir.join(format!("{id}.nii.gz")),
            &p.geometry,
            &p.labels,
            p.classes as u32 - 1,
        )?;
    }
    let tol = Tolerances {
        default: 1.0,
        per_class: BTreeMap::new(),
    };
    let labels: Vec<u32> = (1..CLASSES as u32).collect();
    let results = evaluate_folders(&pred_dir, &data.join("labelsTs"), Some(labels), &tol)?;
    write_summary(&results, dir, &tol)?;
    let (per, fg) = means(&results);
    stage("predict held-out cases and evaluate", t);
    let mut dice: Vec<f64> = (1..CLASSES as u32)
        .map(|c| per.get(&c).map(|v| v[0]).unwrap_or(f64::NAN))
        .collect();
    dice.push(fg[0]);
    Ok(RunResult {
        dice,
        seconds: train_s,
    })
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        f64::NAN
    };
    (m, sd)
}

fn compare_markdown(table: &[(&str, Vec<RunResult>)], seeds: usize, iterations: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Ablation on held-out phantom cases: Dice, {iterations} iterations each, {seeds} seed(s){}",
        if seeds > 1 { " (mean ± sd)" } else { "" }
    );
    let _ = writeln!(s);
    let organs: Vec<&str> = LABELS.iter().skip(1).map(|(n, _)| *n).collect();
    let _ = writeln!(
        s,
        "| model | {} | foreground mean | train s |",
        organs.join(" | ")
    );
    let _ = writeln!(s, "|---|{}---|---|", "---|".repeat(organs.len()));
    for (name, runs) in table {
        let cells: Vec<String> = (0..CLASSES)
            .map(|c| {
                let (m, sd) = mean_sd(&runs.iter().map(|r| r.dice[c]).collect::<Vec<_>>());
                if sd.is_finite() {
                    format!("{m:.3} ± {sd:.3}")
                } else {
                    format!("{m:.3}")
                }
            })
            .collect();
        let secs = mean_sd(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>()).0;
        let _ = writeln!(s, "| {name} | {} | {secs:.0} |", cells.join(" | "));
    }
    s
}
