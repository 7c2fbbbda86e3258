//! What the dense conv paths share (`dense`'s im2col, `shifted`'s shifted views and
//! `winograd`'s transforms): the conv geometry, the GEMM call with strided operands, and the
//! output buffer that parallel tiles write into.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// The geometry of one dense conv3d (the dense, shifted and Winograd paths all take it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    /// Input spatial size.
    pub d: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

impl ConvShape {
    /// Output spatial size `(i + 2p − k) / s + 1` per axis.
    pub fn out(&self) -> [usize; 3] {
        let o = |i: usize| (i + 2 * self.pad - self.k) / self.stride + 1;
        [o(self.d), o(self.h), o(self.w)]
    }
    pub fn input_len(&self) -> usize {
        self.n * self.cin * self.d * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.n * self.cout * self.out().iter().product::<usize>()
    }
    pub fn weight_len(&self) -> usize {
        self.cout * (self.cin / self.groups) * self.k.pow(3)
    }
}

/// A read-only matrix operand: element (r, c) is `data[r · strides.0 + c · strides.1]`, so a
/// transposed operand is the same slice read through swapped strides.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub strides: (usize, usize),
}

/// `data` read with row stride `strides.0` and column stride `strides.1`.
pub(crate) fn operand(data: &[f32], strides: (usize, usize)) -> Operand<'_> {
    Operand { data, strides }
}

/// A GEMM's output: row-major with row stride `row_stride`, overwritten or (`accumulate`)
/// added to.
pub(crate) struct Dst<'a> {
    pub data: &'a mut [f32],
    pub row_stride: usize,
    pub accumulate: bool,
}

/// `dst[m×n] (= or +=) lhs[m×k] · rhs[k×n]` for `[m, n, k] = dims`.
pub(crate) fn matmul_with(
    parallelism: Parallelism,
    [m, n, k]: [usize; 3],
    dst: Dst,
    lhs: Operand,
    rhs: Operand,
) {
    let Dst {
        data: dst,
        row_stride: dst_rs,
        accumulate,
    } = dst;
    let (lhs, lhs_strides) = (lhs.data, lhs.strides);
    let (rhs, rhs_strides) = (rhs.data, rhs.strides);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    // Bounds: the last element each operand's strides reach must lie inside its slice.
    assert!((m - 1) * dst_rs + n <= dst.len());
    assert!((m - 1) * lhs_strides.0 + (k - 1) * lhs_strides.1 < lhs.len());
    assert!((k - 1) * rhs_strides.0 + (n - 1) * rhs_strides.1 < rhs.len());
    let bf16 = crate::bf16::precision() == crate::bf16::Precision::Bf16;
    if bf16 {
        let level = crate::bf16::bf16_level();
        if level.accelerated() {
            let parallel = matches!(parallelism, Parallelism::Rayon(_));
            let dst = Dst {
                data: dst,
                row_stride: dst_rs,
                accumulate,
            };
            let (lhs, rhs) = (operand(lhs, lhs_strides), operand(rhs, rhs_strides));
            return crate::bf16_gemm::gemm(level, parallel, [m, n, k], dst, lhs, rhs);
        }
    }
    // bf16 operands (see `bf16`): rounded dense copies, reused per thread, taken out of their
    // cell so that a GEMM nested in this one on the same rayon thread finds its own.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (lhs, lhs_strides, rhs, rhs_strides) = if bf16 {
        a = ROUNDED_LHS.take();
        b = ROUNDED_RHS.take();
        crate::bf16::round_operand(lhs, lhs_strides, m, k, &mut a);
        crate::bf16::round_operand(rhs, rhs_strides, k, n, &mut b);
        (&a[..], (k, 1), &b[..], (n, 1))
    } else {
        (lhs, lhs_strides, rhs, rhs_strides)
    };
    // SAFETY: the asserts above keep every access in bounds (the rounded copies are dense m×k
    // and k×n matrices); the slices do not alias (dst is the only &mut).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.1 as isize,
            lhs_strides.0 as isize,
            rhs.as_ptr(),
            rhs_strides.1 as isize,
            rhs_strides.0 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
    if bf16 {
        ROUNDED_LHS.set(a);
        ROUNDED_RHS.set(b);
    }
}

thread_local! {
    static ROUNDED_LHS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    static ROUNDED_RHS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

static POISON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For tests: fill the outputs that kernels write whole into uninitialised memory (skipping the
/// zeroing) with NaN first, so that a float a kernel failed to write shows against the
/// reference. Process-wide; off by default.
pub fn poison_fresh_outputs(on: bool) {
    POISON.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// [`poison_fresh_outputs`]' NaN over `fresh` when it is on.
pub(crate) fn poison(fresh: &mut [std::mem::MaybeUninit<f32>]) {
    if POISON.load(std::sync::atomic::Ordering::Relaxed) {
        fresh.par_iter_mut().for_each(|v| {
            v.write(f32::NAN);
        });
    }
}

/// A vector of `len` floats that `fill` writes, each element exactly once, through the
/// uninitialised view it is given — for outputs a kernel writes whole, which so skip being
/// zeroed first. Panics, leaving nothing half-made, if `fill` does.
///
/// # Safety
/// `fill` must write all `len` elements.
pub(crate) unsafe fn written(
    len: usize,
    fill: impl FnOnce(&mut [std::mem::MaybeUninit<f32>]),
) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    let fresh = &mut v.spare_capacity_mut()[..len];
    poison(fresh);
    fill(fresh);
    // SAFETY: `fill` wrote all `len` elements (the caller's promise).
    unsafe { v.set_len(len) };
    v
}

/// [`written`] for parallel tasks that each write their own ranges of the output (the tiles
/// of a conv) through a [`SharedOut`].
///
/// # Safety
/// The tasks `fill` runs must together write all `len` elements, in disjoint ranges.
pub(crate) unsafe fn written_shared(len: usize, fill: impl FnOnce(SharedOut)) -> Vec<f32> {
    // SAFETY: passed on to the caller.
    unsafe { written(len, |fresh| fill(SharedOut(fresh.as_mut_ptr().cast(), len))) }
}

/// An output buffer that parallel tasks writing disjoint ranges share (tiles of a conv).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(*mut f32, usize);
// SAFETY: only `write` touches the buffer, and its callers promise disjoint ranges.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
impl SharedOut {
    /// The buffer must outlive every `write`.
    pub(crate) fn new(buf: &mut [f32]) -> SharedOut {
        SharedOut(buf.as_mut_ptr(), buf.len())
    }
    /// # Safety
    /// Concurrent callers write disjoint ranges, while the buffer is alive.
    pub(crate) unsafe fn write(&self, at: usize, v: &[f32]) {
        assert!(at + v.len() <= self.1);
        std::ptr::copy_nonoverlapping(v.as_ptr(), self.0.add(at), v.len());
    }
}

/// The bias gradient: `db[c] = Σ_n Σ_sp dy[n, c, sp]` for `dy` of `N × C × sp`, summed in f64.
/// In parallel over channels, vectorised along rows (8 f64 lanes); one helper for the dense and
/// depthwise convs, whose own sums had been serial or scalar.
pub fn bias_grad(dy: &[f32], c: usize, sp: usize) -> Vec<f32> {
    assert!(
        c > 0 && sp > 0 && dy.len().is_multiple_of(c * sp),
        "bias gradient: {} values are not rows of {c} × {sp}",
        dy.len()
    );
    let n = dy.len() / (c * sp);
    let isa = crate::simd::isa();
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut total = 0f64;
            for b in 0..n {
                let mut s = 0f64;
                row_sum(isa, &dy[(b * c + ch) * sp..][..sp], &mut s);
                total += s;
            }
            total as f32
        })
        .collect()
}

crate::simd::isa_dispatch!(row_sum => row_sum_impl(a: &[f32], acc: &mut f64));

/// `acc = Σ a` in f64, 8 lanes.
#[inline(always)]
fn row_sum_impl(a: &[f32], acc: &mut f64) {
    const LANES: usize = 8;
    let mut s = [0f64; LANES];
    let chunks = a.chunks_exact(LANES);
    let rest = chunks.remainder();
    for x in chunks {
        for l in 0..LANES {
            s[l] += x[l] as f64;
        }
    }
    *acc = s.iter().sum::<f64>() + rest.iter().map(|&v| v as f64).sum::<f64>();
}

/// `y[n, c, …] += b[c]` for `y` of `N × C × sp` (C = `b.len()`).
pub(crate) fn add_bias(y: &mut [f32], b: &[f32], sp: usize) {
    y.par_chunks_mut(sp).enumerate().for_each(|(nc, out)| {
        let bv = b[nc % b.len()];
        out.iter_mut().for_each(|v| *v += bv);
    });
}
