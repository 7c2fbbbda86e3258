//! The GPU path's linear layer and GELU's exact backward as compositions of burn's tensor ops,
//! and the fused norm passes' burn compositions — the peer [`crate::ops::use_burn_ops`] runs in
//! place of repux's kernels ([`super::norm`]). Generic over the backend, so the same code runs plain (inference) and under
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

/// GELU's exact gradient, `dy · (Φ(x) + x · φ(x))` with `Φ(x) = (1 + erf(x/√2)) / 2` and
/// `φ(x) = e^(−x²/2) / √(2π)`. burn's default `gelu_backward`, which the CubeCL backend keeps,
/// is the derivative of GELU's tanh approximation, not of the exact GELU its forward computes.
pub(crate) fn gelu_backward<B: Backend>(x: FloatTensor<B>, dy: FloatTensor<B>) -> FloatTensor<B> {
    let half = Scalar::Float(0.5);
    let z = B::float_mul_scalar(x.clone(), Scalar::Float(std::f64::consts::FRAC_1_SQRT_2));
    let cdf = B::float_mul_scalar(
        B::float_add_scalar(B::float_erf(z), Scalar::Float(1.0)),
        half,
    );
    let square = B::float_mul(x.clone(), x.clone());
    let pdf = B::float_mul_scalar(
        B::float_exp(B::float_mul_scalar(square, Scalar::Float(-0.5))),
        Scalar::Float(1.0 / (2.0 * std::f64::consts::PI).sqrt()),
    );
    B::float_mul(dy, B::float_add(cdf, B::float_mul(x, pdf)))
}
