//! The depthwise large-kernel conv (stride 1, 'same' zero padding, K odd) on the GPU as repux's
//! own CubeCL kernels: forward, dx, dw and db.
//!
//! Why not burn's `conv3d` with `groups = C`: on CubeCL backends a grouped conv falls back to a
//! one-thread-per-output direct kernel that re-reads every input value K³ times from global
//! memory — the same trap as burn's CPU op.
//!
//! - **forward / dx** (`tile_kernel`): one cube per (sample, channel, 16×16 output tile in H×W,
//!   [`DEPTHS`] output depths). Each input depth plane the tile needs — (16 + K − 1)² values —
//!   is loaded once into shared memory and feeds every output depth it reaches, so a value read
//!   from global memory is used up to K²·[`DEPTHS`] times. dx is the same correlation of dy with
//!   the kernel flipped along all three axes (a comptime switch), without bias.
//! - **dw** (`dw_kernel`): one cube per (channel, kz, ky); each unit sums its share of the
//!   positions into K registers (one per kx), then the cube reduces them in shared memory.
//! - **db** (`db_kernel`): one cube per channel, a block reduction of dy.
//!
//! Tensors are contiguous f32: x/dy/y `[N, C, D, H, W]`, weight `[C, 1, K, K, K]`, bias `[C]`.

use super::reduce::{block_sum, REDUCE_UNITS};
use super::{buffer, empty_like};
use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Output tile edge in H and W (one unit per output column of the tile).
const TILE: usize = 16;
/// Output depths one unit accumulates.
const DEPTHS: usize = 4;

/// Forward (`flip = false`, with bias) or dx (`flip = true`, bias ignored) of the depthwise conv.
/// Cube (x: tile index in H×W, y: depth block, z: sample·C + channel); units 16×16.
#[cube(launch)]
// `saturating_sub` is not in CubeCL's kernel language; the comparisons are.
#[allow(clippy::too_many_arguments, clippy::implicit_saturating_sub)]
fn tile_kernel(
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    output: &mut [f32],
    channels: usize,
    depth: usize,
    height: usize,
    width: usize,
    tiles_w: usize,
    #[comptime] k: usize,
    #[comptime] flip: bool,
) {
    let span = comptime!(TILE + k - 1);
    let pad = k / 2;
    let mut plane = Shared::<[f32]>::new_slice(comptime!(span * span));

    let nc = CUBE_POS_Z as usize;
    let channel = nc % channels;
    let tile = CUBE_POS_X as usize;
    let h0 = (tile / tiles_w) * TILE;
    let w0 = (tile % tiles_w) * TILE;
    let d0 = CUBE_POS_Y as usize * DEPTHS;
    let ty = UNIT_POS_Y as usize;
    let tx = UNIT_POS_X as usize;
    let unit = ty * TILE + tx;

    let plane_len = height * width;
    let volume_base = nc * depth * plane_len;
    let w_base = channel * k * k * k;

    // The kernel taps whose input rows and columns lie inside the volume (the others read the
    // zero padding): a unit whose output lies outside computes nothing. On the deep stages' small
    // volumes (a 16×16 tile over 2×2 outputs) this skips almost all of the work.
    let oh = h0 + ty;
    let ow = w0 + tx;
    let active = oh < height && ow < width;
    let ky_lo = if oh < pad { pad - oh } else { 0usize };
    let kx_lo = if ow < pad { pad - ow } else { 0usize };
    let mut ky_hi = ky_lo;
    let mut kx_hi = kx_lo;
    if active {
        ky_hi = height + pad - oh;
        kx_hi = width + pad - ow;
        if ky_hi > k {
            ky_hi = k;
        }
        if kx_hi > k {
            kx_hi = k;
        }
    }

    let mut acc = Array::<f32>::new(DEPTHS);
    #[unroll]
    for j in 0..DEPTHS {
        acc[j] = 0.0f32;
    }

    // Input planes d0 − pad ..= d0 + DEPTHS − 1 + pad, shifted by +pad to stay unsigned.
    for z_shift in 0..DEPTHS + k - 1 {
        let zi_shift = d0 + z_shift;
        let z_in = zi_shift >= pad && zi_shift - pad < depth;
        let mut idx = unit;
        while idx < span * span {
            let r = idx / span;
            let col = idx % span;
            let hi_shift = h0 + r;
            let wi_shift = w0 + col;
            let inside = z_in
                && hi_shift >= pad
                && hi_shift - pad < height
                && wi_shift >= pad
                && wi_shift - pad < width;
            let mut v = 0.0f32;
            if inside {
                v = input[volume_base
                    + (zi_shift - pad) * plane_len
                    + (hi_shift - pad) * width
                    + (wi_shift - pad)];
            }
            plane[idx] = v;
            idx += TILE * TILE;
        }
        sync_cube();
        if z_in {
            #[unroll]
            for j in 0..DEPTHS {
                // Output depth d0 + j reads this plane at kernel depth z_shift − j.
                if z_shift >= j && z_shift - j < k {
                    // The K×K kernel plane at depth kz against the tile's input plane.
                    let kz = z_shift - j;
                    let mut sum = 0.0f32;
                    for ky in ky_lo..ky_hi {
                        let row = (ty + ky) * span + tx;
                        for kx in kx_lo..kx_hi {
                            let wi = if flip {
                                w_base + ((k - 1 - kz) * k + (k - 1 - ky)) * k + (k - 1 - kx)
                            } else {
                                w_base + (kz * k + ky) * k + kx
                            };
                            sum += plane[row + kx] * weight[wi];
                        }
                    }
                    acc[j] += sum;
                }
            }
        }
        sync_cube();
    }

    if active {
        let mut b = 0.0f32;
        if !flip {
            b = bias[channel];
        }
        #[unroll]
        for j in 0..DEPTHS {
            let od = d0 + j;
            if od < depth {
                output[volume_base + od * plane_len + oh * width + ow] = acc[j] + b;
            }
        }
    }
}

/// dw: cube (x: kz·K + ky, y: channel), `units` (a power of two, 2^`levels`) units over all
/// positions. The K column sums are reduced together — one barrier per tree level, not per
/// column: barriers are what software drivers (lavapipe) pay most for.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn dw_kernel(
    input: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    batch: usize,
    channels: usize,
    depth: usize,
    height: usize,
    width: usize,
    #[comptime] k: usize,
    #[comptime] units: usize,
    #[comptime] levels: usize,
) {
    let pad = k / 2;
    let kz = CUBE_POS_X as usize / k;
    let ky = CUBE_POS_X as usize % k;
    let channel = CUBE_POS_Y as usize;
    let unit = UNIT_POS as usize;
    let plane_len = height * width;
    let positions = batch * depth * plane_len;

    let mut partial = Array::<f32>::new(k);
    #[unroll]
    for kx in 0..k {
        partial[kx] = 0.0f32;
    }
    let mut pos = unit;
    while pos < positions {
        let n = pos / (depth * plane_len);
        let rest = pos % (depth * plane_len);
        let od = rest / plane_len;
        let oh = (rest % plane_len) / width;
        let ow = rest % width;
        let zi_shift = od + kz;
        let hi_shift = oh + ky;
        if zi_shift >= pad && zi_shift - pad < depth && hi_shift >= pad && hi_shift - pad < height {
            let base = (n * channels + channel) * depth * plane_len;
            let g = dy[base + rest];
            let row = base + (zi_shift - pad) * plane_len + (hi_shift - pad) * width;
            #[unroll]
            for kx in 0..k {
                let wi_shift = ow + kx;
                if wi_shift >= pad && wi_shift - pad < width {
                    partial[kx] += g * input[row + wi_shift - pad];
                }
            }
        }
        pos += units;
    }

    // The K columns (one per kx) reduced together over the cube: column kx at kx·units.
    let mut shared = Shared::<[f32]>::new_slice(comptime!(k * units));
    #[unroll]
    for kx in 0..k {
        shared[kx * units + unit] = partial[kx];
    }
    sync_cube();
    #[unroll]
    for level in 0..levels {
        let stride = comptime!(units >> (level + 1));
        if unit < stride {
            for kx in 0..k {
                let at = kx * units + unit;
                let v = shared[at] + shared[at + stride];
                shared[at] = v;
            }
        }
        sync_cube();
    }
    if unit < k {
        dw[channel * k * k * k + (kz * k + ky) * k + unit] = shared[unit * units];
    }
}

/// db: one cube per channel, `REDUCE_UNITS` units.
#[cube(launch)]
fn db_kernel(dy: &[f32], db: &mut [f32], batch: usize, channels: usize, volume: usize) {
    let channel = CUBE_POS_X as usize;
    let unit = UNIT_POS as usize;
    let mut sum = 0.0f32;
    for n in 0..batch {
        let base = (n * channels + channel) * volume;
        let mut i = unit;
        while i < volume {
            sum += dy[base + i];
            i += REDUCE_UNITS;
        }
    }
    let mut shared = Shared::<[f32]>::new_slice(REDUCE_UNITS);
    let total = block_sum(&mut shared, sum, unit);
    if unit == 0 {
        db[channel] = total;
    }
}

/// `[N, C, D, H, W]` and K of a depthwise conv, checked.
fn dims(x: &CubeTensor, weight: &CubeTensor) -> ([usize; 5], usize) {
    let xd: [usize; 5] = x.meta.shape().dims();
    let wd: [usize; 5] = weight.meta.shape().dims();
    assert!(
        wd[0] == xd[1] && wd[1] == 1 && wd[2] == wd[3] && wd[3] == wd[4] && wd[2] % 2 == 1,
        "depthwise conv: weight {wd:?} does not fit input {xd:?} (needs [C, 1, K, K, K], K odd)"
    );
    (xd, wd[2])
}

/// The tile kernel over `input` (forward with bias, or dx with the flipped kernel).
fn launch_tile(input: CubeTensor, weight: CubeTensor, bias: Option<CubeTensor>) -> CubeTensor {
    let input = into_contiguous(input);
    let weight = into_contiguous(weight);
    let ([n, c, d, h, w], k) = dims(&input, &weight);
    // The tile's input plane must fit wgpu's default 16 KiB of workgroup storage.
    assert!(
        (TILE + k - 1).pow(2) * 4 <= 16384,
        "depthwise conv on the GPU: kernel size {k} above the supported 49"
    );
    let flip = bias.is_none();
    // dx passes the weight again as a placeholder bias; the kernel never reads it.
    let bias = bias.map(into_contiguous).unwrap_or_else(|| weight.clone());
    let out = empty_like(&input, Shape::new([n, c, d, h, w]));
    let tiles_w = w.div_ceil(TILE);
    let count = CubeCount::Static(
        (h.div_ceil(TILE) * tiles_w) as u32,
        d.div_ceil(DEPTHS) as u32,
        (n * c) as u32,
    );
    tile_kernel::launch(
        &input.client,
        count,
        CubeDim::new_2d(TILE as u32, TILE as u32),
        buffer(&input),
        buffer(&weight),
        buffer(&bias),
        buffer(&out),
        c,
        d,
        h,
        w,
        tiles_w,
        k,
        flip,
    );
    out
}

/// `y = depthwise(x, weight) + bias`.
pub fn forward(x: CubeTensor, weight: CubeTensor, bias: CubeTensor) -> CubeTensor {
    launch_tile(x, weight, Some(bias))
}

/// `dx`: dy correlated with the flipped kernel.
pub fn backward_input(dy: CubeTensor, weight: CubeTensor) -> CubeTensor {
    launch_tile(dy, weight, None)
}

/// `dw` `[C, 1, K, K, K]` from the input and dy.
pub fn backward_weight(x: CubeTensor, dy: CubeTensor, k: usize) -> CubeTensor {
    let x = into_contiguous(x);
    let dy = into_contiguous(dy);
    let [n, c, d, h, w]: [usize; 5] = x.meta.shape().dims();
    let dw = empty_like(&x, Shape::new([c, 1, k, k, k]));
    // Units: the largest power of two ≤ 128 whose K columns fit 16 KiB of shared memory (wgpu's
    // default workgroup storage limit), and at least K so K units can write the K sums.
    let mut levels = 7;
    while levels > 5 && (k << levels) * 4 > 16384 {
        levels -= 1;
    }
    let units = 1usize << levels;
    assert!(
        k <= units && k * units * 4 <= 16384,
        "depthwise dw on the GPU: kernel size {k} above the supported 63"
    );
    dw_kernel::launch(
        &x.client,
        CubeCount::Static((k * k) as u32, c as u32, 1),
        CubeDim::new_1d(units as u32),
        buffer(&x),
        buffer(&dy),
        buffer(&dw),
        n,
        c,
        d,
        h,
        w,
        k,
        units,
        levels,
    );
    dw
}

/// `db` `[C]`: dy summed over samples and positions.
pub fn backward_bias(dy: CubeTensor) -> CubeTensor {
    let dy = into_contiguous(dy);
    let [n, c, d, h, w]: [usize; 5] = dy.meta.shape().dims();
    let db = empty_like(&dy, Shape::new([c]));
    db_kernel::launch(
        &dy.client,
        CubeCount::Static(c as u32, 1, 1),
        CubeDim::new_1d(REDUCE_UNITS as u32),
        buffer(&dy),
        buffer(&db),
        n,
        c,
        d * h * w,
    );
    db
}
