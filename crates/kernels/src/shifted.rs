//! Stride-1 "same" dense conv3d (k odd, padding k/2, one group) without a columns matrix: the
//! output is a sum over the k³ taps of GEMMs `W_tap [Cout × Cin] · X_shifted [Cin × positions]`,
//! where every shifted view of a zero-padded input slab is the same matrix at a constant offset.
//!
//! Layout: a slab of `planes` output depth planes reads a padded input slab
//! `Cin × (planes + 2p) × Hp × Wp` (Hp = H + 2p, Wp = W + 2p, plus 2p trailing zeros per channel).
//! Output position (z, y, x) of the slab sits at grid column `q = (z·Hp + y)·Wp + x`; tap
//! (a, b, c) reads column `q + (a·Hp + b)·Wp + c`. Grid columns with y ≥ H or x ≥ W are computed
//! and thrown away (≈ 2p/W extra work per axis). The grid is cut into tiles of whole rows so
//! that a tile's output block (≈ 1 MiB) stays in cache across the k³ accumulating GEMMs; tiles
//! run in parallel, each GEMM on one thread.
//!
//! dx is the same computation on the padded dY with the weight transposed and its taps
//! reversed; dW sums `dY_grid [Cout × Q] · X_shiftedᵀ [Q × Cin]` per tap, with dY zero on the
//! thrown-away columns, over Q chunks in parallel (in fp32 on AVX-512 by `shifted_dw`'s kernel,
//! else one GEMM per tap).

use crate::conv_core::{add_bias, matmul_with, operand, ConvShape, Dst, SharedOut};
use gemm::Parallelism;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Floats of one padded input slab (default 64 MiB of f32) — the slab's depth adapts to it.
static SLAB_BUDGET: AtomicUsize = AtomicUsize::new(16 << 20);
/// Floats of one output tile (default 1 MiB of f32).
static TILE_BUDGET: AtomicUsize = AtomicUsize::new(1 << 18);

/// Sets the slab and tile budgets (in floats). Results do not depend on them; tests use small
/// ones so that slab and tile edges are exercised on small shapes.
pub fn set_budgets(slab: usize, tile: usize) {
    SLAB_BUDGET.store(slab.max(1), Ordering::Relaxed);
    TILE_BUDGET.store(tile.max(1), Ordering::Relaxed);
}

/// Whether the geometry suits this path: stride 1, one group, odd k ≥ 3, padding k/2.
pub fn applies(s: &ConvShape) -> bool {
    s.stride == 1 && s.groups == 1 && s.k % 2 == 1 && s.k >= 3 && s.pad == s.k / 2
}

/// Whether `dense` routes the conv here: the geometry applies and both channel counts are at
/// least 8 (each tap's GEMM has inner dimension Cin, or Cout for dx; with 1 input channel, the
/// network's first conv, im2col's 27-row GEMM measured faster: 0.22 s vs 0.60 s forward +
/// backward at 96³, `repux bench kernels`).
pub fn preferred(s: &ConvShape) -> bool {
    applies(s) && s.cin.min(s.cout) >= 8
}

/// Geometry of one slab.
#[derive(Clone, Copy)]
struct Grid {
    d: usize,
    h: usize,
    w: usize,
    p: usize,
    hp: usize,
    wp: usize,
    /// Floats per channel of the padded slab buffer (incl. the trailing 2p).
    chan: usize,
    /// Grid rows computed: (planes − 1)·Hp + H.
    rows: usize,
}

impl Grid {
    fn new(s: &ConvShape, planes: usize) -> Grid {
        let p = s.pad;
        let (hp, wp) = (s.h + 2 * p, s.w + 2 * p);
        Grid {
            d: s.d,
            h: s.h,
            w: s.w,
            p,
            hp,
            wp,
            chan: (planes + 2 * p) * hp * wp + 2 * p,
            rows: (planes - 1) * hp + s.h,
        }
    }
    fn taps(&self, k: usize) -> Vec<usize> {
        (0..k * k * k)
            .map(|t| ((t / (k * k)) * self.hp + (t / k) % k) * self.wp + t % k)
            .collect()
    }
}

/// Planes per slab for `c` channels.
fn slab_planes(s: &ConvShape, c: usize) -> usize {
    let per = c * (s.h + 2 * s.pad) * (s.w + 2 * s.pad);
    (SLAB_BUDGET.load(Ordering::Relaxed) / per.max(1))
        .saturating_sub(2 * s.pad)
        .clamp(1, s.d)
}

/// Copies depth planes `z0 − p .. z0 + planes + p` of `src` (`c × D × H × W`) into the padded
/// slab `dst` (`c × chan`), zeros outside the volume.
fn pad_slab(src: &[f32], c: usize, g: &Grid, z0: usize, planes: usize, dst: &mut [f32]) {
    let sp = g.d * g.h * g.w;
    dst[..c * g.chan]
        .par_chunks_mut(g.chan)
        .enumerate()
        .for_each(|(ci, out)| {
            out.fill(0.0);
            let chan = &src[ci * sp..][..sp];
            for zz in 0..planes + 2 * g.p {
                let z = z0 as isize + zz as isize - g.p as isize;
                if z < 0 || z >= g.d as isize {
                    continue;
                }
                for y in 0..g.h {
                    let o = (zz * g.hp + y + g.p) * g.wp + g.p;
                    out[o..o + g.w].copy_from_slice(&chan[(z as usize * g.h + y) * g.w..][..g.w]);
                }
            }
        });
}

/// The weights of a "same" conv seen as one `[rows × cols]` (output × input channels) block per
/// tap: tap t's block starts at `offset(t)` in `data` and is read with (row, column) strides
/// `strides`. The forward and dx convs read the same PyTorch weight through different views.
#[derive(Clone, Copy)]
struct TapWeights<'a, F> {
    data: &'a [f32],
    strides: (usize, usize),
    offset: F,
    rows: usize,
    cols: usize,
}

/// `out (m × D × H × W) [planes z0..] = Σ_t Wt · src_shifted` for one slab, `Wt` the `[m × c]`
/// block of tap t: `tile_of(r0, nr)` computes grid rows `r0 .. r0 + nr` as `(tile, row
/// stride)`, all m rows; the tiles run in parallel and are cropped into `out`.
fn slab_conv(
    g: &Grid,
    m: usize,
    z0: usize,
    out: &mut [f32],
    tile_of: impl Fn(usize, usize) -> (Vec<f32>, usize) + Sync,
) {
    let rows_per_tile = (TILE_BUDGET.load(Ordering::Relaxed) / (m * g.wp)).max(1);
    let tiles: Vec<(usize, usize)> = (0..g.rows)
        .step_by(rows_per_tile)
        .map(|r0| (r0, rows_per_tile.min(g.rows - r0)))
        .collect();
    let sp = g.d * g.h * g.w;
    let results: Vec<(Vec<f32>, usize)> =
        tiles.par_iter().map(|&(r0, nr)| tile_of(r0, nr)).collect();
    // Crop: grid row r = zz·Hp + y holds output row y of plane z0 + zz where y < H.
    let out_ptr = SharedOut::new(out);
    tiles
        .par_iter()
        .zip(results.par_iter())
        .for_each(|(&(r0, nr), (tile, n))| {
            for r in r0..r0 + nr {
                let (zz, y) = (r / g.hp, r % g.hp);
                if y >= g.h {
                    continue;
                }
                for co in 0..m {
                    let src_row = &tile[co * n + (r - r0) * g.wp..][..g.w];
                    let dst = co * sp + ((z0 + zz) * g.h + y) * g.w;
                    // SAFETY: distinct (co, plane, row) triples are disjoint ranges of `out`, and
                    // each grid row belongs to exactly one tile.
                    unsafe { out_ptr.write(dst, src_row) };
                }
            }
        });
}

/// One "same" conv of `x` (`n × c_in × D × H × W`) to `c_out` channels (the tap blocks are
/// `[c_out × c_in]`). Under bf16 on AVX512-BF16 the tiles come from `bf16_shifted` (weights
/// and each slab packed once), otherwise from one GEMM per tap.
fn conv_same<F: Fn(usize) -> usize + Sync>(
    s: &ConvShape,
    x: &[f32],
    wt: &TapWeights<F>,
) -> Vec<f32> {
    let (c_in, c_out) = (wt.cols, wt.rows);
    let sp = s.d * s.h * s.w;
    let mut y = vec![0f32; s.n * c_out * sp];
    let planes = slab_planes(s, c_in);
    let g0 = Grid::new(s, planes);
    let taps = g0.taps(s.k);
    let mut buf = vec![0f32; c_in * g0.chan];
    let packed = crate::bf16_shifted::runs_here().then(|| {
        crate::bf16_shifted::PackedTaps::new(taps.len(), c_out, c_in, |t, r, c| {
            wt.data[(wt.offset)(t) + r * wt.strides.0 + c * wt.strides.1]
        })
    });
    let mut slab = crate::bf16_shifted::PackedSlab::default();
    for n in 0..s.n {
        for z0 in (0..s.d).step_by(planes) {
            let pl = planes.min(s.d - z0);
            let g = Grid::new(s, pl);
            pad_slab(&x[n * c_in * sp..][..c_in * sp], c_in, &g, z0, pl, &mut buf);
            let src = &buf[..c_in * g.chan];
            let out = &mut y[n * c_out * sp..][..c_out * sp];
            if let Some(packed) = &packed {
                slab.pack(src, c_in, g.chan);
                let slab = &slab;
                slab_conv(&g, c_out, z0, out, |r0, nr| {
                    crate::bf16_shifted::tile(packed, &taps, slab, r0 * g.wp, nr * g.wp)
                });
            } else {
                slab_conv(&g, c_out, z0, out, |r0, nr| {
                    let n = nr * g.wp;
                    let mut tile = vec![0f32; c_out * n];
                    for (t, &off) in taps.iter().enumerate() {
                        matmul_with(
                            Parallelism::None,
                            [c_out, n, c_in],
                            Dst {
                                data: &mut tile,
                                row_stride: n,
                                accumulate: t > 0,
                            },
                            operand(&wt.data[(wt.offset)(t)..], wt.strides),
                            operand(&src[r0 * g.wp + off..], (g.chan, 1)),
                        );
                    }
                    (tile, n)
                });
            }
        }
    }
    y
}

/// `y = conv3d(x, w) + b` for shapes where [`applies`] holds.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let k3 = s.k.pow(3);
    // W[co, ci, t]: row co stride Cin·k³, column ci stride k³, tap t at offset t.
    let wt = TapWeights {
        data: w,
        strides: (s.cin * k3, k3),
        offset: |t| t,
        rows: s.cout,
        cols: s.cin,
    };
    let mut y = conv_same(s, x, &wt);
    if let Some(b) = b {
        add_bias(&mut y, b, s.d * s.h * s.w);
    }
    y
}

/// `dx` for upstream `dy`: the same conv on dY with Wᵀ and the taps reversed.
pub fn backward_dx(s: &ConvShape, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let k3 = s.k.pow(3);
    let t = ConvShape {
        cin: s.cout,
        cout: s.cin,
        ..*s
    };
    // W'[ci, co, t] = W[co, ci, k³−1−t]: row ci stride k³, column co stride Cin·k³.
    let wt = TapWeights {
        data: w,
        strides: (k3, s.cin * k3),
        offset: |tap| k3 - 1 - tap,
        rows: s.cin,
        cols: s.cout,
    };
    conv_same(&t, dy, &wt)
}

/// Whether [`backward_dw`] splits its work by output channels. By default it splits the columns
/// among `2 × threads` tasks, each summing all of dW; where those partial sums outweigh the first
/// slab's operands (few voxels, many channels), they cost more than the sums: 2 × 768 → 768 at
/// 3³ took 1.73 s, by channels 0.20 s; at 6³ 1.81 s and 0.15 s, the paper network's encoder5
/// (384 → 768 at 6³) 0.32 s and 0.13 s (`cargo run --release -p repux-kernels --example
/// winograd_route -- 2 768 768 3`, the "direct" dW, machine B).
pub fn dw_by_channels(s: &ConvShape) -> bool {
    let g = Grid::new(s, slab_planes(s, s.cin + s.cout));
    let chunks = 2 * rayon::current_num_threads();
    chunks * s.k.pow(3) * s.cout * s.cin > (s.cin + s.cout) * g.rows * g.wp
}

/// One depth slab of dW's operands: its grid, the padded input slab `xs` (`[Cin][chan]`), its
/// channels-last transpose `xt` (only where the AVX-512 sums run, else empty), and dY on the
/// grid (`[Cout × q]`, q = rows·Wp, zero on the thrown-away columns).
struct DwSlab<'a> {
    g: Grid,
    q: usize,
    taps: Vec<usize>,
    xs: &'a [f32],
    xt: &'a [f32],
    dyg: &'a [f32],
}

/// Calls `f` on every depth slab of every sample, in order (the buffers reused between slabs).
fn for_each_dw_slab(s: &ConvShape, x: &[f32], dy: &[f32], fast: bool, mut f: impl FnMut(DwSlab)) {
    let sp = s.d * s.h * s.w;
    let (ci_n, co_n) = (s.cin, s.cout);
    let planes = slab_planes(s, ci_n + co_n);
    let mut xbuf = vec![0f32; ci_n * Grid::new(s, planes).chan];
    let (mut xt, mut dyg) = (Vec::new(), Vec::new());
    for n in 0..s.n {
        let dyn_ = &dy[n * co_n * sp..][..co_n * sp];
        for z0 in (0..s.d).step_by(planes) {
            let pl = planes.min(s.d - z0);
            let g = Grid::new(s, pl);
            pad_slab(
                &x[n * ci_n * sp..][..ci_n * sp],
                ci_n,
                &g,
                z0,
                pl,
                &mut xbuf,
            );
            let q = g.rows * g.wp;
            dyg.clear();
            dyg.resize(co_n * q, 0.0);
            dyg.par_chunks_mut(q).enumerate().for_each(|(co, row)| {
                for zz in 0..pl {
                    for y in 0..s.h {
                        let r = zz * g.hp + y;
                        row[r * g.wp..r * g.wp + s.w]
                            .copy_from_slice(&dyn_[co * sp + ((z0 + zz) * s.h + y) * s.w..][..s.w]);
                    }
                }
            });
            let xs = &xbuf[..ci_n * g.chan];
            if fast {
                crate::shifted_dw::transpose(xs, ci_n, g.chan, g.chan, &mut xt);
            }
            f(DwSlab {
                g,
                q,
                taps: g.taps(s.k),
                xs,
                xt: &xt,
                dyg: &dyg,
            });
        }
    }
}

/// [`backward_dw`] over ranges of output channels (whole micro-kernel rows, `chunks` of them
/// where there are enough channels), each task summing its rows of dW over every column of every
/// slab in place: no partial sums of the whole dW to write and add up.
fn backward_dw_by_channels(
    s: &ConvShape,
    x: &[f32],
    dy: &[f32],
    chunks: usize,
    fast: bool,
) -> Vec<f32> {
    let k3 = s.k.pow(3);
    let (ci_n, co_n) = (s.cin, s.cout);
    let per = co_n.div_ceil(chunks).div_ceil(8) * 8;
    let ranges: Vec<(usize, usize)> = (0..co_n)
        .step_by(per)
        .map(|co0| (co0, per.min(co_n - co0)))
        .collect();
    // Per range: the padded sums of `shifted_dw` (AVX-512), or `[k³][rows][Cin]` (tap GEMMs).
    let mut parts: Vec<Vec<f32>> = ranges
        .iter()
        .map(|&(_, rows)| match fast {
            true => crate::shifted_dw::padded_part(k3, rows, ci_n),
            false => vec![0f32; k3 * rows * ci_n],
        })
        .collect();
    for_each_dw_slab(s, x, dy, fast, |slab| {
        let DwSlab {
            g,
            q,
            taps,
            xs,
            xt,
            dyg,
        } = slab;
        parts
            .par_iter_mut()
            .zip(&ranges)
            .for_each(|(part, &(co0, rows))| {
                if fast {
                    let chunk = crate::shifted_dw::Chunk {
                        dy: &dyg[co0 * q..],
                        q_stride: q,
                        c_out: rows,
                        xt,
                        c_in: ci_n,
                        taps: &taps,
                        q0: 0,
                        len: q,
                    };
                    crate::shifted_dw::chunk_dw_into(
                        &chunk,
                        crate::shifted_dw::Micro::Avx512,
                        part,
                    );
                    return;
                }
                for (t, &off) in taps.iter().enumerate() {
                    // part_t [rows × Cin] += dY[co0.., :] · X_shifted[:, :]ᵀ
                    matmul_with(
                        Parallelism::None,
                        [rows, ci_n, q],
                        Dst {
                            data: &mut part[t * rows * ci_n..],
                            row_stride: ci_n,
                            accumulate: true,
                        },
                        operand(&dyg[co0 * q..], (q, 1)),
                        operand(&xs[off..], (1, g.chan)),
                    );
                }
            });
    });
    // Per range [k³][rows][Cin] → dW [Cout][Cin][k³]
    let mut dw = vec![0f32; co_n * ci_n * k3];
    dw.par_chunks_mut(per * ci_n * k3)
        .zip(parts.par_iter().zip(&ranges))
        .for_each(|(out, (part, &(_, rows)))| {
            let unpadded;
            let part = match fast {
                true => {
                    unpadded = crate::shifted_dw::unpad(part, k3, rows, ci_n);
                    &unpadded
                }
                false => part,
            };
            for (pair, v) in out.chunks_mut(k3).enumerate() {
                for (t, v) in v.iter_mut().enumerate() {
                    *v = part[t * rows * ci_n + pair];
                }
            }
        });
    dw
}

/// `dw` (`[Cout, Cin, k, k, k]`) for upstream `dy`.
pub fn backward_dw(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let k3 = s.k.pow(3);
    let (ci_n, co_n) = (s.cin, s.cout);
    // fp32 on AVX-512: the taps' sums from the slab transposed once (`shifted_dw`), not a GEMM
    // per tap that packs its shifted view again.
    let fast = crate::shifted_dw::runs_here();
    let chunks = 2 * rayon::current_num_threads();
    if dw_by_channels(s) {
        return backward_dw_by_channels(s, x, dy, chunks, fast);
    }
    // Tap-major partial sums [k³][Cout × Cin], reduced at the end.
    let mut acc = vec![0f64; k3 * co_n * ci_n];
    for_each_dw_slab(s, x, dy, fast, |slab| {
        let DwSlab {
            g,
            q,
            taps,
            xs,
            xt,
            dyg,
        } = slab;
        let len = q.div_ceil(chunks);
        let parts: Vec<Vec<f32>> = (0..q)
            .step_by(len)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|q0| {
                let l = len.min(q - q0);
                if fast {
                    let chunk = crate::shifted_dw::Chunk {
                        dy: dyg,
                        q_stride: q,
                        c_out: co_n,
                        xt,
                        c_in: ci_n,
                        taps: &taps,
                        q0,
                        len: l,
                    };
                    return crate::shifted_dw::chunk_dw(&chunk, crate::shifted_dw::Micro::Avx512);
                }
                let mut part = vec![0f32; k3 * co_n * ci_n];
                for (t, &off) in taps.iter().enumerate() {
                    // part_t [Cout × Cin] = dY[:, q0..q0+l] · X_shifted[:, q0..q0+l]ᵀ
                    matmul_with(
                        Parallelism::None,
                        [co_n, ci_n, l],
                        Dst {
                            data: &mut part[t * co_n * ci_n..],
                            row_stride: ci_n,
                            accumulate: false,
                        },
                        operand(&dyg[q0..], (q, 1)),
                        operand(&xs[q0 + off..], (1, g.chan)),
                    );
                }
                part
            })
            .collect();
        for p in parts {
            acc.par_iter_mut()
                .zip(p.par_iter())
                .for_each(|(a, v)| *a += *v as f64);
        }
    });
    // [k³][Cout][Cin] → [Cout][Cin][k³]
    let mut dw = vec![0f32; co_n * ci_n * k3];
    dw.par_chunks_mut(k3).enumerate().for_each(|(oc_ic, out)| {
        for (t, v) in out.iter_mut().enumerate() {
            *v = acc[t * co_n * ci_n + oc_ic] as f32;
        }
    });
    dw
}
