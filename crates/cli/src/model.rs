use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::{Tensor, TensorData};
use repux_nn::{cpu, load_into, load_model_dir, ModelConfig, Net};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a model directory (config.json, model.safetensors, plans.json) from a config and
    /// plans, with weights from a .pth/.safetensors (e.g. the authors' checkpoint) or freshly
    /// initialised (PyTorch's defaults) when --weights is absent. A weight file's depthwise
    /// kernels are taken as the kernels the network convolves with (the authors' deploy
    /// network); under BFR the stored W becomes W_file / δ.
    Import {
        #[arg(long)]
        model_config: String,
        #[arg(long)]
        plans: PathBuf,
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a model's weights for PyTorch users: the deploy form (BFR's δ applied, BatchNorms
    /// kept, SR branches folded) in the authors' key layout (MONAI's for SwinUNETR), which their
    /// evaluation network (`deploy=True`) loads with `load_state_dict`.
    Export {
        /// Model directory, or a training folder (its checkpoint_final, else checkpoint_best).
        #[arg(short, long)]
        model: PathBuf,
        /// `pth` (what torch.save writes) or `safetensors`.
        #[arg(long, value_enum)]
        format: ExportFormatArg,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Layers (every named tensor with its shape) and the parameter count as PyTorch counts it.
    Summary {
        /// Model config JSON file, or a preset: paper, paper-uxnet, small, tiny, micro, swinunetr,
        /// swinunetr-small, swinunetr-tiny.
        #[arg(long)]
        model_config: String,
        /// One JSON object (keys `parameters`, `buffers`, `tensors`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormatArg {
    Pth,
    Safetensors,
}

pub fn run(c: Command) -> Result<ExitCode> {
    let (model_config, json) = match c {
        Command::Summary { model_config, json } => (model_config, json),
        Command::Import {
            model_config,
            plans,
            weights,
            out,
        } => return import(&model_config, &plans, weights.as_deref(), &out),
        Command::Export {
            model,
            format,
            output,
        } => return export(&model, format, &output),
    };
    let cfg = ModelConfig::load(&model_config).map_err(|e| anyhow!(e))?;
    let s = repux_nn::summary::summary(&Net::new(&cfg, &cpu()))?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:?} (kernel {}, reparam {:?}), {} → {} channels, features {:?}, hidden {}",
        cfg.arch,
        cfg.kernel(),
        cfg.reparam(),
        cfg.in_channels,
        cfg.out_channels,
        cfg.feature_size,
        cfg.hidden_size
    );
    println!("{:<58} {:<22} {:>12}", "tensor", "shape", "elements");
    for t in &s.tensors {
        println!(
            "{:<58} {:<22} {:>12}{}",
            t.name,
            format!("{:?}", t.shape),
            t.numel,
            if t.parameter { "" } else { "  (buffer)" }
        );
    }
    println!("parameters: {}   buffers: {}", s.parameters, s.buffers);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ForwardArgs {
    /// Model config JSON file or preset name (ignored when --weights is a model directory).
    #[arg(long)]
    pub model_config: Option<String>,
    /// Weights: the authors' `.pth`, a `.safetensors` (their kernels are the ones convolved with,
    /// as in the authors' deploy network), or a repux model directory.
    #[arg(long)]
    pub weights: PathBuf,
    /// float32 `.npy` of shape N×C×D×H×W (every side a multiple of 16).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the float32 logits `.npy` (N×classes×D×H×W).
    #[arg(long)]
    pub output: PathBuf,
    /// GEMM precision: auto (bf16 where this build has a bf16 GEMM faster than fp32 on this
    /// CPU, else fp32), fp32, or bf16 (bf16 operands, fp32 sums, as PyTorch's CPU autocast).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: crate::args::PrecisionArg,
    #[command(flatten)]
    pub device: crate::args::DeviceArg,
}

/// Loads a network from a model directory or from a config + weights file.
pub fn load_net(
    weights: &Path,
    model_config: Option<&str>,
    device: &burn::tensor::Device,
) -> Result<Net> {
    if weights.is_dir() {
        return Ok(load_model_dir(weights, device)?);
    }
    let spec = model_config.ok_or_else(|| {
        anyhow!(
            "--model-config is needed with a weight file ({})",
            weights.display()
        )
    })?;
    let cfg = ModelConfig::load(spec).map_err(|e| anyhow!(e))?;
    let mut net = Net::new(&cfg, device);
    load_into(&mut net, weights, device)?;
    Ok(net)
}

pub fn forward(a: ForwardArgs) -> Result<ExitCode> {
    let (device, _) = crate::args::apply_device(&a.device.device, a.precision)?;
    let net = load_net(&a.weights, a.model_config.as_deref(), &device.device)?;
    let x = repux_volume::npy::read(&a.input)?;
    let dims: [usize; 5] = x.shape.clone().try_into().map_err(|_| {
        anyhow!(
            "{}: array has shape {:?}; expected N×C×D×H×W",
            a.input.display(),
            x.shape
        )
    })?;
    if x.dtype != repux_volume::npy::NpyType::F32 {
        bail!(
            "{}: array is {:?}; expected float32",
            a.input.display(),
            x.dtype
        );
    }
    if x.data.iter().any(|v| !v.is_finite()) {
        bail!("{}: input holds NaN or infinite values", a.input.display());
    }
    net.check_input(dims)
        .map_err(|e| anyhow!("{}: {e}", a.input.display()))?;
    // Deploy mode: δ and BatchNorm folded; a non-autodiff device runs BatchNorm on running stats.
    let deployed = net.merge();
    let y = deployed.forward(Tensor::from_data(
        TensorData::new(x.data, dims),
        &device.device,
    ));
    let shape = y.dims().to_vec();
    let values = repux_nn::values(y, "logits")?;
    repux_volume::npy::write(&a.output, &shape, &values, repux_volume::npy::NpyType::F32)
        .with_context(|| format!("writing {}", a.output.display()))?;
    println!("logits {:?} written to {}", shape, a.output.display());
    Ok(ExitCode::SUCCESS)
}

fn export(model: &Path, format: ExportFormatArg, output: &Path) -> Result<ExitCode> {
    let dirs = repux_infer::resolve_models(&[model.to_path_buf()], repux_infer::Checkpoint::Auto)?;
    let [dir] = dirs.as_slice() else {
        bail!(
            "{}: holds {} models; export one model directory at a time",
            model.display(),
            dirs.len()
        );
    };
    let net = load_model_dir(dir, &cpu())?;
    let fmt = match format {
        ExportFormatArg::Pth => repux_nn::ExportFormat::Pth,
        ExportFormatArg::Safetensors => repux_nn::ExportFormat::Safetensors,
    };
    repux_nn::export(&net, output, fmt)?;
    let cfg = net.config();
    println!(
        "{} written from {} ({:?}, deploy form: kernels as convolved, BatchNorms kept)",
        output.display(),
        dir.display(),
        cfg.arch
    );
    Ok(ExitCode::SUCCESS)
}

fn import(
    model_config: &str,
    plans_path: &Path,
    weights: Option<&Path>,
    out: &Path,
) -> Result<ExitCode> {
    let cfg = ModelConfig::load(model_config).map_err(|e| anyhow!(e))?;
    let plans = repux_prep::Plans::load(plans_path)?;
    if plans.num_classes() != cfg.out_channels || plans.normalization.len() != cfg.in_channels {
        bail!(
            "{}: plans have {} channels and {} classes, the model config {} and {}",
            plans_path.display(),
            plans.normalization.len(),
            plans.num_classes(),
            cfg.in_channels,
            cfg.out_channels
        );
    }
    let mut net = Net::new(&cfg, &cpu());
    if let Some(w) = weights {
        load_into(&mut net, w, &cpu())?;
    }
    repux_nn::save_model_dir(&net, out)?;
    plans.save(&out.join("plans.json"))?;
    println!(
        "model directory {} written ({}; weights {})",
        out.display(),
        model_config,
        weights
            .map(|w| w.display().to_string())
            .unwrap_or_else(|| "freshly initialised".into())
    );
    Ok(ExitCode::SUCCESS)
}
