use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use repux_nn::ModelConfig;
use repux_prep::cache::{load_case, preprocess_dataset, Outcome};
use repux_prep::Plans;
use repux_train::{splits, train, Cases, Ending, RunOptions, Schedule, TrainConfig};
use repux_volume::Dataset;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Output model folder (checkpoint_latest/best/final, log.jsonl, progress.png, train_config.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Training configuration (TOML): any TrainConfig field (iterations, val_interval, lr,
    /// weight_decay, schedule, warmup, seed, volumes_per_step, crops_per_volume, augment, workers,
    /// early_stopping, class_weights) plus `model` (preset or JSON file). Flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model preset name (paper, paper-uxnet, small, tiny, micro, swinunetr, swinunetr-small,
    /// swinunetr-tiny) or config JSON file; its channel and class counts are set from the plans
    /// [default: small].
    #[arg(long, alias = "model-config")]
    pub model_preset: Option<String>,
    /// Planned iterations [default: 60000].
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Validate and checkpoint every N iterations [default: 500].
    #[arg(long)]
    pub val_interval: Option<usize>,
    /// Base learning rate [default: 1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW weight decay [default: 0.01].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule [default: constant].
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Warm-up iterations of the cosine schedule [default: 0].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Seed of initialisation, crops and augmentation [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Crops per training step from one volume (the paper: 2).
    #[arg(long)]
    pub crops_per_volume: Option<usize>,
    /// Augmentation preset: paper, nnunet, none.
    #[arg(long)]
    pub augment: Option<String>,
    /// Stop when the validation Dice has not improved for N validations.
    #[arg(long)]
    pub early_stopping: Option<usize>,
    /// Continue from OUT/checkpoint_latest exactly (its saved configuration is used).
    #[arg(long)]
    pub resume: bool,
    /// Train N iterations past the planned length, continuing from OUT/checkpoint_latest.
    #[arg(long)]
    pub extend: Option<usize>,
    /// Initialise from a trained model directory (or a training folder's checkpoint_final), or
    /// from a weight file such as the authors' .pth (then --model-preset describes the network;
    /// the file's kernels are the ones the network starts convolving with, δ included).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// With --init-from: a new output head for this dataset's classes (e.g. FLARE → AMOS).
    #[arg(long, requires = "init_from")]
    pub new_head: bool,
    /// Preprocessed cache [default: DATASET/preprocessed]; cases not up to date are preprocessed first.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// GEMM precision: fp32, bf16 (mixed precision as PyTorch's autocast: bf16 GEMM operands,
    /// fp32 sums, master weights, optimizer state, norms and loss), or auto (bf16 where this
    /// build has a bf16 GEMM faster than fp32 on this CPU) [default: fp32, or the config's
    /// `precision`].
    #[arg(long, value_enum)]
    pub precision: Option<crate::args::PrecisionArg>,
    #[command(flatten)]
    pub device: crate::args::DeviceArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ScheduleArg {
    Constant,
    Poly,
    Cosine,
}

/// `train.toml`: the trainer's fields plus the model.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    model: Option<String>,
    #[serde(flatten)]
    train: TrainConfig,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn read_config(path: &Path) -> Result<ConfigFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow!("{}: invalid training config: {e}", path.display()))
}

/// `--resume`/`--extend` continue with the checkpoint's saved configuration; every flag that
/// would have changed it is named instead of silently dropped.
fn report_ignored_by_resume(a: &Args) {
    let given = [
        ("--config", a.config.is_some()),
        ("--model-preset", a.model_preset.is_some()),
        ("--iterations", a.iterations.is_some()),
        ("--val-interval", a.val_interval.is_some()),
        ("--lr", a.lr.is_some()),
        ("--weight-decay", a.weight_decay.is_some()),
        ("--schedule", a.schedule.is_some()),
        ("--warmup", a.warmup.is_some()),
        ("--seed", a.seed.is_some()),
        ("--crops-per-volume", a.crops_per_volume.is_some()),
        ("--augment", a.augment.is_some()),
        ("--early-stopping", a.early_stopping.is_some()),
        ("--precision", a.precision.is_some()),
        ("--init-from", a.init_from.is_some()),
    ];
    let ignored: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
    if !ignored.is_empty() {
        eprintln!("warning: a resumed run continues with the configuration saved in {}/checkpoint_latest; ignored: {} (use --extend N to train longer)", a.out.display(), ignored.join(", "));
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    // Under an MPI launcher: join the process group (the `mpi` build), or refuse to train N
    // independent copies.
    #[cfg(feature = "mpi")]
    let group = if repux_train::mpi::launched() {
        let timeout = std::env::var("REPUX_MPI_TIMEOUT")
            .ok()
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| anyhow!("REPUX_MPI_TIMEOUT={v:?}: expected seconds"))
            })
            .transpose()?
            .unwrap_or(600);
        let g = std::sync::Arc::new(
            repux_train::mpi::MpiGroup::init(std::time::Duration::from_secs(timeout))
                .map_err(|e| anyhow!(e))?,
        );
        repux_nn::collective::install(Some(g.clone()));
        Some(g)
    } else {
        None
    };
    #[cfg(not(feature = "mpi"))]
    if ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|n| n.parse::<usize>().is_ok_and(|n| n > 1)))
    {
        bail!("started by an MPI launcher with several ranks, but this repux was built without the `mpi` feature: build it with `cargo build --release --features mpi`");
    }
    #[cfg(feature = "mpi")]
    let lead = group.as_ref().is_none_or(|g| {
        use repux_nn::collective::Collective;
        g.rank() == 0
    });
    #[cfg(not(feature = "mpi"))]
    let lead = true;
    let r = run_inner(a, lead);
    #[cfg(feature = "mpi")]
    {
        repux_nn::collective::install(None);
        if let (Err(e), Some(g)) = (&r, &group) {
            // The other ranks are inside a collective, waiting for this one: end the whole
            // job now with this rank's error rather than leave them to the watchdog.
            g.abort(&format!("{e:#}"));
        }
        drop(group);
    }
    r
}

fn run_inner(a: Args, lead: bool) -> Result<ExitCode> {
    let ds = Dataset::open(&a.dataset)?;
    let plans = Plans::load(&a.plans).context("reading the plans")?;
    let file = match &a.config {
        Some(p) => read_config(p)?,
        None => ConfigFile::default(),
    };
    let mut cfg = file.train;
    if let Some(v) = a.iterations {
        cfg.iterations = v;
    }
    if let Some(v) = a.val_interval {
        cfg.val_interval = v;
    }
    if let Some(v) = a.lr {
        cfg.lr = v;
    }
    if let Some(v) = a.weight_decay {
        cfg.weight_decay = v;
    }
    if let Some(v) = a.schedule {
        cfg.schedule = match v {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Poly => Schedule::Poly,
            ScheduleArg::Cosine => Schedule::Cosine,
        };
    }
    if let Some(v) = a.warmup {
        cfg.warmup = v;
    }
    if let Some(v) = a.seed {
        cfg.seed = v;
    }
    if let Some(v) = a.crops_per_volume {
        cfg.crops_per_volume = v;
    }
    if let Some(v) = &a.augment {
        cfg.augment = v.clone();
    }
    if a.early_stopping.is_some() {
        cfg.early_stopping = a.early_stopping;
    }
    let device = repux_nn::device::resolve(&a.device.device)?;
    if let Some(p) = a.precision {
        cfg.precision = match p.resolve() {
            // On a GPU, auto means fp32: bf16 GEMMs are the CPU path's.
            _ if device.gpu && p == crate::args::PrecisionArg::Auto => repux_train::Precision::Fp32,
            repux_kernels::Precision::Fp32 => repux_train::Precision::Fp32,
            repux_kernels::Precision::Bf16 => repux_train::Precision::Bf16,
        };
    }
    if device.gpu && cfg.precision == repux_train::Precision::Bf16 {
        bail!(
            "bf16 (from --precision or the config) runs on the CPU's GEMMs; the GPU path \
             computes in fp32 (use --precision fp32, or --device cpu)"
        );
    }
    repux_nn::device::set_compute_device(&device);
    if lead {
        eprintln!("device: {}", device.description);
    }
    if cfg.precision == repux_train::Precision::Bf16 && !(a.resume || a.extend.is_some()) && lead {
        eprintln!(
            "precision: {}",
            repux_kernels::bf16::describe(repux_kernels::Precision::Bf16)
        );
    }
    if a.resume || a.extend.is_some() {
        report_ignored_by_resume(&a);
    }
    // A model file named in train.toml is relative to that file, as a recipe writes it.
    let file_model = file.model.map(|m| match &a.config {
        Some(cfg) if Path::new(&m).is_relative() && ModelConfig::preset(&m).is_none() => cfg
            .parent()
            .map(|d| d.join(&m).to_string_lossy().into_owned())
            .unwrap_or(m),
        _ => m,
    });
    let spec = a
        .model_preset
        .clone()
        .or(file_model)
        .unwrap_or_else(|| "small".into());
    let mut model = match &a.init_from {
        Some(f) if f.is_file() => ModelConfig::load(&spec).map_err(|e| anyhow!(e))?,
        // Fine-tuning keeps the architecture of the weights it starts from.
        Some(dir) => {
            let d = if dir.join("config.json").is_file() {
                dir.clone()
            } else {
                dir.join("checkpoint_final")
            };
            ModelConfig::load(&d.join("config.json").to_string_lossy()).map_err(|e| anyhow!(e))?
        }
        None => ModelConfig::load(&spec).map_err(|e| anyhow!(e))?,
    };
    if a.init_from.as_ref().is_some_and(|f| !f.is_file())
        && model.in_channels != plans.normalization.len()
    {
        bail!(
            "--init-from: the model takes {} input channels, the plans have {}",
            model.in_channels,
            plans.normalization.len()
        );
    }
    model.in_channels = plans.normalization.len();
    model.out_channels = plans.num_classes();
    let cache = a
        .cache
        .clone()
        .unwrap_or_else(|| a.dataset.join("preprocessed"));
    let results = preprocess_dataset(&ds, &plans, &cache, false, |_, _| {})?;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(id, o)| {
            if let Outcome::Failed(m) = o {
                Some(format!("{id}: {m}"))
            } else {
                None
            }
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "preprocessing failed for {} case(s):\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    let ids: Vec<String> = ds.training.iter().map(|c| c.id.clone()).collect();
    let (train_ids, val_ids) = if a.fold == "all" {
        (ids.clone(), ids.clone())
    } else {
        let f: usize = a
            .fold
            .parse()
            .map_err(|_| anyhow!("--fold {:?}: expected 0–4 or all", a.fold))?;
        let folds = splits(&ids, &cache.join("splits_final.json"))?;
        folds
            .get(f)
            .cloned()
            .ok_or_else(|| anyhow!("--fold {f}: splits_final.json has {} folds", folds.len()))?
    };
    let load = |ids: &[String]| {
        ids.iter()
            .map(|id| load_case(&cache, id))
            .collect::<Result<Vec<_>, _>>()
    };
    let (train_cases, val_cases) = (load(&train_ids)?, load(&val_ids)?);
    // SAFETY: installing a handler that only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    let resuming = a.resume || a.extend.is_some();
    let opts = RunOptions {
        resume: a.resume,
        extend: a.extend.unwrap_or(0),
        init_from: a.init_from.as_deref(),
        new_head: a.new_head,
        stop: Some(&STOP),
    };
    // Rank 0 alone reports progress.
    let bar = if lead {
        ProgressBar::new(cfg.iterations as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(ProgressStyle::with_template(
        "train {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
    )?);
    let hidden = bar.is_hidden();
    let mut first = true;
    let outcome = train(
        &model,
        &plans,
        Cases {
            train: train_cases,
            val: &val_cases,
        },
        &cfg,
        &a.out,
        &opts,
        |l| {
            if first {
                // A resumed or extended run knows its length and position only now.
                bar.set_length(l.planned as u64);
                if resuming {
                    bar.set_position(l.iteration as u64 - 1);
                    bar.reset_eta();
                }
                first = false;
            }
            let v = l
                .val_mean_dice
                .map(|d| format!(" val Dice {d:.3}"))
                .unwrap_or_default();
            bar.set_message(format!("loss {:.4} lr {:.2e}{v}", l.loss, l.lr));
            bar.inc(1);
            if let Some(d) = l.val_mean_dice {
                let msg = format!(
                    "iteration {}: loss {:.4}, validation mean Dice {d:.4} per class {:?}",
                    l.iteration,
                    l.loss,
                    l.val_dice
                        .as_deref()
                        .unwrap_or(&[])
                        .iter()
                        .map(|v| (v * 1000.0).round() / 1000.0)
                        .collect::<Vec<_>>()
                );
                if hidden {
                    eprintln!("{msg}");
                } else {
                    bar.println(msg);
                }
            }
        },
    )?;
    bar.finish_and_clear();
    if !lead {
        return Ok(match outcome.ending {
            Ending::Stopped => ExitCode::from(130),
            _ => ExitCode::SUCCESS,
        });
    }
    let best = outcome
        .best_val_dice
        .map(|d| format!(", best validation mean Dice {d:.4}"))
        .unwrap_or_default();
    match outcome.ending {
        Ending::Completed => println!("trained {} iterations on {} cases{best}; model in {}/checkpoint_final", outcome.iteration, train_ids.len(), a.out.display()),
        Ending::EarlyStopped => println!("stopped early at iteration {} (no validation improvement){best}; model in {}/checkpoint_final", outcome.iteration, a.out.display()),
        Ending::Stopped => {
            println!("stopped at iteration {}; state saved in {}/checkpoint_latest — continue with --resume", outcome.iteration, a.out.display());
            return Ok(ExitCode::from(130));
        }
    }
    Ok(ExitCode::SUCCESS)
}
