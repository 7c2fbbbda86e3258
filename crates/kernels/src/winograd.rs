//! Stride-1 "same" 3³ conv3d (padding 1, one group) by Winograd's minimal filtering F(2³, 3³):
//! 8 outputs (a 2×2×2 tile) from a 4×4×4 input patch with 64 multiplications per (in, out)
//! channel pair instead of 216 — the 3³ convs' multiply count falls 3.375×.
//!
//! With Lavin & Gray's matrices (1-D, correlation as PyTorch defines conv):
//! `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`, `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]`,
//! `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`, and `y = Aᵀ[(G g) ⊙ (Bᵀ d)]` applied along each of the three
//! axes. Per tile the channel mixing becomes 64 independent matrix products, one per transform
//! point ξ: `M_ξ [Cout × tiles] = U_ξ [Cout × Cin] · V_ξ [Cin × tiles]`.
//!
//! Work is cut into blocks of whole tile rows (a tile row: fixed sample, tile depth, tile
//! height, every tile along W), so that a block's transformed input `V` (64 × Cin × tiles) and
//! products `M` stay within [`set_block_budget`]'s floats (default 1 Mi floats, 4 MiB); blocks
//! run in parallel, each with its own scratch, and write disjoint output rows. The transforms
//! run over whole tile rows at a time (even/odd de-interleaved input rows), so they vectorise.
//!
//! dx is the same conv on dY with the weight transposed over channels and its taps reversed.
//! Rounding: F(2,3) adds about one ulp-scale error per transform stage; the property tests bound
//! the relative error against the f64 reference at 1e-4.

use crate::dense::{matmul_with, ConvShape, SharedOut};
use crate::simd::{isa, isa_dispatch};
use gemm::Parallelism;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Floats of one block's transformed input (or products), the block size's cap.
static BLOCK_BUDGET: AtomicUsize = AtomicUsize::new(1 << 20);

/// Sets the block budget in floats (≥ one tile row is always taken). Results do not depend on
/// it; tests use small budgets so that block edges are exercised.
pub fn set_block_budget(floats: usize) {
    BLOCK_BUDGET.store(floats.max(1), Ordering::Relaxed);
}

/// Whether the geometry suits this path: k 3, stride 1, padding 1, one group.
pub fn applies(s: &ConvShape) -> bool {
    s.k == 3 && s.stride == 1 && s.pad == 1 && s.groups == 1
}

/// Whether `dense` routes the conv here: the geometry applies, both channel counts are at
/// least 32 (below that the 64 small GEMMs per block and the transforms cost more than they
/// save: the tiny preset's forward at the demo's 2 × 32×16×16 took 0.055 s with the threshold
/// at 8 channels and 0.033–0.048 s at 32, `repux bench model --model-config tiny --patch
/// 32,16,16`), and the batch holds at least [`MIN_VOXELS`] output voxels: the weight transform
/// costs about as much per (in, out) channel pair as a few hundred voxels of the conv, so the
/// deep, small stages (8³ and below at the paper's 96³ … 64³ inputs, wide channels) stay direct.
pub fn preferred(s: &ConvShape) -> bool {
    applies(s) && s.cin.min(s.cout) >= 32 && s.n * s.d * s.h * s.w >= MIN_VOXELS
}

/// Output voxels (over the batch) from which Winograd is preferred.
pub const MIN_VOXELS: usize = 4096;

const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];

/// `U[ξ][o][i] = (G ⊗ G ⊗ G) g_{o,i}` for the 3³ kernel `g(o, i, tap)` (tap = (a·3 + b)·3 + c).
fn transform_weight(c_out: usize, c_in: usize, g: impl Fn(usize, usize, usize) -> f32 + Sync) -> Vec<f32> {
    let mut u = vec![0f32; 64 * c_out * c_in];
    let per = c_out * c_in;
    let vals: Vec<[f32; 64]> = (0..per)
        .into_par_iter()
        .map(|oi| {
            let (o, i) = (oi / c_in, oi % c_in);
            let k: [f64; 27] = std::array::from_fn(|t| g(o, i, t) as f64);
            // Along c, then b, then a.
            let mut t1 = [0f64; 36]; // [a 3][b 3][γ 4]
            for ab in 0..9 {
                for (gm, row) in G.iter().enumerate() {
                    t1[ab * 4 + gm] = (0..3).map(|c| row[c] * k[ab * 3 + c]).sum();
                }
            }
            let mut t2 = [0f64; 48]; // [a 3][β 4][γ 4]
            for a in 0..3 {
                for (bt, row) in G.iter().enumerate() {
                    for gm in 0..4 {
                        t2[(a * 4 + bt) * 4 + gm] = (0..3).map(|b| row[b] * t1[(a * 3 + b) * 4 + gm]).sum();
                    }
                }
            }
            let mut out = [0f32; 64];
            for (al, row) in G.iter().enumerate() {
                for bg in 0..16 {
                    out[al * 16 + bg] = (0..3).map(|a| row[a] * t2[a * 16 + bg]).sum::<f64>() as f32;
                }
            }
            out
        })
        .collect();
    for (oi, v) in vals.iter().enumerate() {
        for (xi, &val) in v.iter().enumerate() {
            u[xi * per + oi] = val;
        }
    }
    u
}

/// Volume geometry shared by the transforms.
#[derive(Clone, Copy)]
struct Geo {
    d: usize,
    h: usize,
    w: usize,
    /// Tiles along D, H, W.
    ntz: usize,
    nty: usize,
    ntx: usize,
}

/// `Bᵀ (a0, a1, a2, a3)` element-wise over equal-length rows, into four outputs.
#[inline(always)]
fn bt4(a: [&[f32]; 4], out: [&mut [f32]; 4]) {
    let [o0, o1, o2, o3] = out;
    let n = o0.len();
    let (a0, a1, a2, a3) = (&a[0][..n], &a[1][..n], &a[2][..n], &a[3][..n]);
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for t in 0..n {
        o0[t] = a0[t] - a2[t];
        o1[t] = a1[t] + a2[t];
        o2[t] = a2[t] - a1[t];
        o3[t] = a1[t] - a3[t];
    }
}

/// `Aᵀ (m0, m1, m2, m3)` element-wise, into two outputs.
#[inline(always)]
fn at4(m: [&[f32]; 4], out: [&mut [f32]; 2]) {
    let [o0, o1] = out;
    let n = o0.len();
    let (m0, m1, m2, m3) = (&m[0][..n], &m[1][..n], &m[2][..n], &m[3][..n]);
    let o1 = &mut o1[..n];
    for t in 0..n {
        o0[t] = m0[t] + m1[t] + m2[t];
        o1[t] = m1[t] - m2[t] - m3[t];
    }
}

/// Four distinct rows of length `n` of `buf` (rows indexed in units of `n`) as `&mut`.
fn rows4(buf: &mut [f32], n: usize, idx: [usize; 4]) -> [&mut [f32]; 4] {
    debug_assert!(idx.iter().enumerate().all(|(i, a)| idx[i + 1..].iter().all(|b| a != b)));
    let p = buf.as_mut_ptr();
    let len = buf.len();
    // SAFETY: the four row indices are distinct (callers pass distinct ones), so the slices are
    // disjoint, and each lies inside `buf` (checked).
    idx.map(|r| {
        assert!((r + 1) * n <= len);
        unsafe { std::slice::from_raw_parts_mut(p.add(r * n), n) }
    })
}

/// Scratch of one input transform (three 64-row stages over a tile row, plus the even/odd
/// input row halves).
struct InScratch {
    a: Vec<f32>,
    b: Vec<f32>,
    ev: Vec<f32>,
    od: Vec<f32>,
    row: Vec<f32>,
}

impl InScratch {
    fn new(g: &Geo) -> InScratch {
        InScratch { a: vec![0.0; 64 * g.ntx], b: vec![0.0; 64 * g.ntx], ev: vec![0.0; g.ntx + 1], od: vec![0.0; g.ntx + 1], row: vec![0.0; g.w] }
    }
}

/// `Bᵀ d B` (three axes) for every tile of tile row (tz, ty) of one channel `xc` (D·H·W);
/// transform point ξ of tile t lands at `v[ξ·stride + t]`.
#[inline(always)]
fn input_row_impl(g: &Geo, xc: &[f32], tz: usize, ty: usize, reuse: bool, s: &mut InScratch, v: &mut [f32], stride: usize) {
    let n = g.ntx;
    // x axis: rows (zz, yy) → a[(zz·4 + yy)·4 + cx]. With `reuse`, `s.a` holds tile row
    // (tz, ty − 1) of the same channel, whose input rows yy = 2, 3 are this one's yy = 0, 1.
    for zz in 0..4 {
        if reuse {
            s.a.copy_within((zz * 16 + 8) * n..(zz * 16 + 16) * n, zz * 16 * n);
        }
        for yy in if reuse { 2..4 } else { 0..4 } {
            let (z, y) = ((2 * tz + zz) as isize - 1, (2 * ty + yy) as isize - 1);
            let r = (zz * 4 + yy) * 4;
            if z < 0 || z >= g.d as isize || y < 0 || y >= g.h as isize {
                s.a[r * n..(r + 4) * n].fill(0.0);
                continue;
            }
            let row = &xc[(z as usize * g.h + y as usize) * g.w..][..g.w];
            // Padded row xp[i] = row[i − 1]; ev[j] = xp[2j] = row[2j − 1], od[j] = xp[2j + 1]
            // = row[2j]; zero past the row (n + 1 entries each, W ≤ 2n).
            s.ev.fill(0.0);
            s.od.fill(0.0);
            let pairs = row.chunks_exact(2);
            let tail = pairs.remainder();
            for ((pair, o), e) in pairs.zip(s.od.iter_mut()).zip(s.ev[1..].iter_mut()) {
                *o = pair[0];
                *e = pair[1];
            }
            if let [last] = tail {
                s.od[g.w / 2] = *last;
            }
            let [o0, o1, o2, o3] = rows4(&mut s.a, n, [r, r + 1, r + 2, r + 3]);
            let (ev0, ev1, od0, od1) = (&s.ev[..n], &s.ev[1..=n], &s.od[..n], &s.od[1..=n]);
            for t in 0..n {
                o0[t] = ev0[t] - ev1[t];
                o1[t] = od0[t] + ev1[t];
                o2[t] = ev1[t] - od0[t];
                o3[t] = od0[t] - od1[t];
            }
        }
    }
    // y axis: a[(zz, yy, cx)] → b[(zz, cy, cx)].
    for zz in 0..4 {
        for cx in 0..4 {
            let src = |yy: usize| ((zz * 4 + yy) * 4 + cx) * n;
            let a = [&s.a[src(0)..][..n], &s.a[src(1)..][..n], &s.a[src(2)..][..n], &s.a[src(3)..][..n]];
            let dst = |cy: usize| (zz * 4 + cy) * 4 + cx;
            bt4(a, rows4(&mut s.b, n, [dst(0), dst(1), dst(2), dst(3)]));
        }
    }
    // z axis: b[(zz, cy, cx)] → v[ξ = (cz, cy, cx)].
    for cyx in 0..16 {
        let src = |zz: usize| (zz * 16 + cyx) * n;
        let b = [&s.b[src(0)..][..n], &s.b[src(1)..][..n], &s.b[src(2)..][..n], &s.b[src(3)..][..n]];
        for cz in 0..4 {
            let xi = cz * 16 + cyx;
            let out = &mut v[xi * stride..][..n];
            match cz {
                0 => out.iter_mut().enumerate().for_each(|(t, o)| *o = b[0][t] - b[2][t]),
                1 => out.iter_mut().enumerate().for_each(|(t, o)| *o = b[1][t] + b[2][t]),
                2 => out.iter_mut().enumerate().for_each(|(t, o)| *o = b[2][t] - b[1][t]),
                _ => out.iter_mut().enumerate().for_each(|(t, o)| *o = b[1][t] - b[3][t]),
            }
        }
    }
}

/// `Aᵀ M A` (three axes) for tile row (tz, ty) of one output channel: transform point ξ of
/// tile t is `m[ξ·stride + t]`; writes the (up to) 2×2 output rows, plus `bias`, of the output
/// channel starting at `base` (D·H·W floats) of `out`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn output_row_impl(g: &Geo, m: &[f32], stride: usize, tz: usize, ty: usize, bias: f32, s: &mut InScratch, out: SharedOut, base: usize) {
    let n = g.ntx;
    // z axis: m[(cz, cy, cx)] → a[(oz, cy, cx)] (oz < 2).
    for cyx in 0..16 {
        let src = |cz: usize| &m[(cz * 16 + cyx) * stride..][..n];
        let [o0, o1, _, _] = rows4(&mut s.a, n, [cyx, 16 + cyx, 32 + cyx, 48 + cyx]);
        at4([src(0), src(1), src(2), src(3)], [o0, o1]);
    }
    // y axis: a[(oz, cy, cx)] → b[(oz, oy, cx)].
    for oz in 0..2 {
        for cx in 0..4 {
            let src = |cy: usize| (oz * 16 + cy * 4 + cx) * n;
            let a = [&s.a[src(0)..][..n], &s.a[src(1)..][..n], &s.a[src(2)..][..n], &s.a[src(3)..][..n]];
            let [o0, o1, _, _] = rows4(&mut s.b, n, [(oz * 2) * 4 + cx, (oz * 2 + 1) * 4 + cx, 32 + oz * 8 + cx, 36 + oz * 8 + cx]);
            at4(a, [o0, o1]);
        }
    }
    // x axis: b[(oz, oy, cx)] → output row (2tz + oz, 2ty + oy), columns 2t and 2t + 1.
    for oz in 0..2 {
        for oy in 0..2 {
            let (z, y) = (2 * tz + oz, 2 * ty + oy);
            if z >= g.d || y >= g.h {
                continue;
            }
            let r = (oz * 2 + oy) * 4 * n;
            let (b0, b1, b2, b3) = (&s.b[r..][..n], &s.b[r + n..][..n], &s.b[r + 2 * n..][..n], &s.b[r + 3 * n..][..n]);
            let (ev, od) = (&mut s.ev[..n], &mut s.od[..n]);
            for t in 0..n {
                ev[t] = b0[t] + b1[t] + b2[t] + bias;
                od[t] = b1[t] - b2[t] - b3[t] + bias;
            }
            let row = &mut s.row[..g.w];
            let mut pairs = row.chunks_exact_mut(2);
            for ((pair, e), o) in (&mut pairs).zip(ev.iter()).zip(od.iter()) {
                pair[0] = *e;
                pair[1] = *o;
            }
            if let [last] = pairs.into_remainder() {
                *last = ev[g.w / 2];
            }
            // SAFETY: each (tile row, output channel) writes its own output rows
            // (2tz + oz, 2ty + oy) of its channel, and tile rows are split among blocks, so
            // concurrent writes never overlap; `write` checks the bound.
            unsafe { out.write(base + (z * g.h + y) * g.w, row) };
        }
    }
}

isa_dispatch!(input_row => input_row_impl(g: &Geo, xc: &[f32], tz: usize, ty: usize, reuse: bool, s: &mut InScratch, v: &mut [f32], stride: usize));
isa_dispatch!(output_row => output_row_impl(g: &Geo, m: &[f32], stride: usize, tz: usize, ty: usize, bias: f32, s: &mut InScratch, out: SharedOut, base: usize));

/// `y (n × c_out × D × H × W) = conv(x (n × c_in × D × H × W), U) + bias`.
#[allow(clippy::too_many_arguments)]
fn conv(n: usize, [d, h, w]: [usize; 3], c_in: usize, c_out: usize, x: &[f32], u: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let g = Geo { d, h, w, ntz: d.div_ceil(2), nty: h.div_ceil(2), ntx: w.div_ceil(2) };
    let sp = d * h * w;
    let rows = n * g.ntz * g.nty;
    let per_row = 64 * c_in.max(c_out) * g.ntx;
    let rb = (BLOCK_BUDGET.load(Ordering::Relaxed) / per_row).clamp(1, rows);
    let tb_max = rb * g.ntx;
    let mut y = vec![0f32; n * c_out * sp];
    let isa = isa();
    let out = SharedOut::new(&mut y);
    (0..rows.div_ceil(rb)).into_par_iter().for_each_init(
        || (vec![0f32; 64 * c_in * tb_max], vec![0f32; 64 * c_out * tb_max], InScratch::new(&g)),
        |(v, m, s), blk| {
            let r0 = blk * rb;
            let nr = rb.min(rows - r0);
            let tb = nr * g.ntx;
            let row_of = |j: usize| {
                let r = r0 + j;
                (r / (g.ntz * g.nty), (r / g.nty) % g.ntz, r % g.nty)
            };
            for ci in 0..c_in {
                for j in 0..nr {
                    let (b, tz, ty) = row_of(j);
                    let xc = &x[(b * c_in + ci) * sp..][..sp];
                    // Consecutive tile rows of a block share two of their four input rows per
                    // plane: the x-axis transforms of those are kept from the previous one.
                    input_row(isa, &g, xc, tz, ty, j > 0 && ty > 0, s, &mut v[ci * tb + j * g.ntx..], c_in * tb);
                }
            }
            for xi in 0..64 {
                // M_ξ [c_out × tb] = U_ξ [c_out × c_in] · V_ξ [c_in × tb]
                matmul_with(Parallelism::None, c_out, tb, c_in, &mut m[xi * c_out * tb..], tb, false, &u[xi * c_out * c_in..], (c_in, 1), &v[xi * c_in * tb..], (tb, 1));
            }
            for j in 0..nr {
                let (b, tz, ty) = row_of(j);
                for co in 0..c_out {
                    output_row(isa, &g, &m[co * tb + j * g.ntx..], c_out * tb, tz, ty, bias.map_or(0.0, |b| b[co]), s, out, (b * c_out + co) * sp);
                }
            }
        },
    );
    y
}

/// `y = conv3d(x, w) + b` for shapes where [`applies`] holds.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    assert!(applies(s), "winograd: not a stride-1 'same' 3³ conv: {s:?}");
    let cin = s.cin;
    let u = transform_weight(s.cout, cin, |o, i, t| w[(o * cin + i) * 27 + t]);
    conv(s.n, [s.d, s.h, s.w], cin, s.cout, x, &u, b)
}

/// `dx` for upstream `dy`: the same conv on dY with `W'[ci, co, t] = W[co, ci, 26 − t]`.
pub fn backward_dx(s: &ConvShape, w: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(applies(s), "winograd: not a stride-1 'same' 3³ conv: {s:?}");
    let cin = s.cin;
    let u = transform_weight(cin, s.cout, |i, o, t| w[(o * cin + i) * 27 + 26 - t]);
    conv(s.n, [s.d, s.h, s.w], s.cout, cin, dy, &u, None)
}
