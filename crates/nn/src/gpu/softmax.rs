//! SwinUNETR's window-attention softmax on the GPU as repux's own CubeCL kernels:
//! `P = softmax(S + bias + mask)` in one pass, and a backward that reads only `P` — as the CPU
//! kernel does (`repux_kernels::softmax`).
//!
//! Why not burn's ops: as a composition (two broadcast adds, max, subtract, exp, sum, divide)
//! each step is a pass over the attention tensor, about 1 GB per block at the 48³ stage of a
//! 2 × 96³ step, and burn's autodiff keeps the exponentials as well as the probabilities for the
//! backward. Here the forward writes only `P`, and the training step keeps only `P`.
//!
//! - forward (`window_softmax_kernel`): one cube of [`ROW_UNITS`] units per row (batch, head,
//!   query): the row's maximum, the exponentials and their sum, then the scaling;
//! - backward (`window_softmax_backward_kernel`): per row, `dS = P ⊙ (dP − Σ dP ⊙ P)`; the bias
//!   gradient `Σ_batch dS` is burn's sum over the batch axis.
//!
//! Layouts as on the CPU: S and P `[batch, heads, n, n]`, bias `[heads, n, n]`, mask
//! `[windows, n, n]` (batch entry `b` is window `b % windows`).

use super::reduce::block_reduce;
use super::{buffer, empty_like};
use burn::backend::ops::FloatTensorOps;
use burn::backend::Cube;
use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Units per row's cube: a window row is 343 values (7³ tokens), so 64 units each take a few.
const ROW_UNITS: usize = 64;
/// Cubes along x at most: 65535 is the smallest x extent Vulkan guarantees; rows beyond it go to
/// further y layers.
const MAX_CUBES_X: usize = 65535;

/// The row this cube computes (cubes laid out x-major over y layers).
#[cube]
fn row_index() -> usize {
    CUBE_POS_Y as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize
}

/// `output = softmax(scores + bias (+ mask))` per row. Cube: one row.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn window_softmax_kernel(
    scores: &[f32],
    bias: &[f32],
    mask: &[f32],
    output: &mut [f32],
    rows: usize,
    n: usize,
    heads: usize,
    windows: usize,
    #[comptime] masked: bool,
) {
    let row = row_index();
    // The condition is the same for every unit of the cube, so no unit misses a sync.
    if row < rows {
        let unit = UNIT_POS as usize;
        let query = row % n;
        let batch_head = row / n;
        let head = batch_head % heads;
        let base = row * n;
        let bias_base = (head * n + query) * n;
        let mask_base = ((batch_head / heads) % windows * n + query) * n;
        let mut shared = Shared::<[f32]>::new_slice(ROW_UNITS);

        // Below every logit a softmax meets (a −∞ logit gives 0, an all −∞ row NaN, as in PyTorch).
        let mut m = f32::new(-3.0e38);
        let mut j = unit;
        while j < n {
            let mut v = scores[base + j] + bias[bias_base + j];
            if masked {
                v += mask[mask_base + j];
            }
            if v > m {
                m = v;
            }
            j += ROW_UNITS;
        }
        let row_max = block_reduce(&mut shared, m, unit, ROW_UNITS, true);

        let mut sum = 0.0f32;
        j = unit;
        while j < n {
            let mut v = scores[base + j] + bias[bias_base + j];
            if masked {
                v += mask[mask_base + j];
            }
            let e = f32::exp(v - row_max);
            output[base + j] = e;
            sum += e;
            j += ROW_UNITS;
        }
        let inverse = 1.0f32 / block_reduce(&mut shared, sum, unit, ROW_UNITS, false);

        // Each unit scales the values it wrote.
        j = unit;
        while j < n {
            output[base + j] *= inverse;
            j += ROW_UNITS;
        }
    }
}

/// `ds = p ⊙ (dp − Σ dp ⊙ p)` per row. Cube: one row.
#[cube(launch)]
fn window_softmax_backward_kernel(p: &[f32], dp: &[f32], ds: &mut [f32], rows: usize, n: usize) {
    let row = row_index();
    if row < rows {
        let unit = UNIT_POS as usize;
        let base = row * n;
        let mut shared = Shared::<[f32]>::new_slice(ROW_UNITS);
        let mut dot = 0.0f32;
        let mut j = unit;
        while j < n {
            dot += dp[base + j] * p[base + j];
            j += ROW_UNITS;
        }
        let total = block_reduce(&mut shared, dot, unit, ROW_UNITS, false);
        j = unit;
        while j < n {
            ds[base + j] = p[base + j] * (dp[base + j] - total);
            j += ROW_UNITS;
        }
    }
}

/// The launch grid for one cube per row.
fn row_cubes(rows: usize) -> CubeCount {
    let x = rows.clamp(1, MAX_CUBES_X);
    CubeCount::Static(x as u32, rows.div_ceil(x).max(1) as u32, 1)
}

/// `[batch, heads, n, n]` of the scores.
fn dims(t: &CubeTensor) -> [usize; 4] {
    let d: Vec<usize> = t.meta.shape().iter().copied().collect();
    assert!(
        d.len() == 4 && d[2] == d[3],
        "window softmax: scores {d:?} are not [batch, heads, n, n]"
    );
    [d[0], d[1], d[2], d[3]]
}

/// `softmax(scores + bias (+ mask))` over the last axis (see the module docs for layouts).
pub fn window_softmax(
    scores: CubeTensor,
    bias: CubeTensor,
    mask: Option<CubeTensor>,
) -> CubeTensor {
    let scores = into_contiguous(scores);
    let bias = into_contiguous(bias);
    let [batch, heads, n, _] = dims(&scores);
    assert_eq!(
        bias.meta.num_elements(),
        heads * n * n,
        "window softmax: bias is not [{heads}, {n}, {n}]"
    );
    let mask = mask.map(into_contiguous);
    let windows = match &mask {
        Some(m) => {
            let w = m.meta.shape()[0];
            assert!(
                w > 0 && batch % w == 0 && m.meta.num_elements() == w * n * n,
                "window softmax: mask {:?} does not fit scores [{batch}, {heads}, {n}, {n}]",
                m.meta.shape()
            );
            w
        }
        None => 1,
    };
    let rows = batch * heads * n;
    let output = empty_like(&scores, scores.meta.shape().clone());
    // Without a mask the kernel never reads its mask argument: the bias stands in for it.
    let mask_arg = mask.as_ref().unwrap_or(&bias);
    window_softmax_kernel::launch(
        &scores.client,
        row_cubes(rows),
        CubeDim::new_1d(ROW_UNITS as u32),
        buffer(&scores),
        buffer(&bias),
        buffer(mask_arg),
        buffer(&output),
        rows,
        n,
        heads,
        windows,
        mask.is_some(),
    );
    output
}

/// The gradients of [`window_softmax`] from its output `p` and `dp`: the scores' `dS` and the
/// bias's `Σ_batch dS` (`[heads, n, n]`).
pub fn window_softmax_backward(p: CubeTensor, dp: CubeTensor) -> (CubeTensor, CubeTensor) {
    let p = into_contiguous(p);
    let dp = into_contiguous(dp);
    assert_eq!(
        p.meta.shape(),
        dp.meta.shape(),
        "window softmax backward: output and gradient shapes differ"
    );
    let [batch, heads, n, _] = dims(&p);
    let rows = batch * heads * n;
    let ds = empty_like(&p, p.meta.shape().clone());
    window_softmax_backward_kernel::launch(
        &p.client,
        row_cubes(rows),
        CubeDim::new_1d(ROW_UNITS as u32),
        buffer(&p),
        buffer(&dp),
        buffer(&ds),
        rows,
        n,
    );
    let per_batch = Cube::float_reshape(ds.clone(), Shape::new([batch, heads * n * n]));
    let dbias = Cube::float_reshape(Cube::float_sum_dim(per_batch, 0), Shape::new([heads, n, n]));
    (ds, dbias)
}
