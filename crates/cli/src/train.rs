use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use repux_nn::ModelConfig;
use repux_prep::cache::{load_case, preprocess_dataset, Outcome};
use repux_prep::Plans;
use repux_train::{splits, train, TrainConfig};
use repux_volume::Dataset;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Dataset folder.
    pub dataset: PathBuf,
    /// Plans from `repux plan`.
    #[arg(long)]
    pub plans: PathBuf,
    /// Fold 0–4 of splits_final.json, or `all` (train on everything, validate on it too).
    #[arg(long, default_value = "0")]
    pub fold: String,
    /// Output model folder (checkpoint_latest/best/final, log.jsonl, train_config.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Model preset name (paper, paper-uxnet, small, tiny, micro) or config JSON file; its
    /// channel and class counts are set from the plans.
    #[arg(long, default_value = "small")]
    pub model_preset: String,
    #[arg(long, default_value_t = 60_000)]
    pub iterations: usize,
    #[arg(long, default_value_t = 500)]
    pub val_interval: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Crops per training step from one volume (the paper: 2).
    #[arg(long, default_value_t = 2)]
    pub crops_per_volume: usize,
    /// Augmentation preset: paper, nnunet, none.
    #[arg(long, default_value = "paper")]
    pub augment: String,
    /// Preprocessed cache [default: DATASET/preprocessed]; cases not up to date are preprocessed first.
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let ds = Dataset::open(&a.dataset)?;
    let plans = Plans::load(&a.plans).context("reading the plans")?;
    let mut model = ModelConfig::load(&a.model_preset).map_err(|e| anyhow!(e))?;
    model.in_channels = plans.normalization.len();
    model.out_channels = plans.num_classes();
    let cache = a.cache.clone().unwrap_or_else(|| a.dataset.join("preprocessed"));
    let results = preprocess_dataset(&ds, &plans, &cache, false, |_, _| {})?;
    let failed: Vec<String> = results.iter().filter_map(|(id, o)| if let Outcome::Failed(m) = o { Some(format!("{id}: {m}")) } else { None }).collect();
    if !failed.is_empty() {
        bail!("preprocessing failed for {} case(s):\n  {}", failed.len(), failed.join("\n  "));
    }
    let ids: Vec<String> = ds.training.iter().map(|c| c.id.clone()).collect();
    let (train_ids, val_ids) = if a.fold == "all" {
        (ids.clone(), ids.clone())
    } else {
        let f: usize = a.fold.parse().map_err(|_| anyhow!("--fold {:?}: expected 0–4 or all", a.fold))?;
        let folds = splits(&ids, &cache.join("splits_final.json"))?;
        folds.get(f).cloned().ok_or_else(|| anyhow!("--fold {f}: splits_final.json has {} folds", folds.len()))?
    };
    let load = |ids: &[String]| ids.iter().map(|id| load_case(&cache, id)).collect::<Result<Vec<_>, _>>();
    let (train_cases, val_cases) = (load(&train_ids)?, load(&val_ids)?);
    let cfg = TrainConfig { iterations: a.iterations, val_interval: a.val_interval, lr: a.lr, weight_decay: a.weight_decay, seed: a.seed, volumes_per_step: 1, crops_per_volume: a.crops_per_volume, augment: a.augment.clone(), workers: 1 };
    let bar = ProgressBar::new(a.iterations as u64);
    bar.set_style(ProgressStyle::with_template("train {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}")?);
    train(&model, &plans, train_cases, &val_cases, &cfg, &a.out, |l| {
        let v = l.val_mean_dice.map(|d| format!(" val Dice {d:.3}")).unwrap_or_default();
        bar.set_message(format!("loss {:.4}{v}", l.loss));
        bar.inc(1);
        if let Some(d) = l.val_mean_dice {
            bar.println(format!("iteration {}: loss {:.4}, validation mean Dice {d:.4} {:?}", l.iteration, l.loss, l.val_dice.as_deref().unwrap_or(&[])));
        }
    })?;
    bar.finish_and_clear();
    println!("trained {} iterations on {} cases; model in {}/checkpoint_final", a.iterations, train_ids.len(), a.out.display());
    Ok(ExitCode::SUCCESS)
}
