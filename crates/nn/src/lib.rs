//! repux-nn: RepUX-Net, 3D UX-Net and SwinUNETR in burn — layers (one per file in `layers`), the networks
//! (`net`), BFR/SR re-parameterization and the deploy merge, the model config and presets
//! (`config`), and weights in the authors' PyTorch key names (`weights`). All convolutions go
//! through `ops`, the extension point for the fast CPU kernels.

pub mod collective;
pub mod config;
pub mod device;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod layers;
pub mod net;
pub mod ops;
pub mod pth;
pub mod summary;
pub mod swin_unetr;
pub mod weights;

pub use config::{Arch, ModelConfig, Reparam};
pub use device::{compute_device, ComputeDevice, DeviceRequest};
pub use net::{Net, UxNet};
pub use swin_unetr::SwinUnetr;
pub use weights::{
    deploy_state_dict, export, import_state_dict, load_into, load_model_dir, read_state_dict,
    read_weights, save_model_dir, state_dict, ExportFormat, KernelForm, StateDict, WeightError,
    Weights,
};

/// The CPU device repux computes on (burn's pure-Rust Flex backend).
pub fn cpu() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}

/// A tensor whose values could not be read: the device failed to compute it, or they are not
/// readable as f32.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {msg}")]
pub struct ValuesError {
    pub what: String,
    pub msg: String,
}

/// The values of a tensor in C order as f32 (other float dtypes are converted); `what` names
/// the tensor in the error.
///
/// A GPU reports a kernel it could not run only when a result is read back, so this is also
/// where a GPU failure becomes an error rather than a panic: its message says what the device
/// said and, on a GPU, the one limit a network at a larger patch or batch meets first — one
/// tensor must fit one buffer binding of the adapter.
pub fn values<const D: usize>(
    t: burn::tensor::Tensor<D>,
    what: &str,
) -> Result<Vec<f32>, ValuesError> {
    let error = |msg: String| ValuesError {
        what: what.to_string(),
        msg,
    };
    let data = t.try_into_data().map_err(|e| {
        let said = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let installed = device::installed();
        let hint = match installed.max_buffer_bytes {
            Some(bytes) => format!(
                "; on the GPU path every tensor must fit one buffer of the adapter, at most \
                 {} MiB on {}: a smaller patch or batch, or --device cpu, avoids it",
                bytes >> 20,
                installed.description
            ),
            None => String::new(),
        };
        error(format!("the device failed to compute it ({said}){hint}"))
    })?;
    data.try_into_vec_as::<f32>()
        .map_err(|e| error(format!("cannot read the tensor's values as f32: {e:?}")))
}
