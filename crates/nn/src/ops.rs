//! The convolutions the networks use, in one place. Every hot convolution (the depthwise large
//! kernel, the dense 3³/2³/1³ convs, the k2 s2 transposed conv) goes through these functions, so
//! the fast CPU kernels (the kernels issue) swap in here without touching any network code.
//! Today they call burn's generic ops, which autodiff differentiates.
//!
//! Shapes: x [N, C, D, H, W]; depthwise weight [C, 1, K, K, K]; dense weight [O, I/g, k, k, k];
//! transposed weight [I, O, 2, 2, 2] (PyTorch's layout).

use burn::tensor::module::{conv3d, conv_transpose3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::Tensor;

/// Depthwise conv, stride 1, 'same' zero padding (K odd).
pub fn depthwise_conv3d(x: Tensor<5>, weight: Tensor<5>, bias: Option<Tensor<1>>) -> Tensor<5> {
    let [c, _, k, _, _] = weight.dims();
    let p = k / 2;
    conv3d(x, weight, bias, ConvOptions::new([1, 1, 1], [p, p, p], [1, 1, 1], c))
}

/// Dense (or grouped) conv with cubic kernel, given stride and padding.
pub fn conv3d_dense(x: Tensor<5>, weight: Tensor<5>, bias: Option<Tensor<1>>, stride: usize, padding: usize, groups: usize) -> Tensor<5> {
    conv3d(x, weight, bias, ConvOptions::new([stride; 3], [padding; 3], [1, 1, 1], groups))
}

/// Transposed conv, kernel 2, stride 2, no bias (the decoder's upsampling).
pub fn conv_transpose3d_k2s2(x: Tensor<5>, weight: Tensor<5>) -> Tensor<5> {
    conv_transpose3d(x, weight, None, ConvTransposeOptions::new([2, 2, 2], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1))
}
