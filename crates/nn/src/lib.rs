//! repux-nn: RepUX-Net, 3D UX-Net and SwinUNETR in burn — layers (one per file in `layers`), the networks
//! (`net`), BFR/SR re-parameterization and the deploy merge, the model config and presets
//! (`config`), and weights in the authors' PyTorch key names (`weights`). All convolutions go
//! through `ops`, the extension point for the fast CPU kernels.

pub mod config;
pub mod layers;
pub mod net;
pub mod ops;
pub mod summary;
pub mod swin_unetr;
pub mod weights;

pub use config::{Arch, ModelConfig, Reparam};
pub use net::{Net, UxNet};
pub use swin_unetr::SwinUnetr;
pub use weights::{load_into, load_model_dir, read_state_dict, save_model_dir, state_dict, StateDict, WeightError, Weights};

/// The CPU device repux computes on (burn's pure-Rust Flex backend).
pub fn cpu() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}
