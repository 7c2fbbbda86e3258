//! Where the networks compute: the CPU (burn's Flex backend with repux's kernels) or, in a build
//! with the `gpu` feature, a GPU through burn's wgpu backend. The choice is process-wide, like
//! the thread count and the GEMM precision: a command resolves `--device` once at start-up
//! ([`resolve`]), installs it ([`set_compute_device`]), and everything that makes tensors asks
//! [`compute_device`].
//!
//! `auto` takes the first hardware GPU adapter where the build has the feature and one exists,
//! else the CPU. A software adapter (Mesa's lavapipe, which runs Vulkan on the CPU) is never
//! chosen by `auto` or `gpu[:N]`, only by `gpu:software` — the GPU path's tests run on it.

use std::fmt;
use std::str::FromStr;
use std::sync::RwLock;

/// What `--device` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The first hardware GPU when the build has the `gpu` feature and one is found, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The Nth hardware GPU adapter (`gpu` = `gpu:0`).
    Gpu(usize),
    /// The first software adapter (Vulkan on the CPU: for tests, never chosen otherwise).
    GpuSoftware,
}

impl FromStr for DeviceRequest {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu(0)),
            "gpu:software" => Ok(Self::GpuSoftware),
            _ => s
                .strip_prefix("gpu:")
                .and_then(|n| n.parse().ok())
                .map(Self::Gpu)
                .ok_or_else(|| DeviceError::Parse(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Gpu(n) => write!(f, "gpu:{n}"),
            Self::GpuSoftware => f.write_str("gpu:software"),
        }
    }
}

/// Why a device request cannot be met.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("invalid device {0:?}: expected auto, cpu, gpu, gpu:N or gpu:software")]
    Parse(String),
    #[error(
        "--device {0}: this build has no GPU support; build with \
         `cargo build --release --features gpu`"
    )]
    NotBuilt(DeviceRequest),
    #[error("--device {request}: {problem}")]
    NotFound {
        request: DeviceRequest,
        problem: String,
    },
}

/// A resolved device: the burn device and how to name it to the user.
#[derive(Clone, Debug)]
pub struct ComputeDevice {
    pub device: burn::tensor::Device,
    /// `cpu`, or `gpu N: <name> (<API>, <driver>)`.
    pub description: String,
    pub gpu: bool,
    /// The largest buffer one tensor may occupy on this device (a GPU adapter's storage buffer
    /// binding limit, e.g. 128 MiB on lavapipe); `None` on the CPU.
    pub max_buffer_bytes: Option<u64>,
}

impl ComputeDevice {
    /// The CPU.
    pub fn cpu() -> Self {
        Self {
            device: crate::cpu(),
            description: "cpu".to_string(),
            gpu: false,
            max_buffer_bytes: None,
        }
    }
}

/// Turns a request into a device, looking for GPU adapters where the request needs them.
pub fn resolve(request: &DeviceRequest) -> Result<ComputeDevice, DeviceError> {
    match request {
        DeviceRequest::Cpu => Ok(ComputeDevice::cpu()),
        #[cfg(not(feature = "gpu"))]
        DeviceRequest::Auto => Ok(ComputeDevice::cpu()),
        #[cfg(not(feature = "gpu"))]
        DeviceRequest::Gpu(_) | DeviceRequest::GpuSoftware => {
            Err(DeviceError::NotBuilt(request.clone()))
        }
        #[cfg(feature = "gpu")]
        _ => resolve_gpu(request),
    }
}

#[cfg(feature = "gpu")]
fn resolve_gpu(request: &DeviceRequest) -> Result<ComputeDevice, DeviceError> {
    let adapters = crate::gpu::adapters();
    let hardware: Vec<&crate::gpu::Adapter> = adapters.iter().filter(|a| !a.software).collect();
    let found = |index: usize, a: &crate::gpu::Adapter| ComputeDevice {
        device: a.device(),
        description: format!("gpu {index}: {} ({}, {})", a.name, a.api, a.driver),
        gpu: true,
        max_buffer_bytes: Some(a.max_buffer_bytes),
    };
    let listed = || {
        if adapters.is_empty() {
            "wgpu found no graphics adapter (no Vulkan, Metal or DX12 driver)".to_string()
        } else {
            let names: Vec<String> = adapters
                .iter()
                .map(|a| {
                    let kind = if a.software { "software" } else { "hardware" };
                    format!("{} ({kind}, {})", a.name, a.api)
                })
                .collect();
            format!("adapters found: {}", names.join("; "))
        }
    };
    match request {
        DeviceRequest::Cpu => Ok(ComputeDevice::cpu()),
        DeviceRequest::Auto => Ok(hardware
            .first()
            .map(|a| found(0, a))
            .unwrap_or_else(ComputeDevice::cpu)),
        DeviceRequest::Gpu(n) => {
            hardware
                .get(*n)
                .map(|a| found(*n, a))
                .ok_or_else(|| DeviceError::NotFound {
                    request: request.clone(),
                    problem: format!(
                    "there are {} hardware GPU adapters; {} (a software adapter runs only with \
                     --device gpu:software)",
                    hardware.len(),
                    listed()
                ),
                })
        }
        DeviceRequest::GpuSoftware => adapters
            .iter()
            .find(|a| a.software)
            .map(|a| ComputeDevice {
                device: a.device(),
                description: format!("gpu (software): {} ({}, {})", a.name, a.api, a.driver),
                gpu: true,
                max_buffer_bytes: Some(a.max_buffer_bytes),
            })
            .ok_or_else(|| DeviceError::NotFound {
                request: request.clone(),
                problem: format!(
                    "no software adapter (on Debian/Ubuntu: apt-get install \
                     mesa-vulkan-drivers); {}",
                    listed()
                ),
            }),
    }
}

static CURRENT: RwLock<Option<ComputeDevice>> = RwLock::new(None);

/// Installs the device every later [`compute_device`] call returns.
pub fn set_compute_device(device: &ComputeDevice) {
    let mut current = CURRENT
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *current = Some(device.clone());
}

/// The installed device; the CPU where none was installed.
pub fn compute_device() -> burn::tensor::Device {
    installed().device
}

/// The installed device with its description; the CPU where none was installed.
pub fn installed() -> ComputeDevice {
    CURRENT
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
        .unwrap_or_else(ComputeDevice::cpu)
}

/// What the device's allocator holds now (`None` on the CPU, whose backend does not report it):
/// bytes in live allocations and bytes reserved from the device.
pub fn memory_usage(device: &burn::tensor::Device) -> Option<(u64, u64)> {
    device
        .memory_pool_usage()
        .map(|u| (u.bytes_in_use, u.bytes_reserved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_print_back() {
        for s in ["auto", "cpu", "gpu:0", "gpu:3", "gpu:software"] {
            let r: DeviceRequest = s.parse().expect(s);
            assert_eq!(r.to_string(), s);
        }
        assert_eq!(
            "gpu".parse::<DeviceRequest>().ok(),
            Some(DeviceRequest::Gpu(0))
        );
        for bad in ["", "GPU", "gpu:", "gpu:-1", "cuda", "gpu:soft"] {
            let e = bad.parse::<DeviceRequest>().expect_err(bad);
            assert!(e.to_string().contains("expected auto, cpu"), "{e}");
        }
    }

    #[test]
    fn cpu_resolves_everywhere() {
        let d = resolve(&DeviceRequest::Cpu).expect("cpu");
        assert!(!d.gpu);
        assert_eq!(d.description, "cpu");
    }

    #[cfg(not(feature = "gpu"))]
    #[test]
    fn a_cpu_build_says_how_to_get_the_gpu_path() {
        assert!(!resolve(&DeviceRequest::Auto).expect("auto").gpu);
        let e = resolve(&DeviceRequest::Gpu(0)).expect_err("no gpu in this build");
        assert!(e.to_string().contains("--features gpu"), "{e}");
    }
}
