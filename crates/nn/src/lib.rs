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

/// A tensor whose values could not be read as f32.
#[derive(Debug, thiserror::Error)]
#[error("{what}: cannot read the tensor's values as f32: {msg}")]
pub struct ValuesError {
    pub what: String,
    pub msg: String,
}

/// The values of a tensor in C order as f32 (other float dtypes are converted); `what` names
/// the tensor in the error.
pub fn values<const D: usize>(
    t: burn::tensor::Tensor<D>,
    what: &str,
) -> Result<Vec<f32>, ValuesError> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| ValuesError {
            what: what.to_string(),
            msg: format!("{e:?}"),
        })
}
