//! The UNETR blocks' fused passes on the GPU as repux's own CubeCL kernels: InstanceNorm +
//! LeakyReLU, and add + LeakyReLU, each with a backward that reads only the pass's *output*.
//!
//! Why not burn's ops: as a composition (mean, subtract, square, mean, rsqrt, multiply, leaky
//! ReLU) the InstanceNorm makes five full-size intermediates, and burn's autodiff keeps several
//! of them until the backward. Here the forward writes `y` and one `1/σ` per row, and the
//! backward rebuilds `x̂` from `y` — LeakyReLU with a positive slope is invertible — exactly as
//! the CPU kernels do (`repux_kernels::norm`), so a training step keeps one tensor per pass.
//!
//! - **InstanceNorm + LeakyReLU** (`norm_act_kernel`): one cube per row (sample, channel) of
//!   [`REDUCE_UNITS`] units; the mean, then the biased variance of the centred values (two
//!   passes, not `E[x²] − E[x]²`: f32 sums of a 96³ row would cancel), then the output.
//! - its backward (`norm_act_backward_kernel`): per row, `g = dy · LeakyReLU'(x̂)`,
//!   `dx = rstd · (g − mean(g) − x̂ · mean(g · x̂))`.
//! - **add + LeakyReLU** and its backward `dy · LeakyReLU'(y)`: one unit per element.
//!
//! Tensors are contiguous f32 of any rank, `[N, C, …]` for the norm.

use super::reduce::{block_sum, REDUCE_UNITS};
use super::{buffer, empty_like};
use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Units per cube of the element-wise kernels.
const ELEMENT_UNITS: u32 = 256;

/// `LeakyReLU(x̂)` for x̂ = (x − μ)·rstd, and each row's rstd. Cube x: the row.
#[cube(launch)]
fn norm_act_kernel(
    input: &[f32],
    output: &mut [f32],
    rstd: &mut [f32],
    len: usize,
    eps: f32,
    slope: f32,
) {
    let row = CUBE_POS_X as usize;
    let unit = UNIT_POS as usize;
    let base = row * len;
    let count = f32::cast_from(len);
    let mut shared = Shared::<[f32]>::new_slice(REDUCE_UNITS);

    let mut sum = 0.0f32;
    let mut i = unit;
    while i < len {
        sum += input[base + i];
        i += REDUCE_UNITS;
    }
    let mean = block_sum(&mut shared, sum, unit) / count;

    let mut squares = 0.0f32;
    i = unit;
    while i < len {
        let d = input[base + i] - mean;
        squares += d * d;
        i += REDUCE_UNITS;
    }
    let var = block_sum(&mut shared, squares, unit) / count;
    let r = 1.0f32 / f32::sqrt(var + eps);

    i = unit;
    while i < len {
        let h = (input[base + i] - mean) * r;
        let mut y = h;
        if h <= 0.0f32 {
            y = h * slope;
        }
        output[base + i] = y;
        i += REDUCE_UNITS;
    }
    if unit == 0 {
        rstd[row] = r;
    }
}

/// dx of [`norm_act_kernel`] from its output `y`, the rows' rstd and `dy`. Cube x: the row.
#[cube(launch)]
fn norm_act_backward_kernel(
    y: &[f32],
    dy: &[f32],
    rstd: &[f32],
    dx: &mut [f32],
    len: usize,
    slope: f32,
) {
    let row = CUBE_POS_X as usize;
    let unit = UNIT_POS as usize;
    let base = row * len;
    let count = f32::cast_from(len);
    let inverse = 1.0f32 / slope;
    let mut shared = Shared::<[f32]>::new_slice(REDUCE_UNITS);

    let mut sum_g = 0.0f32;
    let mut sum_gh = 0.0f32;
    let mut i = unit;
    while i < len {
        let v = y[base + i];
        let mut h = v;
        let mut g = dy[base + i];
        if v <= 0.0f32 {
            h = v * inverse;
            g *= slope;
        }
        sum_g += g;
        sum_gh += g * h;
        i += REDUCE_UNITS;
    }
    let mean_g = block_sum(&mut shared, sum_g, unit) / count;
    let mean_gh = block_sum(&mut shared, sum_gh, unit) / count;
    let r = rstd[row];

    i = unit;
    while i < len {
        let v = y[base + i];
        let mut h = v;
        let mut g = dy[base + i];
        if v <= 0.0f32 {
            h = v * inverse;
            g *= slope;
        }
        dx[base + i] = r * (g - mean_g - h * mean_gh);
        i += REDUCE_UNITS;
    }
}

/// One unit per element: `LeakyReLU(a + b)` (`backward = false`), or the gradient
/// `b · LeakyReLU'` read from the output `a` (`backward = true`).
#[cube(launch)]
fn act_kernel(
    a: &[f32],
    b: &[f32],
    output: &mut [f32],
    len: usize,
    slope: f32,
    #[comptime] backward: bool,
) {
    let i = ABSOLUTE_POS;
    if i < len {
        if backward {
            let mut g = b[i];
            if a[i] <= 0.0f32 {
                g *= slope;
            }
            output[i] = g;
        } else {
            let s = a[i] + b[i];
            let mut y = s;
            if s <= 0.0f32 {
                y = s * slope;
            }
            output[i] = y;
        }
    }
}

/// The CPU kernels' rule: LeakyReLU must be invertible for the backward to rebuild x̂.
fn check_slope(slope: f64) {
    assert!(
        slope > 0.0 && slope.is_finite(),
        "leaky relu: the slope must be positive (got {slope})"
    );
}

/// Rows (N·C) and row length of an `[N, C, …]` tensor, checked against the launch limits.
fn rows(x: &CubeTensor) -> (usize, usize) {
    let dims: Vec<usize> = x.meta.shape().iter().copied().collect();
    assert!(
        dims.len() >= 3,
        "instance norm: input {dims:?} is not [N, C, …]"
    );
    let rows = dims[0] * dims[1];
    // One cube per row along x: 65535 is the smallest x extent Vulkan guarantees.
    assert!(
        rows <= 65535,
        "instance norm on the GPU: {rows} sample×channel rows, above the supported 65535"
    );
    (rows, dims[2..].iter().product())
}

/// `LeakyReLU(InstanceNorm(x), slope)` and each row's `1/√(σ² + eps)` `[N·C]`.
pub fn instance_norm_act(x: CubeTensor, eps: f64, slope: f64) -> (CubeTensor, CubeTensor) {
    check_slope(slope);
    let x = into_contiguous(x);
    let (rows, len) = rows(&x);
    let y = empty_like(&x, x.meta.shape().clone());
    let rstd = empty_like(&x, Shape::new([rows]));
    norm_act_kernel::launch(
        &x.client,
        CubeCount::Static(rows as u32, 1, 1),
        CubeDim::new_1d(REDUCE_UNITS as u32),
        buffer(&x),
        buffer(&y),
        buffer(&rstd),
        len,
        eps as f32,
        slope as f32,
    );
    (y, rstd)
}

/// dx of [`instance_norm_act`] from its output, its rstd and dy.
pub fn instance_norm_act_backward(
    y: CubeTensor,
    rstd: CubeTensor,
    dy: CubeTensor,
    slope: f64,
) -> CubeTensor {
    check_slope(slope);
    let y = into_contiguous(y);
    let dy = into_contiguous(dy);
    assert_eq!(
        y.meta.shape(),
        dy.meta.shape(),
        "instance norm backward: output and gradient shapes differ"
    );
    let (rows, len) = rows(&y);
    let dx = empty_like(&y, y.meta.shape().clone());
    norm_act_backward_kernel::launch(
        &y.client,
        CubeCount::Static(rows as u32, 1, 1),
        CubeDim::new_1d(REDUCE_UNITS as u32),
        buffer(&y),
        buffer(&dy),
        buffer(&rstd),
        buffer(&dx),
        len,
        slope as f32,
    );
    dx
}

/// [`act_kernel`] over two equal-shape tensors, one unit per element.
fn launch_act(a: CubeTensor, b: CubeTensor, slope: f64, backward: bool) -> CubeTensor {
    check_slope(slope);
    let a = into_contiguous(a);
    let b = into_contiguous(b);
    assert_eq!(
        a.meta.shape(),
        b.meta.shape(),
        "add_leaky_relu{}: shapes differ",
        if backward { " backward" } else { "" }
    );
    let len = a.meta.num_elements();
    let out = empty_like(&a, a.meta.shape().clone());
    let dim = CubeDim::new_1d(ELEMENT_UNITS);
    act_kernel::launch(
        &a.client,
        cubecl::calculate_cube_count_elemwise(&a.client, len, dim),
        dim,
        buffer(&a),
        buffer(&b),
        buffer(&out),
        len,
        slope as f32,
        backward,
    );
    out
}

/// `LeakyReLU(a + b, slope)`.
pub fn add_leaky_relu(a: CubeTensor, b: CubeTensor, slope: f64) -> CubeTensor {
    launch_act(a, b, slope, false)
}

/// The gradient of [`add_leaky_relu`] (the same for both inputs) from its output and dy.
pub fn add_leaky_relu_backward(y: CubeTensor, dy: CubeTensor, slope: f64) -> CubeTensor {
    launch_act(y, dy, slope, true)
}
