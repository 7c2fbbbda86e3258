use crate::args::{seconds, triple, PrecisionArg};
use anyhow::Result;
use repux_prep::resample::{resample, shape_for_spacing, Interp};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Time HD95 + NSD of two large masks (two overlapping ellipsoids, median of runs).
    Surface {
        #[arg(long, value_parser = triple::<usize>, default_value = "512,512,300")]
        shape: [usize; 3],
        #[arg(long, value_parser = triple::<f64>, default_value = "0.8,0.8,1.5")]
        spacing: [f64; 3],
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// Time repux's kernels against burn's generic ops on the networks' shapes, forward and
    /// forward+backward, in the same run: the depthwise conv (burn: conv3d, groups = C), the
    /// dense and transposed convs, SwinUNETR's attention softmax, and GELU.
    Kernels {
        /// One JSON array of records (op, channels, size, kernel, pass, ours_s, burn_s, gflops;
        /// the softmax's also heads, window, batch and masked, without kernel and gflops; GELU's
        /// also batch, without kernel and gflops).
        #[arg(long)]
        json: bool,
        /// Runs per measurement (median).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Skip burn's op where a probe estimates it above this many seconds.
        #[arg(long, default_value_t = 60.0)]
        burn_limit_s: f64,
        /// GEMM precision of repux's dense convs: fp32, bf16 or auto (burn's ops and the
        /// depthwise FFTs stay fp32); the records say which ran ("precision", "isa").
        #[arg(long, value_enum, default_value = "fp32")]
        precision: PrecisionArg,
        #[command(flatten)]
        device: crate::args::DeviceArg,
    },
    /// Time a whole network — an eval forward and a training step (forward, DiceCE, backward,
    /// AdamW) — with repux's kernels and with burn's generic conv ops, in the same run.
    Model {
        /// Model preset (paper, paper-uxnet, small, tiny, micro, swinunetr, swinunetr-small,
        /// swinunetr-tiny) or config JSON (5 classes, 1 channel).
        #[arg(long, alias = "preset", default_value = "tiny")]
        model_config: String,
        /// Cubic patch side (e.g. 96 for the paper's 96³); overrides --patch.
        #[arg(long)]
        size: Option<usize>,
        /// Patch size.
        #[arg(long, value_parser = triple::<usize>, default_value = "48,48,32")]
        patch: [usize; 3],
        /// Crops per step (the training batch).
        #[arg(long, default_value_t = 2)]
        batch: usize,
        /// Runs per measurement (median), after one warm-up (a warm-up above --warm-only-s is the
        /// measurement).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Seconds above which the warm-up run is itself the measurement (saves a paper-size
        /// training step; that first run also pays for first touching its memory, which later
        /// steps of a training run reuse). Same flag in tools/torch_bench.py.
        #[arg(long, default_value_t = 30.0, value_parser = seconds)]
        warm_only_s: f64,
        /// Only repux's kernels (skip burn's generic ops).
        #[arg(long)]
        no_burn: bool,
        /// Only the eval forward (no training step; its record is left out).
        #[arg(long)]
        forward_only: bool,
        /// Floats of one Winograd block's transformed input (tuning; default: 48 tiles, 216 ·
        /// channels · 48 floats).
        #[arg(long)]
        winograd_block: Option<usize>,
        /// GEMM precision of repux's kernels: auto, fp32 or bf16 (burn's ops stay fp32).
        #[arg(long, value_enum, default_value = "auto")]
        precision: PrecisionArg,
        /// One JSON array of records instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        device: crate::args::DeviceArg,
    },
    /// Time a whole-volume prediction as `repux predict` runs it after preprocessing: Gaussian
    /// sliding window (no mirroring), softmax and arg-max over a synthetic volume already at the
    /// plans' spacing, through a freshly initialised deploy-form network. Reports seconds, the
    /// process's peak RSS and the windows run; tools/monai_predict_bench.py times MONAI's
    /// `sliding_window_inference` on the same volume, network and settings.
    Predict {
        /// Model preset or config JSON (1 channel, --classes classes).
        #[arg(long, alias = "preset", default_value = "paper")]
        model_config: String,
        /// Volume shape (the synthetic image tools/monai_predict_bench.py builds too).
        #[arg(long, value_parser = triple::<usize>, default_value = "192,192,128")]
        shape: [usize; 3],
        /// Sliding-window patch.
        #[arg(long, value_parser = triple::<usize>, default_value = "96,96,96")]
        patch: [usize; 3],
        /// Tile overlap.
        #[arg(long, default_value_t = 0.5)]
        overlap: f64,
        /// Output classes (BTCV/AMOS-style abdominal labels: 14 with background).
        #[arg(long, default_value_t = 14)]
        classes: usize,
        /// GEMM precision: auto, fp32 or bf16.
        #[arg(long, value_enum, default_value = "auto")]
        precision: PrecisionArg,
        /// One JSON record: {"seconds", "peak_rss_bytes", "precision", "isa", "windows", …}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        device: crate::args::DeviceArg,
    },
    /// Time the gradient all-reduce of one training step (the network's parameters as f32, in
    /// the trainer's buckets) over the ranks of an MPI launch: `mpirun -np N repux bench
    /// all-reduce` (the `mpi` build). Prints the median time and the ring all-reduce's bus
    /// bandwidth, 2(N−1)/N × bytes / time.
    AllReduce {
        /// Model preset or config JSON whose parameter count is reduced (5 classes, 1 channel).
        #[arg(long, alias = "preset", default_value = "paper")]
        model_config: String,
        /// Timed all-reduces (median), after one warm-up.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// One JSON record instead of a line.
        #[arg(long)]
        json: bool,
    },
    /// Time resampling a CT-sized volume to a target spacing (cubic and linear), median of runs.
    Resample {
        /// Input shape.
        #[arg(long, value_parser = triple::<usize>, default_value = "512,512,300")]
        shape: [usize; 3],
        /// Input spacing in mm.
        #[arg(long, value_parser = triple::<f64>, default_value = "0.78,0.78,1.25")]
        spacing: [f64; 3],
        /// Target spacing in mm.
        #[arg(long, value_parser = triple::<f64>, default_value = "1.5,1.5,2.0")]
        target: [f64; 3],
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// One JSON array of records instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// How this process's dense-conv GEMMs run: the bf16 level under bf16, else the fp32 GEMM's
/// vector ISA.
fn gemm_isa() -> &'static str {
    match repux_kernels::bf16::precision() {
        repux_kernels::Precision::Bf16 => repux_kernels::bf16::bf16_level().name(),
        repux_kernels::Precision::Fp32 => repux_kernels::fp32_isa_name(),
    }
}

/// Adds `"precision"` and `"isa"` to every kernel record, so that CPU and GPU records keep the
/// same keys (the GPU ones add `"device"`).
fn tag_precision(records: &mut [serde_json::Value], precision: &str, isa: &str) {
    for r in records {
        r["precision"] = precision.into();
        r["isa"] = isa.into();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(c: Command) -> Result<ExitCode> {
    match c {
        Command::Kernels {
            json,
            repeats,
            burn_limit_s,
            precision,
            device,
        } => {
            let (d, _) = crate::args::apply_device(&device.device, precision)?;
            if d.gpu {
                gpu_kernels(&d, json, repeats, burn_limit_s)
            } else {
                kernels(json, repeats, burn_limit_s)
            }
        }
        Command::Surface {
            shape,
            spacing,
            repeats,
        } => surface(shape, spacing, repeats),
        Command::Resample {
            shape,
            spacing,
            target,
            repeats,
            json,
        } => bench_resample(shape, spacing, target, repeats, json),
        Command::Predict {
            model_config,
            shape,
            patch,
            overlap,
            classes,
            precision,
            json,
            device,
        } => {
            let (_, precision) = crate::args::apply_device(&device.device, precision)?;
            bench_predict(
                &model_config,
                shape,
                patch,
                overlap,
                classes,
                precision,
                json,
            )
        }
        Command::AllReduce {
            model_config,
            repeats,
            json,
        } => all_reduce(&model_config, repeats, json),
        Command::Model {
            model_config,
            size,
            patch,
            batch,
            repeats,
            warm_only_s,
            no_burn,
            forward_only,
            winograd_block,
            precision,
            json,
            device,
        } => {
            repux_kernels::winograd::set_block_budget(winograd_block);
            crate::args::apply_device(&device.device, precision)?;
            model(
                &model_config,
                size.map(|n| [n; 3]).unwrap_or(patch),
                batch,
                Timing {
                    repeats,
                    warm_only_s,
                },
                no_burn,
                !forward_only,
                json,
            )
        }
    }
}

/// The process's peak resident set so far, in MiB (getrusage; monotonic, so read it right after
/// the pass it should describe).
fn peak_rss_mib() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return f64::NAN;
    }
    u.ru_maxrss as f64 / 1024.0
}

/// Seconds of (eval forward, training step) for one network with the current conv ops on the
/// installed device, the process's peak RSS (MiB) after each, on a GPU the device memory its
/// allocator reserved after each (MiB; the pool keeps what it reserved, so this is the pass's peak
/// reservation), and whether each time is of the first (warm-up) run.
fn model_times(
    cfg: &repux_nn::ModelConfig,
    patch: [usize; 3],
    batch: usize,
    timing: Timing,
    train: bool,
) -> ([f64; 2], [f64; 2], [Option<f64>; 2], [bool; 2]) {
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, Tensor};
    let [d, h, w] = patch;
    let plain = repux_nn::compute_device();
    let reserved =
        || repux_nn::device::memory_usage(&plain).map(|(_, r)| r as f64 / (1024.0 * 1024.0));
    let net = repux_nn::Net::seeded(cfg, &plain, 0);
    let x = Tensor::<5>::random(
        [batch, cfg.in_channels, d, h, w],
        Distribution::Normal(0.0, 1.0),
        &plain,
    );
    let fwd = || {
        let _ = net.forward(x.clone()).into_data();
    };
    let (forward, first_forward) = time_warm(timing, fwd);
    let rss_forward = peak_rss_mib();
    let dev_forward = reserved();
    drop(net);
    if !train {
        return (
            [forward, f64::NAN],
            [rss_forward, f64::NAN],
            [dev_forward, None],
            [first_forward, false],
        );
    }
    let dev = plain.clone().autodiff();
    let mut tnet = repux_nn::Net::seeded(cfg, &dev, 0);
    let mut opt = repux_train::optim::AdamW::new(0.01);
    let xa = Tensor::<5>::random(
        [batch, cfg.in_channels, d, h, w],
        Distribution::Normal(0.0, 1.0),
        &dev,
    );
    let labels: Vec<u16> = (0..batch * d * h * w)
        .map(|i| ((i / 97) % cfg.out_channels) as u16)
        .collect();
    let y = repux_train::loss::one_hot(
        &labels,
        cfg.out_channels,
        [batch, cfg.out_channels, d, h, w],
        &dev,
    );
    let mut step = || {
        let (loss, _, _) = repux_train::loss::dice_ce(tnet.forward(xa.clone()), y.clone(), None);
        let grads = GradientsParams::from_grads(loss.backward(), &tnet);
        // A fresh optimizer on the network it was made for: a failure here is a bug.
        if let Err(e) = opt.step(&mut tnet, grads, 1e-4) {
            panic!("benchmark training step: {e}");
        }
    };
    let (train, first_train) = time_warm(timing, &mut step);
    (
        [forward, train],
        [rss_forward, peak_rss_mib()],
        [dev_forward, reserved()],
        [first_forward, first_train],
    )
}

fn model(
    preset: &str,
    patch: [usize; 3],
    batch: usize,
    timing: Timing,
    no_burn: bool,
    train: bool,
    json: bool,
) -> Result<ExitCode> {
    let cfg = repux_nn::ModelConfig::load(preset).map_err(|e| anyhow::anyhow!(e))?;
    let cfg = repux_nn::ModelConfig {
        in_channels: 1,
        out_channels: 5,
        ..cfg
    };
    repux_nn::ops::use_burn_ops(false);
    let ([f_ours, t_ours], [rss_f, rss_t], [dev_f, dev_t], [first_f, first_t]) =
        model_times(&cfg, patch, batch, timing, train);
    let [f_burn, t_burn] = if no_burn {
        [f64::NAN, f64::NAN]
    } else {
        repux_nn::ops::use_burn_ops(true);
        let (r, _, _, _) = model_times(&cfg, patch, batch, timing, train);
        repux_nn::ops::use_burn_ops(false);
        r
    };
    let threads = rayon::current_num_threads();
    if json {
        let device = repux_nn::device::installed().description;
        // `first_run`: repux's time is of the process's first run of the pass (the warm-up took
        // longer than --warm-only-s), which also pays for first touching its memory.
        let rec = |pass: &str, ours: f64, burn: f64, rss: f64, dev: Option<f64>, first: bool| serde_json::json!({"preset": preset, "patch": patch, "batch": batch, "pass": pass, "ours_s": ours, "burn_s": if burn.is_finite() { serde_json::json!(burn) } else { serde_json::Value::Null }, "peak_rss_mib": rss, "device_reserved_mib": dev, "device": device, "threads": threads, "precision": repux_kernels::bf16::precision().name(), "isa": gemm_isa(), "first_run": first});
        let mut recs = vec![rec("forward", f_ours, f_burn, rss_f, dev_f, first_f)];
        if train {
            recs.push(rec("train_step", t_ours, t_burn, rss_t, dev_t, first_t));
        }
        println!("{}", serde_json::Value::Array(recs));
    } else {
        println!(
            "model {preset}, batch {batch} × {patch:?}, {}, {threads} threads, median of {} (a warm-up above {} s alone), {} GEMMs ({})",
            repux_nn::device::installed().description,
            timing.repeats,
            timing.warm_only_s,
            repux_kernels::bf16::precision().name(),
            gemm_isa()
        );
        println!(
            "{:<12} {:>12} {:>12} {:>8} {:>16}",
            "pass", "repux (s)", "burn ops (s)", "ratio", "repux peak RSS"
        );
        for (name, o, b, rss) in [
            ("forward", f_ours, f_burn, rss_f),
            ("train step", t_ours, t_burn, rss_t),
        ]
        .into_iter()
        .take(if train { 2 } else { 1 })
        {
            println!(
                "{name:<12} {o:>12.3} {b:>12.3} {:>7.1}× {:>12.0} MiB",
                b / o,
                rss
            );
        }
        for (name, dev) in [("forward", dev_f), ("train step", dev_t)] {
            if let Some(mib) = dev {
                println!("{name}: device memory reserved {mib:.0} MiB");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The synthetic volume of `bench predict` (and tools/monai_predict_bench.py, which must build
/// the same): smooth structure in roughly the [-1.5, 1.5] range of a normalised CT, C order.
fn synthetic_volume([d, h, w]: [usize; 3]) -> Vec<f32> {
    let mut v = Vec::with_capacity(d * h * w);
    for i in 0..d {
        for j in 0..h {
            for k in 0..w {
                let (i, j, k) = (i as f64, j as f64, k as f64);
                v.push(((0.05 * i).sin() * (0.07 * j).cos() + 0.5 * (0.11 * k).sin()) as f32);
            }
        }
    }
    v
}

fn bench_predict(
    preset: &str,
    shape: [usize; 3],
    patch: [usize; 3],
    overlap: f64,
    classes: usize,
    precision: repux_kernels::Precision,
    json: bool,
) -> Result<ExitCode> {
    use burn::tensor::{Tensor, TensorData};
    use repux_infer::window::{sliding_window, softmax, tile_starts, WindowConfig};
    if !(0.0..1.0).contains(&overlap) {
        anyhow::bail!("--overlap {overlap} must be in [0, 1)");
    }
    if classes < 2 {
        anyhow::bail!("--classes {classes}: a segmentation needs at least 2");
    }
    let cfg = repux_nn::ModelConfig::load(preset).map_err(|e| anyhow::anyhow!(e))?;
    let cfg = repux_nn::ModelConfig {
        in_channels: 1,
        out_channels: classes,
        ..cfg
    };
    let net = repux_nn::Net::seeded(&cfg, &repux_nn::compute_device(), 0).merge();
    net.check_input([1, 1, patch[0], patch[1], patch[2]])
        .map_err(|e| anyhow::anyhow!("--patch {patch:?}: {e}"))?;
    let image = synthetic_volume(shape);
    let windows: usize = (0..3)
        .map(|a| tile_starts(shape[a], patch[a], overlap).len())
        .product();
    let window = WindowConfig {
        patch,
        overlap,
        mirror: false,
        tile_batch: 1,
    };
    let t = std::time::Instant::now();
    let mut probs = sliding_window(
        &image,
        1,
        shape,
        classes,
        &window,
        |batch: &[f32], n: usize| -> Result<Vec<f32>> {
            let x = Tensor::<5>::from_data(
                TensorData::new(batch.to_vec(), [n, 1, patch[0], patch[1], patch[2]]),
                &repux_nn::compute_device(),
            );
            repux_nn::values(net.forward(x), "network output").map_err(|e| anyhow::anyhow!(e))
        },
        |_, _| {},
    )?;
    softmax(&mut probs, classes);
    let voxels: usize = shape.iter().product();
    let labels: Vec<u8> = (0..voxels)
        .map(|v| {
            (0..classes)
                .max_by(|&a, &b| probs[a * voxels + v].total_cmp(&probs[b * voxels + v]))
                .unwrap_or(0) as u8
        })
        .collect();
    let seconds = t.elapsed().as_secs_f64();
    let peak_rss_bytes = (peak_rss_mib() * 1024.0 * 1024.0) as u64;
    // Keep the result alive until timed (and say something about it).
    let foreground = labels.iter().filter(|&&l| l > 0).count();
    let threads = rayon::current_num_threads();
    if json {
        println!(
            "{}",
            serde_json::json!({"seconds": seconds, "peak_rss_bytes": peak_rss_bytes, "precision": precision.name(), "isa": gemm_isa(), "windows": windows, "preset": preset, "shape": shape, "patch": patch, "overlap": overlap, "classes": classes, "threads": threads, "foreground_voxels": foreground})
        );
    } else {
        println!(
            "predict {preset}, {shape:?} in {windows} windows of {patch:?} (overlap {overlap}), {classes} classes, {threads} threads, {} GEMMs ({})",
            precision.name(),
            gemm_isa()
        );
        println!(
            "{seconds:.1} s, peak RSS {:.2} GiB",
            peak_rss_bytes as f64 / (1u64 << 30) as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The trainer's gradient all-reduce on the MPI group this process was launched into.
#[cfg(feature = "mpi")]
fn all_reduce(preset: &str, repeats: usize, json: bool) -> Result<ExitCode> {
    use repux_nn::collective::Collective;
    let cfg = repux_nn::ModelConfig::load(preset).map_err(|e| anyhow::anyhow!(e))?;
    let cfg = repux_nn::ModelConfig {
        in_channels: 1,
        out_channels: 5,
        ..cfg
    };
    let values =
        repux_nn::summary::summary(&repux_nn::Net::new(&cfg, &repux_nn::cpu()))?.parameters;
    let group = repux_train::mpi::MpiGroup::init(std::time::Duration::from_secs(600))
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut flat: Vec<f32> = (0..values).map(|i| (i % 1000) as f32 * 1e-3).collect();
    let mut run = || {
        // Start together, so that a rank's time is the all-reduce's and not its wait for a
        // late starter.
        let mut sync = [0.0f32];
        group.all_reduce_sum(&mut sync);
        let t = Instant::now();
        repux_train::optim::all_reduce_buckets(&group, &mut flat);
        t.elapsed().as_secs_f64()
    };
    run();
    let seconds = median((0..repeats.max(1)).map(|_| run()).collect());
    let n = group.size();
    let bytes = values as f64 * 4.0;
    let bus = 2.0 * (n as f64 - 1.0) / n as f64 * bytes / seconds;
    if group.rank() == 0 {
        if json {
            println!(
                "{}",
                serde_json::json!({"preset": preset, "values": values, "bytes": bytes, "ranks": n,
                    "bucket": repux_train::optim::BUCKET, "seconds": seconds, "bus_gb_s": bus * 1e-9})
            );
        } else {
            println!(
                "all-reduce of {values} f32 ({:.1} MB, {preset}) over {n} ranks in buckets of {}: {seconds:.4} s (median of {repeats}), bus bandwidth {:.2} GB/s",
                bytes * 1e-6,
                repux_train::optim::BUCKET,
                bus * 1e-9
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "mpi"))]
fn all_reduce(_: &str, _: usize, _: bool) -> Result<ExitCode> {
    anyhow::bail!("`repux bench all-reduce` needs the MPI build: cargo build --release --features mpi, then mpirun -np N target/release/repux bench all-reduce")
}

/// How a pass of `bench model` is timed: the median of `repeats` runs after one warm-up, or the
/// warm-up alone where it took longer than `warm_only_s` (the same rule in tools/torch_bench.py).
#[derive(Clone, Copy)]
struct Timing {
    repeats: usize,
    warm_only_s: f64,
}

/// One warm-up run, then the median of `repeats` runs — or the warm-up's time where it took
/// longer than `warm_only_s` (a paper-size training step, by default); with whether the time is
/// the warm-up's.
fn time_warm(timing: Timing, mut f: impl FnMut()) -> (f64, bool) {
    let t = Instant::now();
    f();
    let warm = t.elapsed().as_secs_f64();
    if warm > timing.warm_only_s {
        return (warm, true);
    }
    (time_median(timing.repeats, f), false)
}

fn time_median(repeats: usize, mut f: impl FnMut()) -> f64 {
    median(
        (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// A depthwise conv's random input and weight and zero bias of shape `s` on `device`, tracked
/// by autodiff when `backward`.
fn depthwise_inputs(
    s: &repux_kernels::DwShape,
    device: &burn::tensor::Device,
    backward: bool,
) -> (
    burn::tensor::Tensor<5>,
    burn::tensor::Tensor<5>,
    burn::tensor::Tensor<1>,
) {
    use burn::tensor::{Distribution, Tensor};
    let device = if backward {
        device.clone().autodiff()
    } else {
        device.clone()
    };
    let x = Tensor::<5>::random(
        [s.n, s.c, s.d, s.h, s.w],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let w = Tensor::<5>::random(
        [s.c, 1, s.k, s.k, s.k],
        Distribution::Normal(0.0, 0.1),
        &device,
    );
    let b = Tensor::<1>::zeros([s.c], &device);
    let (x, w, b) = if backward {
        (x.require_grad(), w.require_grad(), b.require_grad())
    } else {
        (x, w, b)
    };
    (x, w, b)
}

/// burn's generic depthwise conv3d on Flex: forward, or forward + backward through autodiff.
fn burn_depthwise(s: &repux_kernels::DwShape, backward: bool) -> f64 {
    use burn::tensor::module::conv3d;
    use burn::tensor::ops::ConvOptions;
    let (x, w, b) = depthwise_inputs(s, &repux_nn::cpu(), backward);
    let t = Instant::now();
    let y = conv3d(
        x,
        w,
        Some(b),
        ConvOptions::new([1, 1, 1], [s.k / 2; 3], [1, 1, 1], s.c),
    );
    if backward {
        std::hint::black_box(y.sum().backward());
    } else {
        std::hint::black_box(y.into_data());
    }
    t.elapsed().as_secs_f64()
}

fn kernels(json: bool, repeats: usize, burn_limit_s: f64) -> Result<ExitCode> {
    use repux_kernels::depthwise::{backward, backward_saved, forward, forward_saving, DwAlgo};
    use repux_kernels::DwShape;
    let mut records = Vec::new();
    let mut notes = Vec::new();
    for k in [21usize, 7] {
        // burn's throughput on a small probe of this kernel size, to estimate the big shapes.
        let probe = DwShape {
            n: 1,
            c: 2,
            d: 12,
            h: 12,
            w: 12,
            k,
        };
        let macs = |s: &DwShape| (s.n * s.c * s.spatial() * s.k.pow(3)) as f64;
        let rate_f = macs(&probe) / burn_depthwise(&probe, false);
        let rate_fb = macs(&probe) / burn_depthwise(&probe, true);
        for (c, size) in [(48usize, 48usize), (96, 24), (192, 12), (384, 6)] {
            let s = DwShape {
                n: 1,
                c,
                d: size,
                h: size,
                w: size,
                k,
            };
            let x: Vec<f32> = (0..s.input_len())
                .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                .collect();
            let w: Vec<f32> = (0..s.weight_len())
                .map(|i| ((i % 13) as f32 - 6.0) / 100.0)
                .collect();
            let b = vec![0.1f32; c];
            for (pass, fb) in [("forward", false), ("forward_backward", true)] {
                let ours = time_median(repeats, || {
                    if fb {
                        // As a training step runs it: the FFT forward keeps its spectra for the
                        // backward.
                        let (y, saved) = forward_saving(&s, &x, &w, Some(&b), DwAlgo::Auto);
                        std::hint::black_box(match &saved {
                            Some(saved) => backward_saved(saved, &y),
                            None => backward(&s, &x, &w, &y, DwAlgo::Auto),
                        });
                    } else {
                        std::hint::black_box(forward(&s, &x, &w, Some(&b), DwAlgo::Auto));
                    }
                });
                let est = macs(&s) / if fb { rate_fb } else { rate_f };
                let burn_s = if est > burn_limit_s {
                    notes.push(format!("depthwise k{k} {c} ch·{size}³ {pass}: burn skipped (estimated {est:.0} s from a probe)"));
                    None
                } else {
                    Some(time_median(if est > 5.0 { 1 } else { repeats }, || {
                        burn_depthwise(&s, fb);
                    }))
                };
                // Direct-convolution flop count (forward: 2·MACs; with backward: 3× that).
                let flops = 2.0 * macs(&s) * if fb { 3.0 } else { 1.0 };
                records.push(serde_json::json!({"op": "depthwise", "channels": c, "size": [size, size, size], "kernel": k, "pass": pass, "ours_s": ours, "burn_s": burn_s, "gflops": flops / ours / 1e9}));
            }
        }
    }
    dense_records(repeats, burn_limit_s, &mut records, &mut notes);
    records.extend(window_softmax_records(repeats)?);
    records.extend(gelu_records(repeats)?);
    tag_precision(
        &mut records,
        repux_kernels::bf16::precision().name(),
        gemm_isa(),
    );
    if json {
        println!("{}", serde_json::to_string(&records)?);
        return Ok(ExitCode::SUCCESS);
    }
    let peak = repux_kernels::dense::gemm_gflops(1536, 3);
    println!(
        "repux kernels vs burn 0.22.1 generic conv3d / conv_transpose3d (Flex), {} threads, median of {repeats}, {} dense GEMMs ({})",
        rayon_threads(),
        repux_kernels::bf16::precision().name(),
        gemm_isa()
    );
    println!(
        "{:<15} {:<6} {:>8} {:>6} {:<17} {:>10} {:>10} {:>9} {:>9}",
        "op", "kernel", "channels", "size", "pass", "ours (s)", "burn (s)", "ratio", "GFLOP/s"
    );
    for r in &records {
        let ours = r["ours_s"].as_f64().unwrap_or(f64::NAN);
        let burn = r["burn_s"].as_f64();
        let op = match (
            r["op"].as_str().unwrap_or(""),
            r["out_channels"].as_u64(),
            r["stride"].as_u64(),
        ) {
            ("depthwise", _, _) => "depthwise".to_string(),
            (op, Some(o), Some(st)) => format!("{op}→{o} s{st}"),
            (op, Some(o), None) => format!("{op}→{o}"),
            (op, _, _) => op.to_string(),
        };
        println!(
            "{:<15} {:<6} {:>8} {:>5}³ {:<17} {:>10.4} {:>10} {:>9} {:>9}",
            op,
            r["kernel"]
                .as_u64()
                .map(|k| k.to_string())
                .unwrap_or_else(|| "-".into()),
            r["channels"].as_u64().unwrap_or(0),
            r["size"][0].as_u64().unwrap_or(0),
            r["pass"].as_str().unwrap_or(""),
            ours,
            burn.map(|b| format!("{b:.3}"))
                .unwrap_or_else(|| "skipped".into()),
            burn.map(|b| format!("{:.0}×", b / ours))
                .unwrap_or_else(|| "-".into()),
            r["gflops"]
                .as_f64()
                .map(|g| format!("{g:.1}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    for n in &notes {
        println!("note: {n}");
    }
    println!(
        "note: fp32 GEMM peak through the same GEMM path (1536³, median of 3): {peak:.1} GFLOP/s"
    );
    Ok(ExitCode::SUCCESS)
}

/// One depthwise conv on the installed device through `repux_nn::ops` (repux's kernels, or
/// burn's generic conv3d with `use_burn_ops`), forward or forward + backward, in seconds.
fn device_depthwise(s: &repux_kernels::DwShape, backward: bool) -> Result<f64> {
    let (x, w, b) = depthwise_inputs(s, &repux_nn::compute_device(), backward);
    time_on_device(
        x,
        backward,
        |x| repux_nn::ops::depthwise_conv3d(x, w, Some(b)),
        &format!("depthwise k{} {} ch·{}³", s.k, s.c, s.d),
    )
}

/// One InstanceNorm + LeakyReLU (slope 0.01) of `[1, c, size³]` on the installed device through
/// `repux_nn::ops` (repux's fused kernels, or burn's composition with `use_burn_ops`), forward or
/// forward + backward, in seconds.
fn device_norm(c: usize, size: usize, backward: bool) -> Result<f64> {
    use burn::tensor::{Distribution, Tensor};
    let plain = repux_nn::compute_device();
    let device = if backward { plain.autodiff() } else { plain };
    let x = Tensor::<5>::random(
        [1, c, size, size, size],
        Distribution::Normal(0.5, 2.0),
        &device,
    );
    let x = if backward { x.require_grad() } else { x };
    time_on_device(
        x,
        backward,
        |x| repux_nn::ops::instance_norm_act(x, 1e-5, 0.01),
        &format!("instance norm {c} ch·{size}³"),
    )
}

/// One GELU of the paper network's first-stage activation, `[2, 48, 48³]` (a 2 × 96³ step),
/// on the installed device through `repux_nn::ops::gelu` (repux's pass, or burn's `gelu` with
/// `use_burn_ops`), forward or forward + backward, in seconds.
fn device_gelu(backward: bool) -> Result<f64> {
    use burn::tensor::{Distribution, Tensor};
    let plain = repux_nn::compute_device();
    let device = if backward { plain.autodiff() } else { plain };
    let x = Tensor::<5>::random([2, 48, 48, 48, 48], Distribution::Normal(0.0, 1.0), &device);
    let x = if backward { x.require_grad() } else { x };
    time_on_device(x, backward, repux_nn::ops::gelu, "gelu 2 × 48 ch·48³")
}

/// The [`device_gelu`] records, forward and forward + backward, repux's pass against burn's
/// `gelu`, each after one warm-up run.
fn gelu_records(repeats: usize) -> Result<Vec<serde_json::Value>> {
    let time = |fb: bool, burn: bool| -> Result<f64> {
        repux_nn::ops::use_burn_ops(burn);
        let r = device_gelu(fb).and_then(|_| {
            let runs: Result<Vec<f64>> = (0..repeats.max(1)).map(|_| device_gelu(fb)).collect();
            Ok(median(runs?))
        });
        repux_nn::ops::use_burn_ops(false);
        r
    };
    let mut records = Vec::new();
    for (pass, fb) in [("forward", false), ("forward_backward", true)] {
        let ours = time(fb, false)?;
        let burn_s = time(fb, true)?;
        records.push(serde_json::json!({"op": "gelu", "channels": 48, "size": [48, 48, 48], "batch": 2, "pass": pass, "ours_s": ours, "burn_s": burn_s}));
    }
    Ok(records)
}

/// SwinUNETR's attention softmax where it is largest: the first stage of a 2 × 96³ step, 48³
/// tokens per sample padded to 49³ and cut into 7³ windows (2 · 343 windows of 343 tokens, 3
/// heads), with the shifted blocks' mask and a position bias that wants its gradient, as in
/// training. Returns the record's fields and a timer for one pass through `repux_nn::ops`
/// (repux's fused kernels, or burn's ops with `use_burn_ops`) on the installed device, forward
/// or forward + backward. The inputs are drawn once; each run gets its own copy of the scores,
/// made before the clock starts, because in the network they come fresh from the product and
/// repux's forward overwrites them in place (a shared buffer would be copied first).
fn window_softmax_case(backward: bool) -> (serde_json::Value, impl FnMut() -> Result<f64>) {
    use burn::tensor::{Distribution, Tensor};
    let plain = repux_nn::compute_device();
    let device = if backward { plain.autodiff() } else { plain };
    let (side, window, shift, heads, samples) = (49usize, 7usize, 3usize, 3usize, 2usize);
    let n = window.pow(3);
    let batch = samples * (side / window).pow(3);
    let scores =
        Tensor::<4>::random([batch, heads, n, n], Distribution::Default, &device).into_data();
    let bias = Tensor::<3>::random([heads, n, n], Distribution::Normal(0.0, 0.02), &device);
    let bias = if backward { bias.require_grad() } else { bias };
    let mask = repux_nn::layers::window_attention::compute_mask(
        [side; 3],
        [window; 3],
        [shift; 3],
        &device,
    );
    let fields = serde_json::json!({"op": "window_softmax", "channels": 48, "size": [48, 48, 48], "heads": heads, "window": window, "batch": samples, "masked": true});
    let what = format!("window softmax [{batch}, {heads}, {n}, {n}]");
    let time = move || -> Result<f64> {
        let sync = || plain_sync(&what);
        let x = Tensor::<4>::from_data(scores.clone(), &device);
        // Tracked like the scores of a training step, whose gradient flows on to q and k.
        let x = if backward { x.require_grad() } else { x };
        sync()?;
        let t = Instant::now();
        // The scores move in: nothing else holds them, as in the network.
        let p = repux_nn::ops::window_softmax(x, bias.clone(), Some(mask.clone()));
        let check = if backward {
            bias.grad(&p.sum().backward())
                .ok_or_else(|| anyhow::anyhow!("{what}: the backward gave no bias gradient"))?
                .sum()
        } else {
            p.sum()
        };
        sync()?;
        let elapsed = t.elapsed().as_secs_f64();
        // As in `time_on_device`: a kernel the device could not run shows only on readback.
        repux_nn::values(check, &what)?;
        Ok(elapsed)
    };
    (fields, time)
}

/// The [`window_softmax_case`] records, forward and forward + backward, repux's kernels against
/// burn's ops, each after one warm-up run.
fn window_softmax_records(repeats: usize) -> Result<Vec<serde_json::Value>> {
    let mut records = Vec::new();
    for (pass, fb) in [("forward", false), ("forward_backward", true)] {
        let (mut fields, mut time) = window_softmax_case(fb);
        let mut median_of = |burn: bool| -> Result<f64> {
            repux_nn::ops::use_burn_ops(burn);
            let r = time().and_then(|_| {
                let runs: Result<Vec<f64>> = (0..repeats.max(1)).map(|_| time()).collect();
                Ok(median(runs?))
            });
            repux_nn::ops::use_burn_ops(false);
            r
        };
        let ours = median_of(false)?;
        let burn_s = median_of(true)?;
        fields["pass"] = pass.into();
        fields["ours_s"] = ours.into();
        fields["burn_s"] = burn_s.into();
        records.push(fields);
    }
    Ok(records)
}

/// Waits for the installed device to finish its queued work.
fn plain_sync(what: &str) -> Result<()> {
    repux_nn::compute_device()
        .sync()
        .map_err(|e| anyhow::anyhow!("{what}: waiting for the device: {e:?}"))
}

/// Seconds of `op(x)` (with `backward`, also the backward of its sum to `x`) on the installed
/// device, drained before the clock starts and before it stops. Then the result's sum is read
/// back: a kernel the device could not run — on lavapipe, a tensor above its 128 MiB buffer
/// binding — is reported only when a result is read, not by the device's sync, and must fail the
/// benchmark rather than leave the time of nothing in its table.
fn time_on_device(
    x: burn::tensor::Tensor<5>,
    backward: bool,
    op: impl FnOnce(burn::tensor::Tensor<5>) -> burn::tensor::Tensor<5>,
    what: &str,
) -> Result<f64> {
    let sync = || plain_sync(what);
    sync()?;
    let t = Instant::now();
    let y = op(x.clone());
    let out = if backward {
        x.grad(&y.sum().backward())
    } else {
        Some(y)
    };
    sync()?;
    let elapsed = t.elapsed().as_secs_f64();
    let out = out.ok_or_else(|| anyhow::anyhow!("{what}: the backward gave no input gradient"))?;
    repux_nn::values(out.sum(), what)?;
    Ok(elapsed)
}

/// `bench kernels` on a GPU: repux's CubeCL depthwise kernels against burn's generic conv3d
/// (groups = C) on the same device, the same shapes and record keys as on the CPU, plus
/// `"device"`; then repux's fused InstanceNorm + LeakyReLU against burn's composition of tensor
/// ops at the decoder's two finest levels (op `"instance_norm_act"`, no kernel or GFLOP/s), and
/// the attention softmax as on the CPU (op `"window_softmax"`).
fn gpu_kernels(
    device: &repux_nn::ComputeDevice,
    json: bool,
    repeats: usize,
    burn_limit_s: f64,
) -> Result<ExitCode> {
    use repux_kernels::DwShape;
    let time = |s: &DwShape, fb: bool, burn: bool, runs: usize| -> Result<f64> {
        repux_nn::ops::use_burn_ops(burn);
        // One warm-up compiles the kernels for this shape.
        let r = device_depthwise(s, fb).and_then(|_| {
            let runs: Result<Vec<f64>> =
                (0..runs.max(1)).map(|_| device_depthwise(s, fb)).collect();
            Ok(median(runs?))
        });
        repux_nn::ops::use_burn_ops(false);
        r
    };
    let mut records = Vec::new();
    let mut notes = Vec::new();
    for k in [21usize, 7] {
        let probe = DwShape {
            n: 1,
            c: 2,
            d: 12,
            h: 12,
            w: 12,
            k,
        };
        let macs = |s: &DwShape| (s.n * s.c * s.spatial() * s.k.pow(3)) as f64;
        let rate = [
            macs(&probe) / time(&probe, false, true, 1)?,
            macs(&probe) / time(&probe, true, true, 1)?,
        ];
        for (c, size) in [(48usize, 48usize), (96, 24), (192, 12), (384, 6)] {
            let s = DwShape {
                n: 1,
                c,
                d: size,
                h: size,
                w: size,
                k,
            };
            for (pass, fb) in [("forward", false), ("forward_backward", true)] {
                let ours = time(&s, fb, false, repeats)?;
                let est = macs(&s) / rate[fb as usize];
                let burn_s = if est > burn_limit_s {
                    notes.push(format!("depthwise k{k} {c} ch·{size}³ {pass}: burn skipped (estimated {est:.0} s from a probe)"));
                    None
                } else {
                    Some(time(&s, fb, true, if est > 5.0 { 1 } else { repeats })?)
                };
                let flops = 2.0 * macs(&s) * if fb { 3.0 } else { 1.0 };
                records.push(serde_json::json!({"op": "depthwise", "channels": c, "size": [size, size, size], "kernel": k, "pass": pass, "ours_s": ours, "burn_s": burn_s, "gflops": flops / ours / 1e9, "device": device.description}));
            }
        }
    }
    let time_norm = |c: usize, size: usize, fb: bool, burn: bool| -> Result<f64> {
        repux_nn::ops::use_burn_ops(burn);
        let r = device_norm(c, size, fb).and_then(|_| {
            let runs: Result<Vec<f64>> = (0..repeats.max(1))
                .map(|_| device_norm(c, size, fb))
                .collect();
            Ok(median(runs?))
        });
        repux_nn::ops::use_burn_ops(false);
        r
    };
    for (c, size) in [(48usize, 96usize), (96, 48)] {
        for (pass, fb) in [("forward", false), ("forward_backward", true)] {
            let ours = time_norm(c, size, fb, false)?;
            let burn_s = time_norm(c, size, fb, true)?;
            records.push(serde_json::json!({"op": "instance_norm_act", "channels": c, "size": [size, size, size], "pass": pass, "ours_s": ours, "burn_s": burn_s, "device": device.description}));
        }
    }
    for mut r in window_softmax_records(repeats)?
        .into_iter()
        .chain(gelu_records(repeats)?)
    {
        r["device"] = device.description.clone().into();
        records.push(r);
    }
    // The GPU path computes in fp32 on the device's shader cores.
    tag_precision(&mut records, "fp32", "gpu");
    if json {
        println!("{}", serde_json::to_string(&records)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "repux CubeCL kernels vs burn 0.22.1 (depthwise: generic conv3d, groups = C; norm: tensor-op composition) on {}, median of {repeats}",
        device.description
    );
    println!(
        "{:<17} {:>8} {:>6} {:<17} {:>10} {:>10} {:>9} {:>9}",
        "op", "channels", "size", "pass", "ours (s)", "burn (s)", "ratio", "GFLOP/s"
    );
    for r in &records {
        let ours = r["ours_s"].as_f64().unwrap_or(f64::NAN);
        let burn = r["burn_s"].as_f64();
        let op = match r["kernel"].as_u64() {
            Some(k) => format!("depthwise k{k}"),
            None => r["op"].as_str().unwrap_or("").to_string(),
        };
        println!(
            "{:<17} {:>8} {:>5}³ {:<17} {:>10.4} {:>10} {:>9} {:>9}",
            op,
            r["channels"].as_u64().unwrap_or(0),
            r["size"][0].as_u64().unwrap_or(0),
            r["pass"].as_str().unwrap_or(""),
            ours,
            burn.map(|b| format!("{b:.4}"))
                .unwrap_or_else(|| "skipped".into()),
            burn.map(|b| format!("{:.1}×", b / ours))
                .unwrap_or_else(|| "-".into()),
            r["gflops"]
                .as_f64()
                .map(|g| format!("{g:.1}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    for n in &notes {
        println!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// burn's generic conv3d (or k2 s2 transposed conv) on Flex: forward, or forward + backward.
fn burn_dense(
    x_shape: [usize; 5],
    w_shape: [usize; 5],
    stride: usize,
    pad: usize,
    transposed: bool,
    backward: bool,
) -> f64 {
    use burn::tensor::module::{conv3d, conv_transpose3d};
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
    use burn::tensor::{Distribution, Tensor};
    let device = if backward {
        repux_nn::cpu().autodiff()
    } else {
        repux_nn::cpu()
    };
    let x = Tensor::<5>::random(x_shape, Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<5>::random(w_shape, Distribution::Normal(0.0, 0.1), &device);
    let (x, w) = if backward {
        (x.require_grad(), w.require_grad())
    } else {
        (x, w)
    };
    let t = Instant::now();
    let y = if transposed {
        conv_transpose3d(
            x,
            w,
            None,
            ConvTransposeOptions::new([2, 2, 2], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1),
        )
    } else {
        conv3d(
            x,
            w,
            None,
            ConvOptions::new([stride; 3], [pad; 3], [1, 1, 1], 1),
        )
    };
    if backward {
        std::hint::black_box(y.sum().backward());
    } else {
        std::hint::black_box(y.into_data());
    }
    t.elapsed().as_secs_f64()
}

/// The paper network's dense convolutions at a 96³ patch: encoder1's and decoder1's 3³ convs,
/// the stem, a k2 s2 downsampling conv and the decoder's k2 s2 transposed conv.
fn dense_records(
    repeats: usize,
    burn_limit_s: f64,
    records: &mut Vec<serde_json::Value>,
    notes: &mut Vec<String>,
) {
    use repux_kernels::dense::{self, ConvShape, UpShape};
    // (name, cin, cout, input side, k, stride, pad)
    let convs = [
        (
            "encoder1 3³",
            1usize,
            48usize,
            96usize,
            3usize,
            1usize,
            1usize,
        ),
        ("encoder1/decoder1 3³", 48, 48, 96, 3, 1, 1),
        ("decoder1 3³ (concat)", 96, 48, 96, 3, 1, 1),
        ("stem 7³ s2", 1, 48, 96, 7, 2, 3),
        ("downsample k2 s2", 48, 96, 48, 2, 2, 0),
    ];
    let data = |n: usize| -> Vec<f32> { (0..n).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect() };
    // burn's throughput on a small probe, to estimate (and skip) the slowest runs.
    let probe = |k: usize, fb: bool| {
        let t = burn_dense([1, 8, 16, 16, 16], [8, 8, k, k, k], 1, k / 2, false, fb);
        (8 * 8 * k.pow(3) * 16usize.pow(3)) as f64 / t
    };
    for (name, cin, cout, size, k, stride, pad) in convs {
        let s = ConvShape {
            n: 1,
            cin,
            cout,
            d: size,
            h: size,
            w: size,
            k,
            stride,
            pad,
            groups: 1,
        };
        let (x, w) = (data(s.input_len()), data(s.weight_len()));
        let macs = (s.output_len() * cin * k.pow(3)) as f64;
        for (pass, fb) in [("forward", false), ("forward_backward", true)] {
            let ours = time_median(repeats, || {
                let y = dense::conv3d_forward(&s, &x, &w, None);
                if fb {
                    std::hint::black_box(dense::conv3d_backward(&s, &x, &w, &y, cin > 1));
                } else {
                    std::hint::black_box(y);
                }
            });
            let est = macs / probe(k.min(7), fb);
            let burn_s = if est > burn_limit_s {
                notes.push(format!("{name} {cin}→{cout} @{size}³ {pass}: burn skipped (estimated {est:.0} s from a probe)"));
                None
            } else {
                Some(time_median(if est > 5.0 { 1 } else { repeats }, || {
                    burn_dense(
                        [1, cin, size, size, size],
                        [cout, cin, k, k, k],
                        stride,
                        pad,
                        false,
                        fb,
                    );
                }))
            };
            let flops = 2.0
                * macs
                * if fb {
                    if cin > 1 {
                        3.0
                    } else {
                        2.0
                    }
                } else {
                    1.0
                };
            records.push(serde_json::json!({"op": "conv", "name": name, "channels": cin, "out_channels": cout, "size": [size, size, size], "kernel": k, "stride": stride, "pass": pass, "ours_s": ours, "burn_s": burn_s, "gflops": flops / ours / 1e9}));
        }
    }
    let s = UpShape {
        n: 1,
        cin: 96,
        cout: 48,
        d: 48,
        h: 48,
        w: 48,
    };
    let (x, w) = (data(s.input_len()), data(s.weight_len()));
    let macs = (s.input_len() * s.cout * 8) as f64;
    for (pass, fb) in [("forward", false), ("forward_backward", true)] {
        let ours = time_median(repeats, || {
            let y = dense::conv_transpose_k2s2_forward(&s, &x, &w);
            if fb {
                std::hint::black_box(dense::conv_transpose_k2s2_backward(&s, &x, &w, &y));
            } else {
                std::hint::black_box(y);
            }
        });
        let burn_s = Some(time_median(1, || {
            burn_dense([1, 96, 48, 48, 48], [96, 48, 2, 2, 2], 2, 0, true, fb);
        }));
        let flops = 2.0 * macs * if fb { 3.0 } else { 1.0 };
        records.push(serde_json::json!({"op": "conv_transpose", "name": "decoder up k2 s2", "channels": 96, "out_channels": 48, "size": [48, 48, 48], "kernel": 2, "stride": 2, "pass": pass, "ours_s": ours, "burn_s": burn_s, "gflops": flops / ours / 1e9}));
    }
}

fn bench_resample(
    shape: [usize; 3],
    spacing: [f64; 3],
    target: [f64; 3],
    repeats: usize,
    json: bool,
) -> Result<ExitCode> {
    let n: usize = shape.iter().product();
    // A smooth CT-like field with structure on every axis (deterministic).
    let data: Vec<f32> = (0..n)
        .map(|i| {
            let (a, b, k) = (
                i / (shape[1] * shape[2]),
                (i / shape[2]) % shape[1],
                i % shape[2],
            );
            (400.0 * ((a as f32) * 0.05).sin() * ((b as f32) * 0.07).cos()
                + 100.0 * ((k as f32) * 0.11).sin())
                - 200.0
        })
        .collect();
    let out = shape_for_spacing(shape, spacing, target);
    let mut records = Vec::new();
    for (name, interp) in [
        ("cubic", Interp::Cubic),
        ("linear", Interp::Linear),
        ("nearest", Interp::Nearest),
    ] {
        let times: Vec<f64> = (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                let r = resample(&data, shape, out, [interp; 3]);
                std::hint::black_box(r);
                t.elapsed().as_secs_f64()
            })
            .collect();
        records.push(serde_json::json!({"op": "resample", "interpolation": name, "shape": shape, "out_shape": out, "spacing": spacing, "target": target, "threads": rayon_threads(), "median_s": median(times)}));
    }
    if json {
        println!("{}", serde_json::to_string(&records)?);
    } else {
        println!("resample {shape:?} at {spacing:?} mm → {out:?} at {target:?} mm, {} threads, median of {repeats}", rayon_threads());
        let cubic = records[0]["median_s"].as_f64().unwrap_or(f64::NAN);
        for r in &records {
            let s = r["median_s"].as_f64().unwrap_or(f64::NAN);
            println!(
                "  {:<8} {:>8.3} s   ({:.2}× cubic's time)",
                r["interpolation"].as_str().unwrap_or(""),
                s,
                s / cubic
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Two ellipsoids filling much of the volume, the second shifted and scaled: realistic organ-sized
/// surfaces (millions of edge voxels at 512×512×300).
fn surface(shape: [usize; 3], spacing: [f64; 3], repeats: usize) -> Result<ExitCode> {
    let n: usize = shape.iter().product();
    let ell = |c: [f64; 3], r: [f64; 3]| -> Vec<bool> {
        (0..n)
            .map(|i| {
                let p = [
                    (i / (shape[1] * shape[2])) as f64,
                    ((i / shape[2]) % shape[1]) as f64,
                    (i % shape[2]) as f64,
                ];
                (0..3).map(|a| ((p[a] - c[a]) / r[a]).powi(2)).sum::<f64>() < 1.0
            })
            .collect()
    };
    let s = shape.map(|v| v as f64);
    let a = ell(
        [s[0] * 0.5, s[1] * 0.5, s[2] * 0.5],
        [s[0] * 0.35, s[1] * 0.3, s[2] * 0.35],
    );
    let b = ell(
        [s[0] * 0.52, s[1] * 0.49, s[2] * 0.5],
        [s[0] * 0.33, s[1] * 0.31, s[2] * 0.36],
    );
    let mut m = None;
    let t = time_median(repeats, || {
        m = Some(repux_eval::class_metrics(&a, &b, shape, spacing, 1.0))
    });
    let m = m.ok_or_else(|| anyhow::anyhow!("no run"))?;
    println!("HD95 + ASD + NSD (+ Dice) of two masks {shape:?} at {spacing:?} mm, {} threads, median of {repeats}: {t:.3} s", rayon_threads());
    println!(
        "  Dice {:.4}  HD95 {:.3} mm  ASD {:.3} mm  NSD@1mm {:.4}",
        m.Dice, m.HD95, m.ASD, m.NSD
    );
    Ok(ExitCode::SUCCESS)
}
