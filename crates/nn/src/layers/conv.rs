//! Convolution parameter holders with PyTorch's default initialisation
//! (U(±1/√fan_in), fan_in = C_in/groups · k³; for transposed convs, weight dim 1 · k³).

use crate::ops;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

fn uniform<const D: usize>(shape: [usize; D], fan_in: usize, device: &Device) -> Param<Tensor<D>> {
    let b = 1.0 / (fan_in as f64).sqrt();
    Param::from_tensor(Tensor::random(shape, Distribution::Uniform(-b, b), device))
}

/// Depthwise conv `[C, 1, K, K, K]` with bias, stride 1, 'same' padding.
#[derive(Module, Debug)]
pub struct DwConv {
    pub weight: Param<Tensor<5>>,
    pub bias: Param<Tensor<1>>,
}

impl DwConv {
    pub fn new(channels: usize, kernel: usize, device: &Device) -> Self {
        let fan_in = kernel.pow(3);
        DwConv {
            weight: uniform([channels, 1, kernel, kernel, kernel], fan_in, device),
            bias: uniform([channels], fan_in, device),
        }
    }
    pub fn kernel(&self) -> usize {
        self.weight.dims()[2]
    }
    /// `[N, C, D, H, W] → [N, C, D, H, W]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        ops::depthwise_conv3d(x, self.weight.val(), Some(self.bias.val()))
    }
}

/// Dense or grouped conv with a cubic kernel.
#[derive(Module, Debug)]
pub struct Conv {
    pub weight: Param<Tensor<5>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

/// Configuration of a [`Conv`], as PyTorch's `nn.Conv3d` arguments: a cubic `kernel`, stride 1,
/// padding 0, one group and a bias unless changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    /// Default 1.
    pub stride: usize,
    /// Default 0.
    pub padding: usize,
    /// Default 1 (dense); `in_channels` and `out_channels` must be multiples.
    pub groups: usize,
    /// Default true.
    pub bias: bool,
}

impl ConvConfig {
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        ConvConfig {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: 0,
            groups: 1,
            bias: true,
        }
    }
    pub fn with_stride(self, stride: usize) -> Self {
        ConvConfig { stride, ..self }
    }
    pub fn with_padding(self, padding: usize) -> Self {
        ConvConfig { padding, ..self }
    }
    pub fn with_groups(self, groups: usize) -> Self {
        ConvConfig { groups, ..self }
    }
    pub fn with_bias(self, bias: bool) -> Self {
        ConvConfig { bias, ..self }
    }
    /// PyTorch's default initialisation: uniform in ±1/√fan_in for weight and bias.
    pub fn init(&self, device: &Device) -> Conv {
        let (cin, cout, k, g) = (
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.groups,
        );
        let fan_in = cin / g * k.pow(3);
        Conv {
            weight: uniform([cout, cin / g, k, k, k], fan_in, device),
            bias: self.bias.then(|| uniform([cout], fan_in, device)),
            stride: self.stride,
            padding: self.padding,
            groups: g,
        }
    }
}

impl Conv {
    /// `[N, C_in, D, H, W] → [N, C_out, D', H', W']`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        ops::conv3d_dense(
            x,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            self.stride,
            self.padding,
            self.groups,
        )
    }
}

/// Transposed conv k2 s2 without bias, weight `[C_in, C_out, 2, 2, 2]`.
#[derive(Module, Debug)]
pub struct TranspConv {
    pub weight: Param<Tensor<5>>,
}

impl TranspConv {
    pub fn new(cin: usize, cout: usize, device: &Device) -> Self {
        TranspConv {
            weight: uniform([cin, cout, 2, 2, 2], cout * 8, device),
        }
    }
    /// `[N, C_in, D, H, W] → [N, C_out, 2D, 2H, 2W]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        ops::conv_transpose3d_k2s2(x, self.weight.val())
    }
}
