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
    /// bf16 where this build has a bf16 GEMM faster than fp32 on this CPU (AMX-BF16,
    /// AVX512-BF16), else fp32.
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
            PrecisionArg::Auto if repux_kernels::bf16::bf16_level().accelerated() => {
                Precision::Bf16
            }
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
