//! Channels-first LayerNorm (per voxel, over channels), channels-last LayerNorm (PyTorch's
//! `nn.LayerNorm(C)` on `[…, C]`) and InstanceNorm without affine.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

/// LayerNorm over the channel axis of `[N, C, D, H, W]`: per voxel, mean and biased variance
/// over channels, then a per-channel affine (weight 1, bias 0 at init). ConvNeXt/3D UX-Net's
/// `LayerNorm(data_format="channels_first")`.
#[derive(Module, Debug)]
pub struct LayerNormCf {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub eps: f64,
}

impl LayerNormCf {
    pub fn new(channels: usize, eps: f64, device: &Device) -> Self {
        LayerNormCf {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            eps,
        }
    }

    /// `[N, C, D, H, W] → [N, C, D, H, W]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let c = self.weight.dims()[0];
        layer_norm_channels(x, self.eps) * self.weight.val().reshape([1, c, 1, 1, 1])
            + self.bias.val().reshape([1, c, 1, 1, 1])
    }
}

/// InstanceNorm3d without affine, always with instance statistics (MONAI's UNETR blocks):
/// per sample and channel, mean and biased variance over the voxels. As burn ops: the networks
/// run the fused `ops::instance_norm_act`, and this is its test reference.
pub fn instance_norm(x: Tensor<5>, eps: f64) -> Tensor<5> {
    let [n, c, d, h, w] = x.dims();
    let flat = x.reshape([n, c, d * h * w]);
    let (var, mean) = flat.clone().var_mean_bias(2);
    ((flat - mean) / (var + eps).sqrt()).reshape([n, c, d, h, w])
}

/// PyTorch's `nn.LayerNorm(C)` on the last axis of `[…, C]`: mean and biased variance over C,
/// then a per-channel affine (weight 1, bias 0 at init).
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(channels: usize, eps: f64, device: &Device) -> Self {
        LayerNorm {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            eps,
        }
    }

    /// `[…, C] → […, C]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm_last(x, self.eps) * self.weight.val().unsqueeze::<D>()
            + self.bias.val().unsqueeze::<D>()
    }
}

/// LayerNorm over the last axis without affine (`F.layer_norm(x, [C])`).
pub fn layer_norm_last<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    let (var, mean) = x.clone().var_mean_bias(D - 1);
    (x - mean) / (var + eps).sqrt()
}

/// LayerNorm over the channel axis of `[N, C, D, H, W]` without affine ([`LayerNormCf`]'s
/// normalisation; MONAI SwinUNETR's `proj_out(normalize=True)`).
pub fn layer_norm_channels(x: Tensor<5>, eps: f64) -> Tensor<5> {
    let (var, mean) = x.clone().var_mean_bias(1);
    (x - mean) / (var + eps).sqrt()
}
