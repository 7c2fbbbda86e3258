//! bf16 GEMM operands with fp32 accumulation, as PyTorch's CPU autocast runs its convs and
//! matmuls: the process-wide precision that every dense-conv GEMM ([`crate::conv_core`]'s
//! `matmul_with`: im2col, shifted views, Winograd's batched GEMMs, transposed convs) reads, and
//! the levels a bf16 GEMM can run at on this CPU.
//!
//! Levels, fastest first: AMX tiles (`tdpbf16ps`), AVX512-BF16 (`vdpbf16ps`), and `fp32`: the
//! operands rounded to bf16 (round to nearest even) and multiplied by the fp32 FMA GEMM. A
//! product of two bf16 values has at most 16 significant bits, so it is exact in fp32 and the
//! `fp32` level computes what the matrix units compute up to the order of the fp32 sums: it is
//! the reference the faster levels are tested against, and what `--precision bf16` runs on a
//! CPU without bf16 units. [`bf16_level`] picks the fastest level the CPU has (AMX also needs
//! the kernel's permission), capped by [`limit_bf16_level`] or `REPUX_BF16_LEVEL`.
//!
//! The depthwise kernels (FFT and direct), the norms, softmax and the loss stay fp32 whatever
//! the precision.

use std::sync::atomic::{AtomicU8, Ordering};

/// What the dense-conv GEMMs multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// fp32 operands (the default).
    Fp32,
    /// Operands rounded to bf16, products accumulated in fp32.
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the precision of every dense-conv GEMM in this process from now on (like the thread
/// count: one setting per run, chosen by `--precision`).
pub fn set_precision(p: Precision) {
    PRECISION.store(p as u8, Ordering::Relaxed);
}

/// The precision the dense-conv GEMMs run at.
pub fn precision() -> Precision {
    if PRECISION.load(Ordering::Relaxed) == Precision::Bf16 as u8 {
        Precision::Bf16
    } else {
        Precision::Fp32
    }
}

/// How a bf16 GEMM runs, slowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bf16Level {
    /// bf16-rounded operands through the fp32 FMA GEMM.
    Fp32,
    /// `vdpbf16ps` on zmm registers ([`crate::bf16_gemm`]).
    Avx512Bf16,
    /// AMX tiles, `tdpbf16ps` ([`crate::bf16_gemm`]).
    Amx,
}

impl Bf16Level {
    pub const ALL: [Bf16Level; 3] = [Bf16Level::Fp32, Bf16Level::Avx512Bf16, Bf16Level::Amx];

    /// The name `repux bench … --json` records as `"isa"`, and `REPUX_BF16_LEVEL` takes.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Level::Fp32 => "fp32",
            Bf16Level::Avx512Bf16 => "avx512bf16",
            Bf16Level::Amx => "amx",
        }
    }
    /// Whether this level runs on a bf16 unit (the GEMMs then take `bf16_gemm` and the
    /// shifted convs `bf16_shifted`), rather than bf16-rounded operands on the fp32 GEMM.
    pub fn accelerated(self) -> bool {
        self != Bf16Level::Fp32
    }

    /// Whether bf16 at this level makes the networks faster than fp32, which is what
    /// `--precision auto` asks before it picks bf16: AMX's tiles, at 16× fp32's FMA rate on
    /// paper. AVX512-BF16 is not: on the AMD EPYC where it was measured, `vdpbf16ps` does only
    /// 1.33× the multiply-adds of fp32 FMA per core (235 against 176 GMAC/s in a register-only
    /// loop, tools/bf16_rate.c), too little for direct 3³ convs to beat fp32 Winograd's 8× fewer multiplies; the
    /// paper network's forward at 2 × 96³ took 11.6 s in bf16 against 8.9 s in fp32
    /// (docs/performance.md).
    pub fn beats_fp32(self) -> bool {
        self == Bf16Level::Amx
    }
}

impl std::str::FromStr for Bf16Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Bf16Level::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("unknown bf16 level {s:?} (expected fp32, avx512bf16 or amx)"))
    }
}

/// The highest level [`bf16_level`] may pick (the default: the fastest there is).
static LEVEL_CAP: AtomicU8 = AtomicU8::new(Bf16Level::Amx as u8);

/// Caps the bf16 level from now on (tests run every level this CPU has; `REPUX_BF16_LEVEL`
/// reaches it through [`cap_level_from_env`]).
pub fn limit_bf16_level(cap: Bf16Level) {
    LEVEL_CAP.store(cap as u8, Ordering::Relaxed);
}

/// Runs `f` with the bf16 level capped at `level`, then puts the previous cap back (tests run
/// each level this CPU has through it).
pub fn at_level<R>(level: Bf16Level, f: impl FnOnce() -> R) -> R {
    let previous = LEVEL_CAP.swap(level as u8, Ordering::Relaxed);
    let r = f();
    LEVEL_CAP.store(previous, Ordering::Relaxed);
    r
}

/// The environment variable that caps the bf16 level (`fp32`, `avx512bf16` or `amx`).
pub const LEVEL_ENV: &str = "REPUX_BF16_LEVEL";

/// Applies `REPUX_BF16_LEVEL` when it is set; an unknown value is an error naming it.
pub fn cap_level_from_env() -> Result<(), String> {
    match std::env::var(LEVEL_ENV) {
        Ok(v) => {
            let level = v.trim().parse().map_err(|e| format!("{LEVEL_ENV}: {e}"))?;
            limit_bf16_level(level);
            Ok(())
        }
        Err(std::env::VarError::NotPresent) => Ok(()),
        Err(e) => Err(format!("{LEVEL_ENV}: {e}")),
    }
}

/// Whether this CPU (and OS) can run `level`. AMX also needs the kernel's permission for the
/// tile data, asked once per process.
pub fn level_available(level: Bf16Level) -> bool {
    static AMX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let units = cpu_bf16_units();
    match level {
        Bf16Level::Fp32 => true,
        #[cfg(target_arch = "x86_64")]
        Bf16Level::Avx512Bf16 => units.avx512_bf16 && std::is_x86_feature_detected!("avx512f"),
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Bf16Level::Amx => units.amx && *AMX.get_or_init(request_tile_data),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = (&AMX, units);
            false
        }
    }
}

/// Asks Linux for the AMX tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`, process-wide); without it the first tile instruction faults.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_data() -> bool {
    const SYS_ARCH_PRCTL: isize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: a plain system call; it reads no memory of ours.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

/// Every level this CPU can run, slowest first (`fp32` always).
pub fn levels_available() -> Vec<Bf16Level> {
    Bf16Level::ALL
        .into_iter()
        .filter(|&l| level_available(l))
        .collect()
}

/// The level a bf16 GEMM runs at here: the fastest one this CPU allows, within the cap.
pub fn bf16_level() -> Bf16Level {
    let cap = LEVEL_CAP.load(Ordering::Relaxed);
    Bf16Level::ALL
        .into_iter()
        .rev()
        .find(|&l| l as u8 <= cap && level_available(l))
        .unwrap_or(Bf16Level::Fp32)
}

/// The bf16 matrix units this CPU reports (CPUID), whether or not this build uses them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bf16Units {
    /// AMX-TILE and AMX-BF16.
    pub amx: bool,
    /// AVX512-BF16.
    pub avx512_bf16: bool,
}

/// This CPU's bf16 units, read once per process: the bf16 GEMM asks on every call, and in a
/// virtual machine each CPUID exits to the hypervisor.
pub fn cpu_bf16_units() -> Bf16Units {
    static UNITS: std::sync::OnceLock<Bf16Units> = std::sync::OnceLock::new();
    *UNITS.get_or_init(read_cpu_bf16_units)
}

fn read_cpu_bf16_units() -> Bf16Units {
    #[cfg(target_arch = "x86_64")]
    {
        // AMX-BF16 is CPUID.(EAX=7,ECX=0):EDX[22], AMX-TILE EDX[24] (Intel SDM vol. 2A); std's
        // detection of them is not stable yet.
        // Leaf 7 is read only where the maximum leaf (leaf 0's EAX) reaches it.
        let amx = std::arch::x86_64::__cpuid(0).eax >= 7 && {
            let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
            edx & (1 << 22) != 0 && edx & (1 << 24) != 0
        };
        Bf16Units {
            amx,
            avx512_bf16: std::is_x86_feature_detected!("avx512bf16"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    Bf16Units::default()
}

/// One line for the tools: the precision, how its GEMMs run, and the CPU's units left unused.
pub fn describe(p: Precision) -> String {
    match p {
        Precision::Fp32 => "fp32".into(),
        Precision::Bf16 => {
            let units = cpu_bf16_units();
            let mut have = Vec::new();
            if units.amx {
                have.push("AMX-BF16");
            }
            if units.avx512_bf16 {
                have.push("AVX512-BF16");
            }
            let level = bf16_level();
            if level.accelerated() {
                format!("bf16 ({})", level.name())
            } else if have.is_empty() {
                "bf16 operands on the fp32 GEMM (this CPU has no AMX-BF16 or AVX512-BF16: \
                 bf16 numerics, no speed-up)"
                    .into()
            } else {
                format!(
                    "bf16 operands on the fp32 GEMM ({} capped or refused here: bf16 \
                     numerics, no speed-up)",
                    have.join(" and ")
                )
            }
        }
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as an f32; NaN stays NaN (quietened),
/// values beyond bf16's largest finite round to ±∞, as `half::bf16::from_f32` and the
/// hardware's `vcvtneps2bf16` do.
#[inline]
pub fn round_to_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    if b & 0x7fff_ffff > 0x7f80_0000 {
        return f32::from_bits((b | 0x0040_0000) & 0xffff_0000);
    }
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1));
    f32::from_bits(rounded & 0xffff_0000)
}

/// Rows × cols of a strided operand (element (r, c) at `data[r·rs + c·cs]`), rounded to bf16,
/// into `out` as a dense row-major matrix.
pub(crate) fn round_operand(
    data: &[f32],
    (rs, cs): (usize, usize),
    rows: usize,
    cols: usize,
    out: &mut Vec<f32>,
) {
    out.clear();
    out.reserve(rows * cols);
    for r in 0..rows {
        if cs == 1 {
            out.extend(
                data[r * rs..r * rs + cols]
                    .iter()
                    .map(|&v| round_to_bf16(v)),
            );
        } else {
            out.extend((0..cols).map(|c| round_to_bf16(data[r * rs + c * cs])));
        }
    }
}
