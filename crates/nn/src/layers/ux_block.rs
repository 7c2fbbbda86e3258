//! The 3D UX-Net block: depthwise Conv3d(k7) → channels-first LayerNorm → grouped 1×1×1 conv
//! C→4C (groups C) → GELU → grouped 1×1×1 conv 4C→C (groups C) → per-channel γ → + input.

use super::conv::{Conv, ConvConfig, DwConv};
use super::norm::LayerNormCf;
use crate::ops::gelu;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct UxBlock {
    pub dwconv: DwConv,
    pub norm: LayerNormCf,
    pub pwconv1: Conv,
    pub pwconv2: Conv,
    pub gamma: Param<Tensor<1>>,
}

impl UxBlock {
    pub fn new(c: usize, kernel: usize, device: &Device) -> Self {
        UxBlock {
            dwconv: DwConv::new(c, kernel, device),
            norm: LayerNormCf::new(c, 1e-6, device),
            pwconv1: ConvConfig::new(c, 4 * c, 1).with_groups(c).init(device),
            pwconv2: ConvConfig::new(4 * c, c, 1).with_groups(c).init(device),
            gamma: Param::from_tensor(Tensor::ones([c], device) * 1e-6),
        }
    }

    /// `[N, C, D, H, W] → [N, C, D, H, W]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let c = self.gamma.dims()[0];
        let y = self.pwconv2.forward(gelu(
            self.pwconv1
                .forward(self.norm.forward(self.dwconv.forward(x.clone()))),
        ));
        x + y * self.gamma.val().reshape([1, c, 1, 1, 1])
    }
}
