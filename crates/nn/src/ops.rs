//! The convolutions the networks use, behind one burn backend extension, [`ConvBackend`]. Every
//! hot convolution (the depthwise large kernel, the dense 3³/2³/1³/7³ convs, the k2 s2 transposed
//! conv) goes through it, so the fast CPU kernels (the kernels issue) replace the two impls below
//! — `Flex` (inference) and `Autodiff<Flex>` (training, with a custom backward) — without
//! touching any network code. Today both impls call burn's own module ops; the autodiff impl uses
//! the autodiff backend's ops, which carry their own backward.
//!
//! Shapes: x [N, C, D, H, W]; depthwise weight [C, 1, K, K, K]; dense weight [O, I/g, k, k, k];
//! transposed weight [I, O, 2, 2, 2] (PyTorch's layout).

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ops::ModuleOps;
use burn::backend::TensorMetadata;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Dispatch, Flex};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::Tensor;

/// The extension point for repux's convolutions.
#[backend_extension(Autodiff, Flex)]
pub trait ConvBackend: burn::backend::Backend {
    /// Depthwise conv, stride 1, 'same' zero padding (K odd), with bias.
    fn depthwise_conv3d(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Dense or grouped conv with a cubic kernel, without bias.
    fn conv3d(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize, groups: usize) -> FloatTensor<Self>;
    /// Dense or grouped conv with a cubic kernel and a bias.
    fn conv3d_bias(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>, stride: usize, padding: usize, groups: usize) -> FloatTensor<Self>;
    /// Transposed conv, kernel 2, stride 2, no bias.
    fn conv_transpose3d_k2s2(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
}

fn dw_options(weight_dims: &[usize]) -> ConvOptions<3> {
    let p = weight_dims[2] / 2;
    ConvOptions::new([1, 1, 1], [p, p, p], [1, 1, 1], weight_dims[0])
}

fn up_options() -> ConvTransposeOptions<3> {
    ConvTransposeOptions::new([2, 2, 2], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1)
}

/// Burn's own module ops, for any backend `B` (the reference implementation of every method).
macro_rules! impl_with_burn_ops {
    () => {
        fn depthwise_conv3d(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
            let opts = dw_options(&weight.shape().dims::<5>());
            <Self as ModuleOps<Self>>::conv3d(x, weight, Some(bias), opts)
        }
        fn conv3d(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize, groups: usize) -> FloatTensor<Self> {
            <Self as ModuleOps<Self>>::conv3d(x, weight, None, ConvOptions::new([stride; 3], [padding; 3], [1, 1, 1], groups))
        }
        fn conv3d_bias(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>, stride: usize, padding: usize, groups: usize) -> FloatTensor<Self> {
            <Self as ModuleOps<Self>>::conv3d(x, weight, Some(bias), ConvOptions::new([stride; 3], [padding; 3], [1, 1, 1], groups))
        }
        fn conv_transpose3d_k2s2(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
            <Self as ModuleOps<Self>>::conv_transpose3d(x, weight, None, up_options())
        }
    };
}

impl ConvBackend for Flex {
    impl_with_burn_ops!();
}

impl<C: CheckpointStrategy> ConvBackend for Autodiff<Flex, C> {
    impl_with_burn_ops!();
}

/// Depthwise conv, stride 1, 'same' zero padding (K odd).
pub fn depthwise_conv3d(x: Tensor<5>, weight: Tensor<5>, bias: Option<Tensor<1>>) -> Tensor<5> {
    let c = weight.dims()[0];
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c], &weight.device()));
    Tensor::from_dispatch(<Dispatch as ConvBackend>::depthwise_conv3d(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch()))
}

/// Dense (or grouped) conv with cubic kernel, given stride and padding.
pub fn conv3d_dense(x: Tensor<5>, weight: Tensor<5>, bias: Option<Tensor<1>>, stride: usize, padding: usize, groups: usize) -> Tensor<5> {
    let out = match bias {
        Some(b) => <Dispatch as ConvBackend>::conv3d_bias(x.into_dispatch(), weight.into_dispatch(), b.into_dispatch(), stride, padding, groups),
        None => <Dispatch as ConvBackend>::conv3d(x.into_dispatch(), weight.into_dispatch(), stride, padding, groups),
    };
    Tensor::from_dispatch(out)
}

/// Transposed conv, kernel 2, stride 2, no bias (the decoder's upsampling).
pub fn conv_transpose3d_k2s2(x: Tensor<5>, weight: Tensor<5>) -> Tensor<5> {
    Tensor::from_dispatch(<Dispatch as ConvBackend>::conv_transpose3d_k2s2(x.into_dispatch(), weight.into_dispatch()))
}
