//! Stride-1 "same" 3³ conv3d (padding 1, one group) by Winograd's minimal filtering F(4³, 3³):
//! 64 outputs (a 4×4×4 tile) from a 6×6×6 input patch with 216 multiplications per (in, out)
//! channel pair instead of 1728 — the 3³ convs' multiply count falls 8× (F(2³, 3³), which this
//! replaced, cut it 3.4×; the transformed input per output voxel also falls from 8 to 3.4 values,
//! so the transforms move less memory too).
//!
//! With Lavin & Gray's matrices for the points 0, ±1, ±2, ∞ (1-D, correlation as PyTorch
//! defines conv):
//! `Bᵀ = [[4,0,−5,0,1,0],[0,−4,−4,1,1,0],[0,4,−4,−1,1,0],[0,−2,−1,2,1,0],[0,2,−1,−2,1,0],
//! [0,4,0,−5,0,1]]`, `G = [[¼,0,0],[−⅙,−⅙,−⅙],[−⅙,⅙,−⅙],[1/24,1/12,⅙],[1/24,−1/12,⅙],[0,0,1]]`,
//! `Aᵀ = [[1,1,1,1,1,0],[0,1,−1,2,−2,0],[0,1,1,4,4,0],[0,1,−1,8,−8,1]]`, and
//! `y = Aᵀ[(G g) ⊙ (Bᵀ d)]` applied along each of the three axes. Per tile the channel mixing
//! becomes 216 independent matrix products, one per transform point ξ:
//! `M_ξ [Cout × tiles] = U_ξ [Cout × Cin] · V_ξ [Cin × tiles]`.
//!
//! Work is cut into blocks of whole tile rows (a tile row: fixed sample, tile depth, tile
//! height, every tile along W) of about [`BLOCK_TILES`] tiles, whose transformed input `V`
//! (216 × Cin × tiles) and products `M` stay in the cache between the transforms and the GEMMs;
//! blocks run in parallel, each with its own scratch, and write disjoint output rows. Where
//! the transformed weights `U` (216 × Cin × Cout) outweigh all tiles' `V` and `M` — few voxels,
//! many channels — the conv instead transforms every tile once and goes by chunks of output
//! channels ([`by_channel_chunks`]), so that `U` is never held whole. The
//! transforms run over groups of tile rows at a time ([`Geo::group`], input rows split into
//! their column phases by [`phases`]), so they vectorise.
//!
//! dx is the same conv on dY with the weight transposed over channels and its taps reversed.
//! dW is the algorithm's transpose ([`backward_dw`]): the same input transform, dY transformed
//! by `A`, the tiles summed in 216 GEMMs, `Gᵀ` once per channel pair; against the direct sums
//! (`shifted_dw`, at the CPU's peak) it took 0.30–0.50× the time on the paper network's 3³
//! convs at 2 × 96³ … 24³ (48–192 channels; 0.5× at 48 → 48, where the transforms weigh most;
//! machine C).
//! Rounding: the larger transform points (coefficients up to 8 and 1/24) cost accuracy: about
//! 2e-5 of the output's scale at 96 input channels in f32 (F(2³, 3³): ~1e-6), and about 1.5e-5
//! relative (L2) for dW at 48 channels, where the direct sums give 2e-7; the property tests bound the error
//! against the f64 reference at 1e-4.

use crate::conv_core::{matmul_with, operand, written_shared, ConvShape, Dst, SharedOut};
use crate::phases;
use crate::simd::{isa, isa_dispatch, Isa};
use gemm::Parallelism;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Tiles per block (and per dW wave) by default. A block's `V` and `M` then take
/// 216 · (Cin + Cout) · 48 floats — 4 MiB at 48 channels, where two threads' blocks stay in the
/// L3 cache — and `U`'s 216 · Cin · Cout floats, read once per block, cost no more than
/// them up to ~96 channels. Against blocks of 2 Mi floats (8 MiB, the old cap) it took 0.6–0.7×
/// the time at 48 channels (2 × 96³ forward and dW) and the same at 96 and 192 channels
/// (2 × 48³, 2 × 24³); 24 tiles and 96 tiles were both slower at 48 channels
/// (`cargo run --release -p repux-kernels --example winograd_blocks`, machine C).
pub const BLOCK_TILES: usize = 48;

/// Floats of one block's transformed input (or products) when set; 0: [`BLOCK_TILES`].
static BLOCK_BUDGET: AtomicUsize = AtomicUsize::new(0);

/// Sets the block size by a budget in floats (≥ one tile row is always taken; [`backward_dw`]'s
/// waves hold two budgets) and, in the weight-heavy regime ([`by_channel_chunks`]), the chunk
/// of transformed weights; `None` goes back to [`BLOCK_TILES`] and [`CHUNK_FLOATS`]. Results
/// do not depend on it but for dW's order of sums; tests use small budgets so that block, wave
/// and chunk edges are exercised.
pub fn set_block_budget(floats: Option<usize>) {
    BLOCK_BUDGET.store(floats.map_or(0, |f| f.max(1)), Ordering::Relaxed);
}

/// Tile rows per block (or dW wave) of `rows` when a row takes `floats_per_row` of the
/// budget.
fn rows_per_block(g: &Geo, floats_per_row: usize, rows: usize) -> usize {
    let fit = match BLOCK_BUDGET.load(Ordering::Relaxed) {
        0 => BLOCK_TILES.div_ceil(g.ntx),
        budget => budget / floats_per_row.max(1),
    };
    whole_groups(fit, g.group(), rows)
}

/// Floats of one chunk of transformed weights in the weight-heavy regime ([`by_channel_chunks`])
/// by default (16 MiB: 48 output channels at 384 input channels).
pub const CHUNK_FLOATS: usize = 1 << 22;

/// Whether the transformed weights (216 · c_in · c_out floats) outweigh all tiles' transformed
/// input and output (216 · tiles · (c_in + c_out)): then the conv keeps the latter whole and
/// goes by chunks of output channels, and its memory falls from the former to the latter.
fn weights_heavy(tiles: usize, c_in: usize, c_out: usize) -> bool {
    c_in * c_out > tiles * (c_in + c_out)
}

/// Whether `s` goes by chunks of output channels (forward, dx and dW alike: the condition is
/// symmetric in the channels) rather than by blocks of tile rows: few voxels and many
/// channels, as at the paper network's 12³ stage (2 × 12³: 54 tiles, 384 channels).
pub fn by_channel_chunks(s: &ConvShape) -> bool {
    let g = Geo::new([s.d, s.h, s.w]);
    weights_heavy(s.n * g.ntz * g.nty * g.ntx, s.cin, s.cout)
}

/// Output channels per chunk in the weight-heavy regime: the chunk's transformed weights
/// within [`CHUNK_FLOATS`] (or the budget of [`set_block_budget`]), a multiple of 16 (the GEMM
/// kernels' rows) where that fits, at least one, at most `c_out`.
fn chunk_channels(c_in: usize, c_out: usize) -> usize {
    let budget = match BLOCK_BUDGET.load(Ordering::Relaxed) {
        0 => CHUNK_FLOATS,
        budget => budget,
    };
    let fit = budget / (XI * c_in).max(1);
    let fit = if fit >= LANES { fit - fit % LANES } else { fit };
    fit.clamp(1, c_out.max(1))
}

/// Whether the geometry suits this path: k 3, stride 1, padding 1, one group.
pub fn applies(s: &ConvShape) -> bool {
    s.k == 3 && s.stride == 1 && s.pad == 1 && s.groups == 1
}

/// Whether `dense` routes the conv here: the geometry applies, both channel counts are at
/// least 32 (below that the 64 small GEMMs per block and the transforms cost more than they
/// save: the tiny preset's forward at the demo's 2 × 32×16×16 took 0.055 s with the threshold
/// at 8 channels and 0.033–0.048 s at 32, `repux bench model --model-config tiny --patch
/// 32,16,16`), and the batch holds at least [`MIN_VOXELS`] output voxels.
pub fn preferred(s: &ConvShape) -> bool {
    applies(s) && s.cin.min(s.cout) >= 32 && s.n * s.d * s.h * s.w >= MIN_VOXELS
}

/// Output voxels (over the batch) from which Winograd is preferred: below it the weight
/// transform and the partial tiles cost what the 8× fewer multiplies save. Forward, dx and dW
/// against the direct path (`cargo run --release -p repux-kernels --example winograd_route --
/// N CIN COUT S`, machine B, with [`by_channel_chunks`]): 1 × 384 → 384 at 12³ (1728 voxels,
/// the paper network's deepest 3³ convs in a batch-1 window) 77, 78, 67 ms against 95, 93,
/// 78 ms; 2 × 384 at 8³ (1024) faster forward, slower dW; 1 × 384 at 10³ (1000) 1.4× slower
/// forward; 2 × 384 → 768 at 6³ (432) even forward, 0.8× dW.
pub const MIN_VOXELS: usize = 1536;

/// Transform points per axis (α = m + r − 1 = 4 + 3 − 1) and per tile (α³).
const A: usize = 6;
const XI: usize = A * A * A;
/// Outputs per tile along each axis.
const T: usize = 4;

const G: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `U[ξ][o][i] = (G ⊗ G ⊗ G) g_{o,i}` for the 3³ kernel `g(o, i, tap)` (tap = (a·3 + b)·3 + c),
/// in f64, rounded once to f32. Runs over 16 input channels at a time (the taps gathered into
/// `[tap][channel]`, every sum a vector op), each output channel's 216 rows written whole: one
/// channel pair at a time, with 216 scattered writes per pair, it took longer than the conv's
/// GEMMs at 384 channels (2 × 12³).
fn transform_weight(
    c_out: usize,
    c_in: usize,
    g: impl Fn(usize, usize, usize) -> f32 + Sync,
) -> Vec<f32> {
    let per = c_out * c_in;
    let mut u = vec![0f32; XI * per];
    if per == 0 {
        return u;
    }
    let dst = SharedOut::new(&mut u);
    (0..c_out).into_par_iter().for_each_init(
        || vec![0f32; XI * c_in],
        |rows, o| {
            for i0 in (0..c_in).step_by(LANES) {
                let lanes = LANES.min(c_in - i0);
                let k: [[f64; LANES]; 27] = std::array::from_fn(|t| {
                    std::array::from_fn(|l| {
                        if l < lanes {
                            g(o, i0 + l, t) as f64
                        } else {
                            0.0
                        }
                    })
                });
                let out = transform_lanes(&k);
                for (xi, v) in out.iter().enumerate() {
                    for (l, &val) in v[..lanes].iter().enumerate() {
                        rows[xi * c_in + i0 + l] = val as f32;
                    }
                }
            }
            for (xi, row) in rows.chunks_exact(c_in).enumerate() {
                // SAFETY: output channel o writes only its own rows `U[ξ][o][..]`.
                unsafe { dst.write(xi * per + o * c_in, row) };
            }
        },
    );
    u
}

/// `(G ⊗ G ⊗ G) k` for 16 kernels side by side (`k[tap][lane]`): along c, then b, then a, each
/// sum left to right from the first product (the order of a scalar f64 `sum`).
#[inline(always)]
fn transform_lanes(k: &[[f64; LANES]; 27]) -> [[f64; LANES]; XI] {
    let mut t1 = [[0f64; LANES]; 9 * A]; // [a 3][b 3][γ 6]
    for ab in 0..9 {
        for (gm, row) in G.iter().enumerate() {
            let (k0, k1, k2) = (&k[ab * 3], &k[ab * 3 + 1], &k[ab * 3 + 2]);
            let t = &mut t1[ab * A + gm];
            for l in 0..LANES {
                t[l] = row[0] * k0[l] + row[1] * k1[l] + row[2] * k2[l];
            }
        }
    }
    let mut t2 = [[0f64; LANES]; 3 * A * A]; // [a 3][β 6][γ 6]
    for a in 0..3 {
        for (bt, row) in G.iter().enumerate() {
            for gm in 0..A {
                let q = |b: usize| &t1[(a * 3 + b) * A + gm];
                let (q0, q1, q2) = (q(0), q(1), q(2));
                let t = &mut t2[(a * A + bt) * A + gm];
                for l in 0..LANES {
                    t[l] = row[0] * q0[l] + row[1] * q1[l] + row[2] * q2[l];
                }
            }
        }
    }
    let mut out = [[0f64; LANES]; XI];
    for (al, row) in G.iter().enumerate() {
        for bg in 0..A * A {
            let (q0, q1, q2) = (&t2[bg], &t2[A * A + bg], &t2[2 * A * A + bg]);
            let t = &mut out[al * A * A + bg];
            for l in 0..LANES {
                t[l] = row[0] * q0[l] + row[1] * q1[l] + row[2] * q2[l];
            }
        }
    }
    out
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

impl Geo {
    /// A D×H×W volume cut into 4×4×4 tiles (the last ones partial).
    fn new([d, h, w]: [usize; 3]) -> Geo {
        Geo {
            d,
            h,
            w,
            ntz: d.div_ceil(T),
            nty: h.div_ceil(T),
            ntx: w.div_ceil(T),
        }
    }

    /// Tile rows transformed together. One tile row has `ntx` lanes — 24, 12 and 6 at the
    /// paper network's 96³ … 24³ stages, 16, 8 and 4 at 64³ —, which 16-lane vectors cover in
    /// part: the three passes of a transform run over `16 / gcd(ntx, 16)` rows at once (a whole
    /// number of vectors; only the column phases are split or joined row by row), at most 64
    /// lanes when a row is longer (the scratch stays in L1/L2).
    fn group(&self) -> usize {
        let n = self.ntx.max(1);
        let mut gcd = (n, LANES);
        while gcd.1 != 0 {
            gcd = (gcd.1, gcd.0 % gcd.1);
        }
        (LANES / gcd.0).min((64 / n).max(1))
    }

    /// Sample, tile depth and tile height of tile row `r` (r = (b·ntz + tz)·nty + ty).
    fn row(&self, r: usize) -> (usize, usize, usize) {
        (
            r / (self.ntz * self.nty),
            (r / self.nty) % self.ntz,
            r % self.nty,
        )
    }
}

/// Lanes of the widest vector (AVX-512's 16 floats): the element-wise transforms run in
/// chunks of this many, which LLVM turns into exactly one vector op each (two on AVX2).
const LANES: usize = 16;

/// Runs an element-wise transform over its rows' `n` lanes in chunks of [`LANES`]: `$f` on
/// sub-slices of length 16 (a constant after slicing, so the loop inside vectorises whole),
/// then once on the rest. A plain loop over `n` is vectorised 64 lanes at a time with 8-, 4-
/// and 1-lane remainders, where the 6 … 24 lanes of a tile row spent most of their time.
macro_rules! by_vectors {
    ($f:ident, [$($i:ident),*], [$($o:ident),*]) => {{
        let n = [$($o.len()),*][0];
        let mut c = 0;
        while n - c >= LANES {
            let e = c + LANES;
            $f([$(&$i[c..e]),*], [$(&mut $o[c..e]),*]);
            c = e;
        }
        if c < n {
            $f([$(&$i[c..n]),*], [$(&mut $o[c..n]),*]);
        }
    }};
}

/// `Bᵀ (a0 … a5)` element-wise over equal-length rows, into six outputs.
#[inline(always)]
fn bt6(a: [&[f32]; A], out: [&mut [f32]; A]) {
    let [a0, a1, a2, a3, a4, a5] = a;
    let [o0, o1, o2, o3, o4, o5] = out;
    by_vectors!(
        bt6_lanes,
        [a0, a1, a2, a3, a4, a5],
        [o0, o1, o2, o3, o4, o5]
    );
}

#[inline(always)]
fn bt6_lanes(a: [&[f32]; A], out: [&mut [f32]; A]) {
    let [o0, o1, o2, o3, o4, o5] = out;
    let n = o0.len();
    let (a0, a1, a2, a3, a4, a5) = (
        &a[0][..n],
        &a[1][..n],
        &a[2][..n],
        &a[3][..n],
        &a[4][..n],
        &a[5][..n],
    );
    let (o1, o2, o3, o4, o5) = (
        &mut o1[..n],
        &mut o2[..n],
        &mut o3[..n],
        &mut o4[..n],
        &mut o5[..n],
    );
    for t in 0..n {
        o0[t] = 4.0 * a0[t] - 5.0 * a2[t] + a4[t];
        o1[t] = (a3[t] + a4[t]) - 4.0 * (a1[t] + a2[t]);
        o2[t] = (a4[t] - a3[t]) + 4.0 * (a1[t] - a2[t]);
        o3[t] = (a4[t] - a2[t]) + 2.0 * (a3[t] - a1[t]);
        o4[t] = (a4[t] - a2[t]) - 2.0 * (a3[t] - a1[t]);
        o5[t] = 4.0 * a1[t] - 5.0 * a3[t] + a5[t];
    }
}

/// `Aᵀ (m0 … m5)` element-wise, into four outputs.
#[inline(always)]
fn at6(m: [&[f32]; A], out: [&mut [f32]; T]) {
    let [m0, m1, m2, m3, m4, m5] = m;
    let [o0, o1, o2, o3] = out;
    by_vectors!(at6_lanes, [m0, m1, m2, m3, m4, m5], [o0, o1, o2, o3]);
}

#[inline(always)]
fn at6_lanes(m: [&[f32]; A], out: [&mut [f32]; T]) {
    let [o0, o1, o2, o3] = out;
    let n = o0.len();
    let (m0, m1, m2, m3, m4, m5) = (
        &m[0][..n],
        &m[1][..n],
        &m[2][..n],
        &m[3][..n],
        &m[4][..n],
        &m[5][..n],
    );
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for t in 0..n {
        let (p12, m12, p34, m34) = (m1[t] + m2[t], m1[t] - m2[t], m3[t] + m4[t], m3[t] - m4[t]);
        o0[t] = m0[t] + p12 + p34;
        o1[t] = m12 + 2.0 * m34;
        o2[t] = p12 + 4.0 * p34;
        o3[t] = m12 + 8.0 * m34 + m5[t];
    }
}

/// `A (z0 … z3)` element-wise (the output transform's transpose: dW's transform of dY), into
/// six outputs.
#[inline(always)]
fn a6(z: [&[f32]; T], out: [&mut [f32]; A]) {
    let [z0, z1, z2, z3] = z;
    let [o0, o1, o2, o3, o4, o5] = out;
    by_vectors!(a6_lanes, [z0, z1, z2, z3], [o0, o1, o2, o3, o4, o5]);
}

#[inline(always)]
fn a6_lanes(z: [&[f32]; T], out: [&mut [f32]; A]) {
    let [o0, o1, o2, o3, o4, o5] = out;
    let n = o0.len();
    let (z0, z1, z2, z3) = (&z[0][..n], &z[1][..n], &z[2][..n], &z[3][..n]);
    let (o1, o2, o3, o4, o5) = (
        &mut o1[..n],
        &mut o2[..n],
        &mut o3[..n],
        &mut o4[..n],
        &mut o5[..n],
    );
    for t in 0..n {
        let (p02, p13) = (z0[t] + z2[t], z1[t] + z3[t]);
        let (q02, q13) = (z0[t] + 4.0 * z2[t], 2.0 * z1[t] + 8.0 * z3[t]);
        o0[t] = z0[t];
        o1[t] = p02 + p13;
        o2[t] = p02 - p13;
        o3[t] = q02 + q13;
        o4[t] = q02 - q13;
        o5[t] = z3[t];
    }
}

/// Four rows `buf[first + i·step ..][..len]`, i < 4.
#[inline(always)]
fn take4(buf: &[f32], len: usize, first: usize, step: usize) -> [&[f32]; T] {
    let r = |i: usize| &buf[first + i * step..][..len];
    [r(0), r(1), r(2), r(3)]
}

/// Six rows `buf[first + i·step ..][..len]`, i < 6.
#[inline(always)]
fn take6(buf: &[f32], len: usize, first: usize, step: usize) -> [&[f32]; A] {
    let r = |i: usize| &buf[first + i * step..][..len];
    [r(0), r(1), r(2), r(3), r(4), r(5)]
}

/// Four disjoint rows `buf[first + i·step ..][..len]`, i < 4, as `&mut` (`step ≥ len`).
///
/// `split4` and `split6` are spelled out rather than one const-generic `array::from_fn`: in the
/// AVX-512 copies of the transforms that call was not inlined and cost ~17 % of the input
/// transform (measured with perf during session 5).
#[inline(always)]
fn split4(buf: &mut [f32], len: usize, first: usize, step: usize) -> [&mut [f32]; T] {
    assert!(step >= len, "winograd: overlapping rows");
    let (_, r) = buf.split_at_mut(first);
    let (a, r) = r.split_at_mut(step);
    let (b, r) = r.split_at_mut(step);
    let (c, d) = r.split_at_mut(step);
    [&mut a[..len], &mut b[..len], &mut c[..len], &mut d[..len]]
}

/// Six disjoint rows `buf[first + i·step ..][..len]`, i < 6, as `&mut` (`step ≥ len`).
#[inline(always)]
fn split6(buf: &mut [f32], len: usize, first: usize, step: usize) -> [&mut [f32]; A] {
    assert!(step >= len, "winograd: overlapping rows");
    let (_, r) = buf.split_at_mut(first);
    let (a, r) = r.split_at_mut(step);
    let (b, r) = r.split_at_mut(step);
    let (c, r) = r.split_at_mut(step);
    let (d, r) = r.split_at_mut(step);
    let (e, f) = r.split_at_mut(step);
    [
        &mut a[..len],
        &mut b[..len],
        &mut c[..len],
        &mut d[..len],
        &mut e[..len],
        &mut f[..len],
    ]
}

/// Scratch of one transform: two stages of 216 rows over a group of tile rows
/// ([`Geo::group`]), the six (input) or four (output) column phases of the group's rows at one
/// (z, y) offset, and an output row.
struct InScratch {
    a: Vec<f32>,
    b: Vec<f32>,
    ph: Vec<f32>,
    row: Vec<f32>,
}

impl InScratch {
    fn new(g: &Geo) -> InScratch {
        InScratch {
            a: vec![0.0; XI * g.group() * g.ntx],
            b: vec![0.0; XI * g.group() * g.ntx],
            ph: vec![0.0; A * g.group() * g.ntx],
            row: vec![0.0; g.w],
        }
    }
}

/// Asks the cache for the two input rows per plane that tile row (tz, ty) reads and tile row
/// (tz, ty − 1) does not: each plane's rows sit in another page, where the hardware prefetcher
/// does not follow, and the loads then wait on memory one row at a time.
#[inline(always)]
fn prefetch_rows(g: &Geo, xc: &[f32], tz: usize, ty: usize) {
    #[cfg(target_arch = "x86_64")]
    for zz in 0..A {
        for yy in A - 2..A {
            let (z, y) = ((T * tz + zz) as isize - 1, (T * ty + yy) as isize - 1);
            if z < 0 || z >= g.d as isize || y < 0 || y >= g.h as isize {
                continue;
            }
            let row = &xc[(z as usize * g.h + y as usize) * g.w..][..g.w];
            for line in row.chunks(16) {
                // SAFETY: a prefetch only hints the cache; the address lies inside `xc`.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        line.as_ptr().cast(),
                    )
                };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (g, xc, tz, ty);
}

/// Tile rows `first .. first + count` ([`Geo::row`]) of one channel, at most [`Geo::group`]
/// of them, transformed together.
#[derive(Clone, Copy)]
struct Rows {
    first: usize,
    count: usize,
}

/// Channel `c` of `channels` of an `N × channels × D·H·W` tensor.
#[derive(Clone, Copy)]
struct Channel<'a> {
    data: &'a [f32],
    c: usize,
    channels: usize,
}

impl<'a> Channel<'a> {
    /// The channel's D·H·W volume in sample `b`.
    #[inline(always)]
    fn volume(self, g: &Geo, b: usize) -> &'a [f32] {
        let sp = g.d * g.h * g.w;
        &self.data[(b * self.channels + self.c) * sp..][..sp]
    }
}

/// `Bᵀ d B` (three axes) for every tile of tile rows `rows` of channel `x`; transform point
/// ξ = (cz·6 + cy)·6 + cx of the group's tile t (tile rows one after another) lands at
/// `v[ξ·stride + t]`. All three passes run over the group's lanes at once: the x-pass on the
/// six column phases `e_i[t] = xp[4t + i]` of each padded input row `xp[c] = row[c − 1]`.
#[inline(always)]
fn input_row_impl(
    isa: Isa,
    g: &Geo,
    x: Channel,
    rows: Rows,
    s: &mut InScratch,
    v: &mut [f32],
    stride: usize,
) {
    let n = g.ntx;
    let l = rows.count * n;
    // Ask the cache for the rows that the next group reads first (other pages than this
    // group's: the hardware prefetcher does not follow).
    for r in rows.first + rows.count..rows.first + 2 * rows.count {
        let (b, tz, ty) = g.row(r);
        if b < x.data.len() / (x.channels * g.d * g.h * g.w) {
            prefetch_rows(g, x.volume(g, b), tz, ty);
        }
    }
    // x axis: input rows (zz, yy) → a[((zz·6 + yy)·6 + cx)·l + t].
    for zz in 0..A {
        for yy in 0..A {
            let e = &mut s.ph[..A * l];
            for j in 0..rows.count {
                let (b, tz, ty) = g.row(rows.first + j);
                let (z, y) = ((T * tz + zz) as isize - 1, (T * ty + yy) as isize - 1);
                if z < 0 || z >= g.d as isize || y < 0 || y >= g.h as isize {
                    for i in 0..A {
                        e[i * l + j * n..][..n].fill(0.0);
                    }
                    continue;
                }
                let xc = x.volume(g, b);
                let row = &xc[(z as usize * g.h + y as usize) * g.w..][..g.w];
                // e_i[t] = xp[4t + i] = row[4t + i − 1]; e4, e5 are phases 0, 1 shifted a tile.
                let [e0, e1, e2, e3, e4, e5] = split6(e, n, j * n, l);
                phases::split(isa, row, -1, [e0, e1, e2, e3]);
                phases::split(isa, row, 3, [e4, e5]);
            }
            let r = (zz * A + yy) * A;
            bt6(take6(&s.ph, l, 0, l), split6(&mut s.a, l, r * l, l));
        }
    }
    // y axis: a[(zz, yy, cx)] → b[(zz, cy, cx)].
    for zz in 0..A {
        for cx in 0..A {
            bt6(
                take6(&s.a, l, (zz * A * A + cx) * l, A * l),
                split6(&mut s.b, l, (zz * A * A + cx) * l, A * l),
            );
        }
    }
    // z axis: b[(zz, cy, cx)] → v[ξ = (cz, cy, cx)].
    for cyx in 0..A * A {
        bt6(
            take6(&s.b, l, cyx * l, A * A * l),
            split6(v, l, cyx * stride, A * A * stride),
        );
    }
}

/// One output channel being written: its `bias`, and its D·H·W floats in each sample of the
/// `N × channels × D·H·W` tensor `out`.
#[derive(Clone, Copy)]
struct OutChannel {
    out: SharedOut,
    c: usize,
    channels: usize,
    bias: f32,
}

/// `Aᵀ M A` (three axes) for tile rows `rows` of one output channel: transform point ξ of the
/// group's tile t is `m[ξ·stride + t]`; writes the (up to) 4×4 output rows per tile row, plus
/// the bias, of `dst`.
#[inline(always)]
fn output_row_impl(
    isa: Isa,
    g: &Geo,
    m: &[f32],
    stride: usize,
    rows: Rows,
    s: &mut InScratch,
    dst: OutChannel,
) {
    let OutChannel {
        out,
        c,
        channels,
        bias,
    } = dst;
    let n = g.ntx;
    let l = rows.count * n;
    // z axis: m[(cz, cy, cx)] → a[(oz, cy, cx)] (oz < 4).
    for cyx in 0..A * A {
        at6(
            take6(m, l, cyx * stride, A * A * stride),
            split4(&mut s.a, l, cyx * l, A * A * l),
        );
    }
    // y axis: a[(oz, cy, cx)] → b[(oz, oy, cx)].
    for oz in 0..T {
        for cx in 0..A {
            at6(
                take6(&s.a, l, (oz * A * A + cx) * l, A * l),
                split4(&mut s.b, l, (oz * T * A + cx) * l, A * l),
            );
        }
    }
    // x axis: b[(oz, oy, cx)] → ph[ox·l + t], then tile row j's part → output row
    // (4tz + oz, 4ty + oy), columns 4t + ox.
    for oz in 0..T {
        for oy in 0..T {
            let r = (oz * T + oy) * A;
            at6(take6(&s.b, l, r * l, l), split4(&mut s.ph, l, 0, l));
            for j in 0..rows.count {
                let (b, tz, ty) = g.row(rows.first + j);
                let (z, y) = (T * tz + oz, T * ty + oy);
                if z >= g.d || y >= g.h {
                    continue;
                }
                let row = &mut s.row[..g.w];
                phases::join(isa, take4(&s.ph, n, j * n, l), bias, row);
                let base = (b * channels + c) * g.d * g.h * g.w;
                // SAFETY: each (tile row, output channel) writes its own output rows
                // (4tz + oz, 4ty + oy) of its channel, and tile rows are split among blocks, so
                // concurrent writes never overlap; `write` checks the bound.
                unsafe { out.write(base + (z * g.h + y) * g.w, row) };
            }
        }
    }
}

/// `A z Aᵀ` (three axes) for every tile of tile rows `rows` of one dY channel: the 4×4×4
/// outputs of a tile (zero past the volume) become its 216 transform points, point ξ of the
/// group's tile t at `v[ξ·stride + t]` — the layout of [`input_row_impl`], which dW pairs them
/// with.
#[inline(always)]
fn dy_row_impl(
    isa: Isa,
    g: &Geo,
    dy: Channel,
    rows: Rows,
    s: &mut InScratch,
    v: &mut [f32],
    stride: usize,
) {
    let n = g.ntx;
    let l = rows.count * n;
    // x axis: dY rows (oz, oy) → a[((oz·4 + oy)·6 + cx)·l + t], over four column phases
    // ph[ox·l + j·n + t] = row[4t + ox] of tile row j's dY row (zero past the volume).
    for oz in 0..T {
        for oy in 0..T {
            let ph = &mut s.ph[..T * l];
            for j in 0..rows.count {
                let (b, tz, ty) = g.row(rows.first + j);
                let (z, y) = (T * tz + oz, T * ty + oy);
                let [p0, p1, p2, p3] = split4(ph, n, j * n, l);
                if z >= g.d || y >= g.h {
                    for p in [p0, p1, p2, p3] {
                        p.fill(0.0);
                    }
                    continue;
                }
                let row = &dy.volume(g, b)[(z * g.h + y) * g.w..][..g.w];
                phases::split(isa, row, 0, [p0, p1, p2, p3]);
            }
            let r = (oz * T + oy) * A;
            a6(take4(&s.ph, l, 0, l), split6(&mut s.a, l, r * l, l));
        }
    }
    // y axis: a[(oz, oy, cx)] → b[(oz, cy, cx)].
    for oz in 0..T {
        for cx in 0..A {
            a6(
                take4(&s.a, l, (oz * T * A + cx) * l, A * l),
                split6(&mut s.b, l, (oz * A * A + cx) * l, A * l),
            );
        }
    }
    // z axis: b[(oz, cy, cx)] → v[ξ = (cz, cy, cx)].
    for cyx in 0..A * A {
        a6(
            take4(&s.b, l, cyx * l, A * A * l),
            split6(v, l, cyx * stride, A * A * stride),
        );
    }
}

isa_dispatch!(input_row => input_row_impl(isa; g: &Geo, x: Channel, rows: Rows, s: &mut InScratch, v: &mut [f32], stride: usize));
isa_dispatch!(output_row => output_row_impl(isa; g: &Geo, m: &[f32], stride: usize, rows: Rows, s: &mut InScratch, dst: OutChannel));
isa_dispatch!(dy_row => dy_row_impl(isa; g: &Geo, dy: Channel, rows: Rows, s: &mut InScratch, v: &mut [f32], stride: usize));

/// Tile rows per block for a budget of `fit` rows: at least one, at most `rows`, a multiple of
/// the group size where the budget holds a group (so that no group but the last is short).
fn whole_groups(fit: usize, group: usize, rows: usize) -> usize {
    let fit = if fit >= group { fit - fit % group } else { fit };
    fit.clamp(1, rows)
}

/// Rows `r0 .. r0 + nr` in groups of `group` (the last one shorter).
fn groups(r0: usize, nr: usize, group: usize) -> impl Iterator<Item = Rows> {
    (r0..r0 + nr).step_by(group).map(move |first| Rows {
        first,
        count: group.min(r0 + nr - first),
    })
}

thread_local! {
    /// Each worker thread's transformed input `V` and products `M` for one block.
    static BLOCKS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `y (n × c_out × D × H × W) = conv(x (n × c_in × D × H × W), weight) + bias` for the 3³
/// kernel `weight(o, i, tap)`: by blocks of tile rows, or by chunks of output channels
/// ([`conv_by_chunks`]) where the transformed weights outweigh the transformed activations.
fn conv<W: Fn(usize, usize, usize) -> f32 + Sync>(
    n: usize,
    [d, h, w]: [usize; 3],
    c_in: usize,
    c_out: usize,
    x: &[f32],
    weight: W,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let g = Geo::new([d, h, w]);
    let sp = d * h * w;
    let rows = n * g.ntz * g.nty;
    if rows == 0 || g.ntx == 0 {
        return Vec::new();
    }
    if weights_heavy(rows * g.ntx, c_in, c_out) {
        return conv_by_chunks(&g, n, c_in, c_out, x, weight, bias);
    }
    let u = transform_weight(c_out, c_in, weight);
    let per_row = XI * c_in.max(c_out) * g.ntx;
    let rb = rows_per_block(&g, per_row, rows);
    let tb_max = rb * g.ntx;
    let isa = isa();
    // SAFETY: every tile row of every output channel writes its (up to) 4×4 output rows, the
    // blocks of tile rows are disjoint, and they cover the volume: all n·c_out·D·H·W floats.
    unsafe {
        written_shared(n * c_out * sp, |out| {
            (0..rows.div_ceil(rb)).into_par_iter().for_each_init(
                || InScratch::new(&g),
                |s, blk| {
                    BLOCKS.with_borrow_mut(|(v, m)| {
                        // Every float of V and M a block reads it wrote first, so the buffers (kept per
                        // thread across convs) are only grown, never cleared.
                        if v.len() < XI * c_in * tb_max {
                            v.resize(XI * c_in * tb_max, 0.0);
                        }
                        if m.len() < XI * c_out * tb_max {
                            m.resize(XI * c_out * tb_max, 0.0);
                        }
                        let r0 = blk * rb;
                        let nr = rb.min(rows - r0);
                        let tb = nr * g.ntx;
                        for ci in 0..c_in {
                            let x = Channel {
                                data: x,
                                c: ci,
                                channels: c_in,
                            };
                            for rows in groups(r0, nr, g.group()) {
                                input_row(
                                    isa,
                                    &g,
                                    x,
                                    rows,
                                    s,
                                    &mut v[ci * tb + (rows.first - r0) * g.ntx..],
                                    c_in * tb,
                                );
                            }
                        }
                        for xi in 0..XI {
                            // M_ξ [c_out × tb] = U_ξ [c_out × c_in] · V_ξ [c_in × tb]
                            matmul_with(
                                Parallelism::None,
                                [c_out, tb, c_in],
                                Dst {
                                    data: &mut m[xi * c_out * tb..],
                                    row_stride: tb,
                                    accumulate: false,
                                },
                                operand(&u[xi * c_out * c_in..], (c_in, 1)),
                                operand(&v[xi * c_in * tb..], (tb, 1)),
                            );
                        }
                        for rows in groups(r0, nr, g.group()) {
                            for co in 0..c_out {
                                output_row(
                                    isa,
                                    &g,
                                    &m[co * tb + (rows.first - r0) * g.ntx..],
                                    c_out * tb,
                                    rows,
                                    s,
                                    OutChannel {
                                        out,
                                        c: co,
                                        channels: c_out,
                                        bias: bias.map_or(0.0, |b| b[co]),
                                    },
                                );
                            }
                        }
                    })
                },
            );
        })
    }
}

/// The weight-heavy regime: all tiles' transformed input `V` at once (channel-major,
/// `[c][ξ][t]`), then the output channels in chunks of [`chunk_channels`], each with its own
/// transformed weights, its 216 GEMMs `M_ξ [chunk × tiles] = U_ξ [chunk × c_in] · V_ξ [c_in ×
/// tiles]` (in parallel over ξ) and its output transform (in parallel over channels). The
/// whole `U` (216 · c_in · c_out floats: 127 MB at 384 → 384, the paper network's deepest 3³
/// convs at a 96³ patch, where `V` takes 18 MB) is never held.
fn conv_by_chunks<W: Fn(usize, usize, usize) -> f32 + Sync>(
    g: &Geo,
    n: usize,
    c_in: usize,
    c_out: usize,
    x: &[f32],
    weight: W,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let rows = n * g.ntz * g.nty;
    let tiles = rows * g.ntx;
    let isa = isa();
    let mut v = vec![0f32; c_in * XI * tiles];
    transform_channels(isa, g, x, c_in, 0, rows, &mut v, input_row);
    let oc = chunk_channels(c_in, c_out);
    let mut m = vec![0f32; XI * oc * tiles];
    // SAFETY: every chunk of output channels writes, channel by channel, every tile row's
    // (up to) 4×4 output rows: all n·c_out·D·H·W floats, each once.
    unsafe {
        written_shared(n * c_out * g.d * g.h * g.w, |out| {
            for o0 in (0..c_out).step_by(oc) {
                let k = oc.min(c_out - o0);
                let u = transform_weight(k, c_in, |o, i, t| weight(o0 + o, i, t));
                let m = &mut m[..XI * k * tiles];
                m.par_chunks_mut(k * tiles)
                    .enumerate()
                    .for_each(|(xi, mx)| {
                        matmul_with(
                            Parallelism::None,
                            [k, tiles, c_in],
                            Dst {
                                data: mx,
                                row_stride: tiles,
                                accumulate: false,
                            },
                            operand(&u[xi * k * c_in..], (c_in, 1)),
                            operand(&v[xi * tiles..], (XI * tiles, 1)),
                        );
                    });
                let m = &*m;
                (0..k).into_par_iter().for_each_init(
                    || InScratch::new(g),
                    |s, co| {
                        for rows in groups(0, rows, g.group()) {
                            output_row(
                                isa,
                                g,
                                &m[co * tiles + rows.first * g.ntx..],
                                k * tiles,
                                rows,
                                s,
                                OutChannel {
                                    out,
                                    c: o0 + co,
                                    channels: c_out,
                                    bias: bias.map_or(0.0, |b| b[o0 + co]),
                                },
                            );
                        }
                    },
                );
            }
        })
    }
}

/// Transforms tile rows `r0 .. r0 + nr` of every channel of `x` by `row` ([`input_row`] or
/// [`dy_row`]) into `v`, channel-major: channel c's point ξ of tile t (over those rows) at
/// `v[(c·216 + ξ)·tiles + t]`. In parallel over channels.
#[allow(clippy::too_many_arguments)]
fn transform_channels(
    isa: Isa,
    g: &Geo,
    x: &[f32],
    channels: usize,
    r0: usize,
    nr: usize,
    v: &mut [f32],
    row: fn(Isa, &Geo, Channel, Rows, &mut InScratch, &mut [f32], usize),
) {
    let tiles = nr * g.ntx;
    v[..channels * XI * tiles]
        .par_chunks_mut(XI * tiles)
        .enumerate()
        .for_each_init(
            || InScratch::new(g),
            |s, (c, vc)| {
                let x = Channel {
                    data: x,
                    c,
                    channels,
                };
                for rows in groups(r0, nr, g.group()) {
                    let vr = &mut vc[(rows.first - r0) * g.ntx..];
                    row(isa, g, x, rows, s, vr, tiles);
                }
            },
        );
}

/// `y = conv3d(x, w) + b` for shapes where [`applies`] holds.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    assert!(applies(s), "winograd: not a stride-1 'same' 3³ conv: {s:?}");
    let cin = s.cin;
    conv(
        s.n,
        [s.d, s.h, s.w],
        cin,
        s.cout,
        x,
        |o, i, t| w[(o * cin + i) * 27 + t],
        b,
    )
}

/// `dx` for upstream `dy`: the same conv on dY with `W'[ci, co, t] = W[co, ci, 26 − t]`.
pub fn backward_dx(s: &ConvShape, w: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(applies(s), "winograd: not a stride-1 'same' 3³ conv: {s:?}");
    let cin = s.cin;
    let weight = |i: usize, o: usize, t: usize| w[(o * cin + i) * 27 + 26 - t];
    conv(s.n, [s.d, s.h, s.w], s.cout, cin, dy, weight, None)
}

/// `dw` (`[Cout, Cin, 3, 3, 3]`) for upstream `dy`, by the transpose of F(4³, 3³): with
/// `y = Aᵀ[(G g) ⊙ (Bᵀ d)]`, `Σ_i z_i y_i = gᵀ Gᵀ[(A z) ⊙ (Bᵀ d)]`, so a tile's contribution to
/// the 3³ kernel's gradient is `Gᵀ[(A dY_tile) ⊙ (Bᵀ x_patch)]` (three axes). Summed over tiles,
/// the element-wise product becomes 216 GEMMs with the tiles as the inner dimension,
/// `M_ξ [Cout × Cin] += Z_ξ [Cout × tiles] · V_ξᵀ [tiles × Cin]`, and `Gᵀ` runs once per channel
/// pair at the end — 216 multiplies per (tile, channel pair) instead of the direct 1728.
///
/// Tile rows go in waves of [`BLOCK_TILES`] tiles (or two blocks' budget when
/// [`set_block_budget`] set one) of transformed input and dY together — a size of the problem,
/// not a share per thread, so the waves, and with them the order of dW's sums, do not depend
/// on the thread count (≥ one tile row is always taken). A wave's transforms run in parallel over
/// channels (V and Z stored channel-major, `[c][ξ][t]`), then its GEMMs in parallel over ξ, each
/// adding onto its own `M_ξ` in wave order. Where [`by_channel_chunks`] holds, one wave takes
/// every tile, and `M` is summed and folded in chunks of output channels instead of whole.
pub fn backward_dw(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(applies(s), "winograd: not a stride-1 'same' 3³ conv: {s:?}");
    let (c_in, c_out) = (s.cin, s.cout);
    let g = Geo::new([s.d, s.h, s.w]);
    let rows = s.n * g.ntz * g.nty;
    if rows == 0 || g.ntx == 0 || c_in * c_out == 0 {
        // No voxels (or no channel pairs): every sum is empty.
        return vec![0f32; c_out * c_in * 27];
    }
    // A wave holds two budgets: V and Z. Where the weights outweigh the activations, one wave
    // of every tile row, and M (216 · c_out · c_in floats) in chunks of output channels, each
    // folded into its rows of dW as soon as it is summed.
    let heavy = weights_heavy(rows * g.ntx, c_in, c_out);
    let wr = match heavy {
        true => rows,
        false => rows_per_block(&g, (XI * (c_in + c_out) * g.ntx).div_ceil(2), rows),
    };
    let oc = match heavy {
        true => chunk_channels(c_in, c_out),
        false => c_out,
    };
    let mut v = vec![0f32; c_in * XI * wr * g.ntx];
    let mut z = vec![0f32; c_out * XI * wr * g.ntx];
    let mut m = vec![0f32; XI * oc * c_in];
    let mut dw = vec![0f32; c_out * c_in * 27];
    let isa = isa();
    for r0 in (0..rows).step_by(wr) {
        let nr = wr.min(rows - r0);
        let tw = nr * g.ntx;
        rayon::join(
            || transform_channels(isa, &g, x, c_in, r0, nr, &mut v, input_row),
            || transform_channels(isa, &g, dy, c_out, r0, nr, &mut z, dy_row),
        );
        let (v, z) = (&v[..c_in * XI * tw], &z[..c_out * XI * tw]);
        // Several chunks only with one wave: M's chunk is summed whole before the next.
        for o0 in (0..c_out).step_by(oc) {
            let k = oc.min(c_out - o0);
            let m = &mut m[..XI * k * c_in];
            m.par_chunks_mut(k * c_in).enumerate().for_each(|(xi, mx)| {
                matmul_with(
                    Parallelism::None,
                    [k, c_in, tw],
                    Dst {
                        data: mx,
                        row_stride: c_in,
                        accumulate: r0 > 0,
                    },
                    operand(&z[o0 * XI * tw + xi * tw..], (XI * tw, 1)),
                    operand(&v[xi * tw..], (1, XI * tw)),
                );
            });
            if r0 + nr == rows {
                fold_dw(m, &mut dw[o0 * c_in * 27..(o0 + k) * c_in * 27]);
            }
        }
    }
    dw
}

/// `dW[o][i] = (Gᵀ ⊗ Gᵀ ⊗ Gᵀ) M[·][o][i]` in f64 for the channel pairs of `m`
/// (`[ξ][pair]`, `dw.len() / 27` pairs), in parallel over pairs.
fn fold_dw(m: &[f32], dw: &mut [f32]) {
    let per = dw.len() / 27;
    dw.par_chunks_mut(27).enumerate().for_each(|(oi, out)| {
        let mv: [f64; XI] = std::array::from_fn(|xi| m[xi * per + oi] as f64);
        // Along γ (x), then β, then α.
        let mut t1 = [0f64; A * A * 3]; // [α 6][β 6][c 3]
        for ab in 0..A * A {
            for c in 0..3 {
                t1[ab * 3 + c] = (0..A).map(|gm| G[gm][c] * mv[ab * A + gm]).sum();
            }
        }
        let mut t2 = [0f64; A * 9]; // [α 6][b 3][c 3]
        for al in 0..A {
            for bc in 0..9 {
                let (b, c) = (bc / 3, bc % 3);
                t2[al * 9 + bc] = (0..A).map(|bt| G[bt][b] * t1[(al * A + bt) * 3 + c]).sum();
            }
        }
        for a in 0..3 {
            for bc in 0..9 {
                out[a * 9 + bc] = (0..A).map(|al| G[al][a] * t2[al * 9 + bc]).sum::<f64>() as f32;
            }
        }
    });
}
