//! Shared argument parsers.

/// Parses `a,b,c` into three values.
pub fn triple<T: std::str::FromStr>(s: &str) -> Result<[T; 3], String> {
    let v: Vec<T> = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<T>()
                .map_err(|_| format!("{p:?} is not a number"))
        })
        .collect::<Result<_, _>>()?;
    match <[T; 3]>::try_from(v) {
        Ok(a) => Ok(a),
        Err(v) => Err(format!(
            "expected three comma-separated values, got {}",
            v.len()
        )),
    }
}

/// Parses a number of seconds: finite and not negative.
pub fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!("{s:?} is not a number of seconds (finite, ≥ 0)")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// Parses `a,b` into two values.
pub fn pair(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or("expected two comma-separated values, e.g. -125,275")?;
    Ok((
        a.trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a number"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a number"))?,
    ))
}

/// `--precision`: what the dense-conv GEMMs multiply.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// bf16 where this build has a bf16 GEMM faster than fp32 on this CPU (AMX-BF16; not
    /// AVX512-BF16, measured slower than fp32 Winograd), else fp32.
    Auto,
    Fp32,
    /// bf16 operands, fp32 sums (PyTorch's CPU autocast); norms, depthwise convs, softmax and
    /// the loss stay fp32.
    Bf16,
}

impl PrecisionArg {
    /// The precision this choice means on this CPU and build.
    pub fn resolve(self) -> repux_kernels::Precision {
        use repux_kernels::Precision;
        match self {
            PrecisionArg::Auto if repux_kernels::bf16::bf16_level().beats_fp32() => Precision::Bf16,
            PrecisionArg::Auto | PrecisionArg::Fp32 => Precision::Fp32,
            PrecisionArg::Bf16 => Precision::Bf16,
        }
    }

    /// Resolves and sets the precision for this process; bf16 is announced once (with how it
    /// runs here), fp32 is the quiet default.
    pub fn apply(self) -> repux_kernels::Precision {
        let p = self.resolve();
        repux_kernels::set_precision(p);
        if p == repux_kernels::Precision::Bf16 {
            eprintln!("precision: {}", repux_kernels::bf16::describe(p));
        }
        p
    }
}

/// `--device`: auto, cpu, gpu, gpu:N or gpu:software.
pub fn device(s: &str) -> Result<repux_nn::DeviceRequest, String> {
    s.parse()
        .map_err(|e: repux_nn::device::DeviceError| e.to_string())
}

/// The device flag every computing command shares.
#[derive(clap::Args, Clone, Debug)]
pub struct DeviceArg {
    /// Where the network computes: auto (the first hardware GPU in a `--features gpu` build,
    /// else the CPU), cpu, gpu, gpu:N (the Nth hardware GPU) or gpu:software (a software Vulkan
    /// driver such as Mesa's lavapipe: for tests, never chosen otherwise).
    #[arg(long, value_parser = device, default_value = "auto")]
    pub device: repux_nn::DeviceRequest,
}

/// Resolves `--device` and `--precision` together, installs both for this process and says
/// once which device it is. bf16 GEMMs are the CPU path's: on a GPU `auto` means fp32 and an
/// explicit bf16 is refused rather than silently left out.
pub fn apply_device(
    request: &repux_nn::DeviceRequest,
    precision: PrecisionArg,
) -> anyhow::Result<(repux_nn::ComputeDevice, repux_kernels::Precision)> {
    let d = repux_nn::device::resolve(request)?;
    let p = if d.gpu {
        if precision == PrecisionArg::Bf16 {
            anyhow::bail!(
                "--precision bf16 runs on the CPU's GEMMs; the GPU path computes in fp32 \
                 (use --precision fp32, or --device cpu)"
            );
        }
        repux_kernels::set_precision(repux_kernels::Precision::Fp32);
        repux_kernels::Precision::Fp32
    } else {
        precision.apply()
    };
    repux_nn::device::set_compute_device(&d);
    eprintln!("device: {}", d.description);
    Ok((d, p))
}
