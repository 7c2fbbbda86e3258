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

use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Units in a row's cube.
const REDUCE_UNITS: usize = 256;
/// log2(REDUCE_UNITS), unrolled at compile time (see `depthwise`'s note on Vulkan and loops).
const REDUCE_LEVELS: usize = 8;
/// Units per cube of the element-wise kernels.
const ELEMENT_UNITS: u32 = 256;

/// The sum of every unit's `value` over the cube, returned to every unit. `shared` holds
/// [`REDUCE_UNITS`] values and may be reused as soon as this returns.
#[cube]
fn block_sum(shared: &mut Shared<[f32]>, value: f32, unit: usize) -> f32 {
    shared[unit] = value;
    sync_cube();
    #[unroll]
    for level in 0..REDUCE_LEVELS {
        let stride = comptime!(REDUCE_UNITS >> (level + 1));
        if unit < stride {
            let v = shared[unit] + shared[unit + stride];
            shared[unit] = v;
        }
        sync_cube();
    }
    let total = shared[0];
    // Every unit has read the total before any unit writes the next sum.
    sync_cube();
    total
}

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

/// `LeakyReLU(a + b)`, one unit per element.
#[cube(launch)]
fn add_act_kernel(a: &[f32], b: &[f32], output: &mut [f32], len: usize, slope: f32) {
    let i = ABSOLUTE_POS;
    if i < len {
        let s = a[i] + b[i];
        let mut y = s;
        if s <= 0.0f32 {
            y = s * slope;
        }
        output[i] = y;
    }
}

/// `dy · LeakyReLU'` read from the output `y`, one unit per element.
#[cube(launch)]
fn act_backward_kernel(y: &[f32], dy: &[f32], dx: &mut [f32], len: usize, slope: f32) {
    let i = ABSOLUTE_POS;
    if i < len {
        let mut g = dy[i];
        if y[i] <= 0.0f32 {
            g *= slope;
        }
        dx[i] = g;
    }
}

/// The CPU kernels' rule: LeakyReLU must be invertible for the backward to rebuild x̂.
fn check_slope(slope: f64) {
    assert!(
        slope > 0.0 && slope.is_finite(),
        "leaky relu: the slope must be positive (got {slope})"
    );
}

/// A new contiguous f32 tensor of `shape` on `like`'s device.
fn empty_like(like: &CubeTensor, shape: Shape) -> CubeTensor {
    burn_cubecl::ops::numeric::empty_device_dtype(
        like.client.clone(),
        like.device.clone(),
        shape,
        burn::tensor::DType::F32,
    )
}

fn buffer(t: &CubeTensor) -> BufferArg {
    t.clone().into_buffer_arg()
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

/// The cube count and shape of a one-unit-per-element launch over `len` values.
fn elementwise(client: &CubeTensor, len: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new_1d(ELEMENT_UNITS);
    (
        cubecl::calculate_cube_count_elemwise(&client.client, len, dim),
        dim,
    )
}

/// `LeakyReLU(a + b, slope)`.
pub fn add_leaky_relu(a: CubeTensor, b: CubeTensor, slope: f64) -> CubeTensor {
    check_slope(slope);
    let a = into_contiguous(a);
    let b = into_contiguous(b);
    assert_eq!(
        a.meta.shape(),
        b.meta.shape(),
        "add_leaky_relu: shapes differ"
    );
    let len = a.meta.num_elements();
    let y = empty_like(&a, a.meta.shape().clone());
    let (count, dim) = elementwise(&a, len);
    add_act_kernel::launch(
        &a.client,
        count,
        dim,
        buffer(&a),
        buffer(&b),
        buffer(&y),
        len,
        slope as f32,
    );
    y
}

/// The gradient of [`add_leaky_relu`] (the same for both inputs) from its output and dy.
pub fn add_leaky_relu_backward(y: CubeTensor, dy: CubeTensor, slope: f64) -> CubeTensor {
    check_slope(slope);
    let y = into_contiguous(y);
    let dy = into_contiguous(dy);
    assert_eq!(
        y.meta.shape(),
        dy.meta.shape(),
        "add_leaky_relu backward: output and gradient shapes differ"
    );
    let len = y.meta.num_elements();
    let dx = empty_like(&y, y.meta.shape().clone());
    let (count, dim) = elementwise(&y, len);
    act_backward_kernel::launch(
        &y.client,
        count,
        dim,
        buffer(&y),
        buffer(&dy),
        buffer(&dx),
        len,
        slope as f32,
    );
    dx
}
