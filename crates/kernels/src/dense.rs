//! Dense (and grouped) conv3d with a cubic kernel, and the decoder's kernel-2 stride-2
//! transposed conv, forward and backward, as im2col + GEMM (the `gemm` crate). Stride-1 "same"
//! convs (the networks' 3³ convs) skip the columns matrix: `shifted.rs`.
//!
//! Shapes (PyTorch's layouts): x `[N, Cin, D, H, W]`; conv weight `[Cout, Cin/g, k, k, k]`;
//! transposed weight `[Cin, Cout, 2, 2, 2]`; outputs `[N, Cout, D', H', W']`.
//!
//! The columns matrix (`Cin/g · k³` rows × output positions) is built for a slab of output
//! depth planes at a time, so memory stays bounded (about [`COLS_BUDGET`] floats) at any volume
//! size. A 1³ stride-1 conv multiplies the input directly, without columns. Work inside a slab
//! is parallel: im2col and col2im over rows (each row of the columns matrix touches one input
//! channel only, so col2im's scatter-add never races), the GEMMs over rayon.

pub use crate::conv_core::ConvShape;
use crate::conv_core::{add_bias, matmul_with, operand, Dst, Operand};
use gemm::Parallelism;
use rayon::prelude::*;

/// Upper bound on the floats of one columns slab (16 MiB of f32).
pub const COLS_BUDGET: usize = 4 << 20;

impl ConvShape {
    pub(crate) fn check(&self, x: usize, w: usize) {
        assert!(
            self.k >= 1 && self.stride >= 1 && self.groups >= 1,
            "conv3d: kernel, stride and groups must be positive: {self:?}"
        );
        assert!(
            self.cin.is_multiple_of(self.groups) && self.cout.is_multiple_of(self.groups),
            "conv3d: channels not divisible by groups: {self:?}"
        );
        assert!(
            [self.d, self.h, self.w]
                .iter()
                .all(|&i| i + 2 * self.pad >= self.k),
            "conv3d: kernel larger than the padded input: {self:?}"
        );
        assert_eq!(
            x,
            self.input_len(),
            "conv3d: input length does not match {self:?}"
        );
        assert_eq!(
            w,
            self.weight_len(),
            "conv3d: weight length does not match {self:?}"
        );
    }
    pub(crate) fn direct(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    /// Rows of the columns matrix per group: `Cin/g · k³`.
    fn rows(&self) -> usize {
        self.cin / self.groups * self.k.pow(3)
    }
    /// Output depth planes per slab.
    fn slab(&self) -> usize {
        let [od, oh, ow] = self.out();
        (COLS_BUDGET / (self.cin * self.k.pow(3) * oh * ow).max(1)).clamp(1, od)
    }
}

fn par() -> Parallelism {
    match rayon::current_num_threads() {
        1 => Parallelism::None,
        t => Parallelism::Rayon(t),
    }
}

/// [`matmul_with`] on all rayon threads.
pub(crate) fn matmul(dims: [usize; 3], dst: Dst, lhs: Operand, rhs: Operand) {
    matmul_with(par(), dims, dst, lhs, rhs)
}

/// Fills `cols` (`Cin_g·k³` rows × `planes·oh·ow`) for sample `n`, group `g`, output planes
/// `z0..z0+planes`.
fn im2col(
    s: &ConvShape,
    x: &[f32],
    n: usize,
    g: usize,
    z0: usize,
    planes: usize,
    cols: &mut [f32],
) {
    let [_, oh, ow] = s.out();
    let (k, st, p) = (s.k, s.stride as isize, s.pad as isize);
    let cg = s.cin / s.groups;
    let sp = s.d * s.h * s.w;
    let width = planes * oh * ow;
    cols[..s.rows() * width]
        .par_chunks_mut(width)
        .enumerate()
        .for_each(|(r, row)| {
            let (ci, q) = (r / (k * k * k), r % (k * k * k));
            let (a, b, c) = (
                (q / (k * k)) as isize,
                (q / k % k) as isize,
                (q % k) as isize,
            );
            let src = &x[(n * s.cin + g * cg + ci) * sp..][..sp];
            for zz in 0..planes {
                let iz = (z0 + zz) as isize * st + a - p;
                for y in 0..oh {
                    let iy = y as isize * st + b - p;
                    let out = &mut row[(zz * oh + y) * ow..][..ow];
                    if iz < 0 || iz >= s.d as isize || iy < 0 || iy >= s.h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let line = &src[(iz as usize * s.h + iy as usize) * s.w..][..s.w];
                    if st == 1 {
                        // ix = x + c − p: copy the in-range run, zero the rest.
                        let lo = (p - c).clamp(0, ow as isize) as usize;
                        let hi = ((s.w as isize + p - c).clamp(0, ow as isize)) as usize;
                        out[..lo].fill(0.0);
                        out[hi..].fill(0.0);
                        if lo < hi {
                            let start = (lo as isize + c - p) as usize;
                            out[lo..hi].copy_from_slice(&line[start..start + hi - lo]);
                        }
                    } else {
                        for (xo, v) in out.iter_mut().enumerate() {
                            let ix = xo as isize * st + c - p;
                            *v = if ix >= 0 && ix < s.w as isize {
                                line[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`im2col`]: adds `cols` back into `dx` for sample `n`, group `g`.
fn col2im(
    s: &ConvShape,
    cols: &[f32],
    n: usize,
    g: usize,
    z0: usize,
    planes: usize,
    dx: &mut [f32],
) {
    let [_, oh, ow] = s.out();
    let (k, st, p) = (s.k, s.stride as isize, s.pad as isize);
    let cg = s.cin / s.groups;
    let sp = s.d * s.h * s.w;
    let width = planes * oh * ow;
    let k3 = k * k * k;
    // One task per input channel: its k³ rows all write into that channel only.
    let base = (n * s.cin + g * cg) * sp;
    dx[base..base + cg * sp]
        .par_chunks_mut(sp)
        .enumerate()
        .for_each(|(ci, dst)| {
            for q in 0..k3 {
                let (a, b, c) = (
                    (q / (k * k)) as isize,
                    (q / k % k) as isize,
                    (q % k) as isize,
                );
                let row = &cols[(ci * k3 + q) * width..][..width];
                for zz in 0..planes {
                    let iz = (z0 + zz) as isize * st + a - p;
                    if iz < 0 || iz >= s.d as isize {
                        continue;
                    }
                    for y in 0..oh {
                        let iy = y as isize * st + b - p;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        let line = &mut dst[(iz as usize * s.h + iy as usize) * s.w..][..s.w];
                        let src = &row[(zz * oh + y) * ow..][..ow];
                        for (xo, v) in src.iter().enumerate() {
                            let ix = xo as isize * st + c - p;
                            if ix >= 0 && ix < s.w as isize {
                                line[ix as usize] += v;
                            }
                        }
                    }
                }
            }
        });
}

/// Calls `f(n, g, z0, planes, cols)` for every slab, with `cols` holding its columns (or, for
/// a direct 1³ conv, the input channels of the group for all positions).
fn for_each_slab(s: &ConvShape, x: &[f32], mut f: impl FnMut(usize, usize, usize, usize, &[f32])) {
    let [od, oh, ow] = s.out();
    let sp_out = od * oh * ow;
    let cg = s.cin / s.groups;
    if s.direct() {
        for n in 0..s.n {
            for g in 0..s.groups {
                f(
                    n,
                    g,
                    0,
                    od,
                    &x[(n * s.cin + g * cg) * sp_out..][..cg * sp_out],
                );
            }
        }
        return;
    }
    let slab = s.slab();
    let mut cols = vec![0f32; s.rows() * slab * oh * ow];
    for n in 0..s.n {
        for g in 0..s.groups {
            for z0 in (0..od).step_by(slab) {
                let planes = slab.min(od - z0);
                im2col(s, x, n, g, z0, planes, &mut cols);
                f(n, g, z0, planes, &cols[..s.rows() * planes * oh * ow]);
            }
        }
    }
}

/// Whether stride-1 3³ convs (forward, dx and dW) take Winograd F(4³, 3³) (`winograd.rs`, the
/// default) or the columns-free direct path (`shifted.rs`).
static WINOGRAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Routes stride-1 3³ convs to Winograd (`true`, the default) or to the direct path (a test
/// compares the two through these entry points).
pub fn use_winograd(on: bool) {
    WINOGRAD.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this conv's forward, dx and dW run Winograd: the shape suits it, it is switched on, and
/// the GEMMs are fp32: bf16 operands on Winograd's transformed values give a relative error of
/// 3e-1 where the direct GEMMs give 1.8e-3 (`cargo test --release -p repux-kernels --test
/// bf16_props bf16_routes -- --nocapture` prints both).
fn takes_winograd(s: &ConvShape) -> bool {
    crate::winograd::preferred(s)
        && WINOGRAD.load(std::sync::atomic::Ordering::Relaxed)
        && crate::bf16::precision() == crate::bf16::Precision::Fp32
}

/// `y = conv3d(x, w) + b`, PyTorch's semantics (cross-correlation, zero padding).
pub fn conv3d_forward(s: &ConvShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    s.check(x.len(), w.len());
    if takes_winograd(s) {
        return crate::winograd::forward(s, x, w, b);
    }
    if crate::shifted::preferred(s) {
        return crate::shifted::forward(s, x, w, b);
    }
    let [od, oh, ow] = s.out();
    let sp_out = od * oh * ow;
    let (og, rows) = (s.cout / s.groups, s.rows());
    let mut y = vec![0f32; s.output_len()];
    for_each_slab(s, x, |n, g, z0, planes, cols| {
        let width = planes * oh * ow;
        let dst = &mut y[(n * s.cout + g * og) * sp_out + z0 * oh * ow..];
        // y[n, g·og.., slab] = W_g [og × rows] · cols [rows × width]
        matmul(
            [og, width, rows],
            Dst {
                data: dst,
                row_stride: sp_out,
                accumulate: false,
            },
            operand(&w[g * og * rows..], (rows, 1)),
            operand(cols, (width, 1)),
        );
    });
    if let Some(b) = b {
        add_bias(&mut y, b, sp_out);
    }
    y
}

/// Gradients of [`conv3d_forward`] for upstream `dy`: `(dx, dw, db)`; `dx` only when
/// `need_dx` (the network input needs none), otherwise empty.
pub fn conv3d_backward(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    s.check(x.len(), w.len());
    assert_eq!(
        dy.len(),
        s.output_len(),
        "conv3d backward: dy length does not match {s:?}"
    );
    let [od, oh, ow] = s.out();
    let sp_out = od * oh * ow;
    let db = || crate::conv_core::bias_grad(dy, s.cout, sp_out);
    if takes_winograd(s) {
        let dx = match need_dx {
            true => crate::winograd::backward_dx(s, w, dy),
            false => Vec::new(),
        };
        return (dx, crate::winograd::backward_dw(s, x, dy), db());
    }
    if crate::shifted::preferred(s) {
        let dx = match need_dx {
            true => crate::shifted::backward_dx(s, w, dy),
            false => Vec::new(),
        };
        return (dx, crate::shifted::backward_dw(s, x, dy), db());
    }
    let (og, rows) = (s.cout / s.groups, s.rows());
    // dW_g [og × rows] += dY_slab [og × width] · colsᵀ [width × rows]
    let mut dw = vec![0f32; w.len()];
    for_each_slab(s, x, |n, g, z0, planes, cols| {
        let width = planes * oh * ow;
        let g_dy = &dy[(n * s.cout + g * og) * sp_out + z0 * oh * ow..];
        matmul(
            [og, rows, width],
            Dst {
                data: &mut dw[g * og * rows..],
                row_stride: rows,
                accumulate: true,
            },
            operand(g_dy, (sp_out, 1)),
            operand(cols, (1, width)),
        );
    });
    let db = db();
    if !need_dx {
        return (Vec::new(), dw, db);
    }
    let mut dx = vec![0f32; x.len()];
    let cg = s.cin / s.groups;
    if s.direct() {
        // dx[n, g] [cg × P] = W_gᵀ [cg × og] · dY [og × P]
        for n in 0..s.n {
            for g in 0..s.groups {
                let d = &mut dx[(n * s.cin + g * cg) * sp_out..];
                matmul(
                    [cg, sp_out, og],
                    Dst {
                        data: d,
                        row_stride: sp_out,
                        accumulate: false,
                    },
                    operand(&w[g * og * rows..], (1, rows)),
                    operand(&dy[(n * s.cout + g * og) * sp_out..], (sp_out, 1)),
                );
            }
        }
        return (dx, dw, db);
    }
    let slab = s.slab();
    let mut cols = vec![0f32; rows * slab * oh * ow];
    for n in 0..s.n {
        for g in 0..s.groups {
            for z0 in (0..od).step_by(slab) {
                let planes = slab.min(od - z0);
                let width = planes * oh * ow;
                // dcols [rows × width] = W_gᵀ [rows × og] · dY_slab [og × width]
                let g_dy = &dy[(n * s.cout + g * og) * sp_out + z0 * oh * ow..];
                matmul(
                    [rows, width, og],
                    Dst {
                        data: &mut cols,
                        row_stride: width,
                        accumulate: false,
                    },
                    operand(&w[g * og * rows..], (1, rows)),
                    operand(g_dy, (sp_out, 1)),
                );
                col2im(s, &cols[..rows * width], n, g, z0, planes, &mut dx);
            }
        }
    }
    (dx, dw, db)
}

/// The geometry of one kernel-2 stride-2 transposed conv (no padding, no groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpShape {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    /// Input spatial size; the output is twice it.
    pub d: usize,
    pub h: usize,
    pub w: usize,
}

impl UpShape {
    pub fn input_len(&self) -> usize {
        self.n * self.cin * self.d * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.input_len() / self.cin * self.cout * 8
    }
    pub fn weight_len(&self) -> usize {
        self.cin * self.cout * 8
    }
    fn check(&self, x: usize, w: usize) {
        assert_eq!(
            x,
            self.input_len(),
            "conv_transpose3d: input length does not match {self:?}"
        );
        assert_eq!(
            w,
            self.weight_len(),
            "conv_transpose3d: weight length does not match {self:?}"
        );
    }
}

/// Moves between `t [Cout·8 × P_in]` (row `co·8 + (a·4 + b·2 + c)`) and `y [Cout, 2D, 2H, 2W]`
/// of one sample: `y[co, 2i+a, 2j+b, 2k+c] ↔ t[co·8 + abc, (i·H + j)·W + k]`.
fn shuffle(s: &UpShape, t: &mut [f32], y: &mut [f32], to_y: bool) {
    let sp = s.d * s.h * s.w;
    let (h2, w2) = (2 * s.h, 2 * s.w);
    let run = |tc: &mut [f32], yc: &mut [f32]| {
        for abc in 0..8 {
            let (a, b, c) = (abc / 4, abc / 2 % 2, abc % 2);
            let row = &mut tc[abc * sp..][..sp];
            for i in 0..s.d {
                for j in 0..s.h {
                    let yl = &mut yc[((2 * i + a) * h2 + 2 * j + b) * w2..][..w2];
                    let tl = &mut row[(i * s.h + j) * s.w..][..s.w];
                    for (kk, tv) in tl.iter_mut().enumerate() {
                        if to_y {
                            yl[2 * kk + c] = *tv;
                        } else {
                            *tv = yl[2 * kk + c];
                        }
                    }
                }
            }
        }
    };
    t.par_chunks_mut(8 * sp)
        .zip(y.par_chunks_mut(8 * sp))
        .for_each(|(tc, yc)| run(tc, yc));
}

/// `y = conv_transpose3d(x, w)`, kernel 2, stride 2 (PyTorch's semantics).
pub fn conv_transpose_k2s2_forward(s: &UpShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    s.check(x.len(), w.len());
    let sp = s.d * s.h * s.w;
    let m = s.cout * 8;
    let mut y = vec![0f32; s.output_len()];
    let mut t = vec![0f32; m * sp];
    for n in 0..s.n {
        // t [Cout·8 × P] = Wᵀ [Cout·8 × Cin] · x_n [Cin × P]
        matmul(
            [m, sp, s.cin],
            Dst {
                data: &mut t,
                row_stride: sp,
                accumulate: false,
            },
            operand(w, (1, m)),
            operand(&x[n * s.cin * sp..], (sp, 1)),
        );
        shuffle(s, &mut t, &mut y[n * m * sp..][..m * sp], true);
    }
    y
}

/// Gradients of [`conv_transpose_k2s2_forward`]: `(dx, dw)`.
pub fn conv_transpose_k2s2_backward(
    s: &UpShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    s.check(x.len(), w.len());
    assert_eq!(
        dy.len(),
        s.output_len(),
        "conv_transpose3d backward: dy length does not match {s:?}"
    );
    let sp = s.d * s.h * s.w;
    let m = s.cout * 8;
    let mut dx = vec![0f32; x.len()];
    let mut dw = vec![0f32; w.len()];
    let mut t = vec![0f32; m * sp];
    let mut dyn_ = vec![0f32; m * sp];
    for n in 0..s.n {
        dyn_.copy_from_slice(&dy[n * m * sp..][..m * sp]);
        shuffle(s, &mut t, &mut dyn_, false);
        // dx_n [Cin × P] = W [Cin × Cout·8] · t [Cout·8 × P]
        matmul(
            [s.cin, sp, m],
            Dst {
                data: &mut dx[n * s.cin * sp..],
                row_stride: sp,
                accumulate: false,
            },
            operand(w, (m, 1)),
            operand(&t, (sp, 1)),
        );
        // dW [Cin × Cout·8] += x_n [Cin × P] · tᵀ [P × Cout·8]
        matmul(
            [s.cin, m, sp],
            Dst {
                data: &mut dw,
                row_stride: m,
                accumulate: true,
            },
            operand(&x[n * s.cin * sp..], (sp, 1)),
            operand(&t, (1, sp)),
        );
    }
    (dx, dw)
}

/// GFLOP/s of an `n × n × n` f32 GEMM through the same path the convolutions use (median of
/// `repeats`): the machine's practical fp32 peak that conv throughput is compared with.
pub fn gemm_gflops(n: usize, repeats: usize) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    matmul(
        [n, n, n],
        Dst {
            data: &mut c,
            row_stride: n,
            accumulate: false,
        },
        operand(&a, (n, 1)),
        operand(&b, (n, 1)),
    );
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = std::time::Instant::now();
            matmul(
                [n, n, n],
                Dst {
                    data: &mut c,
                    row_stride: n,
                    accumulate: false,
                },
                operand(&a, (n, 1)),
                operand(&b, (n, 1)),
            );
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|x, y| x.total_cmp(y));
    2.0 * (n as f64).powi(3) / times[times.len() / 2] / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes() {
        let s = ConvShape {
            n: 1,
            cin: 1,
            cout: 4,
            d: 96,
            h: 96,
            w: 96,
            k: 7,
            stride: 2,
            pad: 3,
            groups: 1,
        };
        assert_eq!(s.out(), [48, 48, 48]);
        let s = ConvShape {
            k: 2,
            stride: 2,
            pad: 0,
            ..s
        };
        assert_eq!(s.out(), [48, 48, 48]);
        let s = ConvShape {
            k: 3,
            stride: 1,
            pad: 1,
            ..s
        };
        assert_eq!(s.out(), [96, 96, 96]);
    }
}
