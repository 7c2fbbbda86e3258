//! MONAI's UNETR decoder blocks as 3D UX-Net uses them: InstanceNorm (no affine, instance
//! statistics), LeakyReLU 0.01, bias-free convolutions.

use super::conv::{Conv, ConvConfig, TranspConv};
use crate::ops::{add_leaky_relu, instance_norm_act};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

const EPS: f64 = 1e-5;
const SLOPE: f64 = 0.01;

/// `a = LReLU(IN(conv3(x))); a = IN(conv3(a)); r = x or IN(conv1(x)); out = LReLU(a + r)`
#[derive(Module, Debug)]
pub struct ResBlock {
    pub conv1: Conv,
    pub conv2: Conv,
    /// 1×1×1 projection of the residual when channel counts differ.
    pub conv3: Option<Conv>,
}

impl ResBlock {
    pub fn new(cin: usize, cout: usize, device: &Device) -> Self {
        ResBlock {
            conv1: ConvConfig::new(cin, cout, 3)
                .with_padding(1)
                .with_bias(false)
                .init(device),
            conv2: ConvConfig::new(cout, cout, 3)
                .with_padding(1)
                .with_bias(false)
                .init(device),
            conv3: (cin != cout)
                .then(|| ConvConfig::new(cin, cout, 1).with_bias(false).init(device)),
        }
    }

    /// `[N, C_in, D, H, W] → [N, C_out, D, H, W]`. The norms and activations are fused passes
    /// (`ops::instance_norm_act`, `ops::add_leaky_relu`; the composite of burn ops they replace,
    /// `layers::norm::instance_norm` + `leaky_relu`, is their test reference).
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let a = instance_norm_act(self.conv1.forward(x.clone()), EPS, SLOPE);
        let a = instance_norm_act(self.conv2.forward(a), EPS, 1.0);
        let r = match &self.conv3 {
            Some(c) => instance_norm_act(c.forward(x), EPS, 1.0),
            None => x,
        };
        add_leaky_relu(a, r, SLOPE)
    }
}

/// `ConvTranspose3d(k2, s2) → concat([up, skip]) → ResBlock(2·out → out)`
#[derive(Module, Debug)]
pub struct UpBlock {
    pub transp_conv: TranspConv,
    pub conv_block: ResBlock,
}

impl UpBlock {
    pub fn new(cin: usize, cout: usize, device: &Device) -> Self {
        UpBlock {
            transp_conv: TranspConv::new(cin, cout, device),
            conv_block: ResBlock::new(2 * cout, cout, device),
        }
    }

    /// `x [N, C_in, D, H, W]`, `skip [N, C_out, 2D, 2H, 2W]` → `[N, C_out, 2D, 2H, 2W]`
    pub fn forward(&self, x: Tensor<5>, skip: Tensor<5>) -> Tensor<5> {
        self.conv_block
            .forward(Tensor::cat(vec![self.transp_conv.forward(x), skip], 1))
    }
}
