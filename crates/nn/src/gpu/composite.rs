//! The GPU path's linear layer as a composition of burn's tensor ops, and the fused norm passes'
//! burn compositions — the peer [`crate::ops::use_burn_ops`] runs in place of repux's kernels
//! ([`super::norm`]). Generic over the backend, so the same code runs plain (inference) and under
//! autodiff (training, differentiated by burn). Every broadcast is an explicit `expand`.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Scalar, TensorMetadata};
use burn::tensor::Shape;

/// `x [rows, in] · weightᵀ + bias`, weight `[out, in]`.
pub(crate) fn linear<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let [rows, _] = x.shape().dims::<2>();
    let [out, _] = weight.shape().dims::<2>();
    let y = B::float_matmul(x, B::float_swap_dims(weight, 0, 1));
    let bias = B::float_expand(
        B::float_reshape(bias, Shape::new([1, out])),
        Shape::new([rows, out]),
    );
    B::float_add(y, bias)
}

/// InstanceNorm (instance statistics, biased variance, no affine) then LeakyReLU(`slope`);
/// slope 1 is the norm alone.
pub(crate) fn instance_norm_act<B: Backend>(
    x: FloatTensor<B>,
    eps: f64,
    slope: f64,
) -> FloatTensor<B> {
    let shape = x.shape();
    let dims: Vec<usize> = shape.iter().copied().collect();
    let rows = dims[0] * dims[1];
    let len: usize = dims[2..].iter().product();
    let full = Shape::new([rows, len]);
    let x = B::float_reshape(x, full.clone());
    let mean = B::float_expand(B::float_mean_dim(x.clone(), 1), full.clone());
    let centred = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), 1);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, Scalar::Float(eps))));
    let y = B::float_mul(centred, B::float_expand(rstd, full));
    let y = if slope == 1.0 {
        y
    } else {
        B::leaky_relu(y, Scalar::Float(slope))
    };
    B::float_reshape(y, shape)
}

/// `LeakyReLU(a + b, slope)`.
pub(crate) fn add_leaky_relu<B: Backend>(
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    slope: f64,
) -> FloatTensor<B> {
    B::leaky_relu(B::float_add(a, b), Scalar::Float(slope))
}
