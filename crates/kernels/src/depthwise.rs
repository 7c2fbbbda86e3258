//! Depthwise conv3d, stride 1, 'same' zero padding, odd K from 1 to 31, with bias — forward and
//! the three gradients — by two algorithms:
//!
//! - **FFT**: per (sample, channel) a 3-D real FFT of the zero-padded input, times the kernel's
//!   spectrum, inverse FFT. Padding each axis to `L ≥ S + K/2` (rounded up to a 2·3·5-smooth size)
//!   is enough: the 'same' outputs never see the circular wrap. Kernel spectra are computed once
//!   per channel and can be kept across calls ([`KernelSpectra`]) for inference.
//! - **Direct**: loops over kernel taps with the innermost loop along W, contiguous and
//!   auto-vectorised; best for small K.
//!
//! [`choose`] picks by a cost model; [`DwAlgo`] overrides it. Work is split over (sample,
//! channel) pairs (forward, input gradient) or channels (weight gradient) with rayon.
//!
//! Definitions (P = K/2): `y[n,c,p] = b[c] + Σ_q x[n,c,p+q−P]·w[c,q]`;
//! `dx = conv(dy, flip(w))`; `dw[c,q] = Σ_{n,p} dy[n,c,p]·x[n,c,p+q−P]`; `db[c] = Σ_{n,p} dy[n,c,p]`.

use rayon::prelude::*;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

use crate::conv_core::SharedOut;
use crate::simd::{isa, isa_dispatch};

/// Shape of a depthwise convolution: input/output N × C × D × H × W, weight C × K × K × K.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwShape {
    pub n: usize,
    pub c: usize,
    pub d: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
}

impl DwShape {
    pub fn spatial(&self) -> usize {
        self.d * self.h * self.w
    }
    pub fn input_len(&self) -> usize {
        self.n * self.c * self.spatial()
    }
    pub fn weight_len(&self) -> usize {
        self.c * self.k.pow(3)
    }
    /// Panics with a clear message on inconsistent slices (a programming error, not user input).
    fn check(&self, x: usize, w: usize) {
        assert!(
            self.k % 2 == 1 && self.k <= 31,
            "depthwise conv: K = {} must be odd and ≤ 31",
            self.k
        );
        assert_eq!(
            x,
            self.input_len(),
            "depthwise conv: input length does not match {self:?}"
        );
        assert_eq!(
            w,
            self.weight_len(),
            "depthwise conv: weight length does not match {self:?}"
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DwAlgo {
    /// Let the cost model decide.
    Auto,
    Direct,
    Fft,
}

/// Smallest 2^a·3^b·5^c ≥ n.
pub fn fast_len(n: usize) -> usize {
    let mut m = n.max(1);
    loop {
        let mut r = m;
        for f in [2, 3, 5] {
            while r.is_multiple_of(f) {
                r /= f;
            }
        }
        if r == 1 {
            return m;
        }
        m += 1;
    }
}

fn fft_dims(s: &DwShape) -> [usize; 3] {
    // The kernel itself must fit too (tiny volumes).
    let p = s.k / 2;
    [
        fast_len((s.d + p).max(s.k)),
        fast_len((s.h + p).max(s.k)),
        fast_len((s.w + p).max(s.k)),
    ]
}

/// The cost model: direct ≈ 2·S·K³ flops per (sample, channel); FFT ≈ two transforms of
/// L³·log₂L³ at ~5 flops each, weighted ×2 for their lower efficiency per flop. Calibrated on the
/// 2-core machine (`repux bench kernels`): FFT wins 6× at
/// K = 7 on 48³ and 10× at K = 21 on 24³; the two tie at K = 21 on 6³.
pub fn choose(s: &DwShape) -> DwAlgo {
    if s.k <= 3 {
        return DwAlgo::Direct;
    }
    let direct = 2.0 * s.spatial() as f64 * (s.k.pow(3)) as f64;
    let l = fft_dims(s);
    let l3 = (l[0] * l[1] * l[2]) as f64;
    let fft = 2.0 * 2.0 * 5.0 * l3 * l3.log2();
    if fft < direct {
        DwAlgo::Fft
    } else {
        DwAlgo::Direct
    }
}

fn resolve(s: &DwShape, algo: DwAlgo) -> DwAlgo {
    match algo {
        DwAlgo::Auto => choose(s),
        a => a,
    }
}

/// Forward: `N×C×D×H×W` input, `C×K³` weight, optional `C` bias → output like the input.
pub fn forward(s: &DwShape, x: &[f32], w: &[f32], b: Option<&[f32]>, algo: DwAlgo) -> Vec<f32> {
    s.check(x.len(), w.len());
    match resolve(s, algo) {
        DwAlgo::Fft => {
            let spectra = KernelSpectra::new(s, w, false);
            spectra.forward(x, b)
        }
        _ => direct_forward(s, x, w, b),
    }
}

/// Gradients for upstream `dy` (same shape as the output): `(dx, dw, db)`.
pub fn backward(
    s: &DwShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    algo: DwAlgo,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    s.check(x.len(), w.len());
    assert_eq!(
        dy.len(),
        x.len(),
        "depthwise conv: gradient length does not match the input"
    );
    let db = bias_grad(s, dy);
    match resolve(s, algo) {
        DwAlgo::Fft => {
            let (dx, dw) = fft_backward(&KernelSpectra::new(s, w, false), Inputs::Volume(x), dy);
            (dx, dw, db)
        }
        _ => {
            let flipped = flip_kernels(w, s.c, s.k);
            let dx = direct_forward(s, dy, &flipped, None);
            (dx, direct_weight_grad(s, x, dy), db)
        }
    }
}

fn flip_kernels(w: &[f32], c: usize, k: usize) -> Vec<f32> {
    let k3 = k * k * k;
    let mut out = vec![0f32; w.len()];
    for ch in 0..c {
        for i in 0..k3 {
            out[ch * k3 + i] = w[ch * k3 + k3 - 1 - i];
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Direct path

fn direct_forward(s: &DwShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let (k, p, sp) = (s.k, s.k / 2, s.spatial());
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(sp).enumerate().for_each(|(nc, out)| {
        let c = nc % s.c;
        let src = &x[nc * sp..(nc + 1) * sp];
        let wk = &w[c * k * k * k..(c + 1) * k * k * k];
        out.fill(b.map(|b| b[c]).unwrap_or(0.0));
        for z in 0..s.d {
            for a in 0..k {
                let iz = z as isize + a as isize - p as isize;
                if iz < 0 || iz >= s.d as isize {
                    continue;
                }
                for yy in 0..s.h {
                    let orow = &mut out[(z * s.h + yy) * s.w..(z * s.h + yy + 1) * s.w];
                    for bb in 0..k {
                        let iy = yy as isize + bb as isize - p as isize;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        let irow = &src[(iz as usize * s.h + iy as usize) * s.w
                            ..(iz as usize * s.h + iy as usize + 1) * s.w];
                        for cc in 0..k {
                            let wv = wk[(a * k + bb) * k + cc];
                            // out[x] += wv · in[x + cc − P] for x with 0 ≤ x + cc − P < W.
                            let lo = p.saturating_sub(cc);
                            let hi = (s.w + p).saturating_sub(cc).min(s.w);
                            if lo >= hi {
                                continue;
                            }
                            let shift = lo + cc - p;
                            for (o, i) in
                                orow[lo..hi].iter_mut().zip(&irow[shift..shift + (hi - lo)])
                            {
                                *o += wv * i;
                            }
                        }
                    }
                }
            }
        }
    });
    y
}

fn direct_weight_grad(s: &DwShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, p, sp) = (s.k, s.k / 2, s.spatial());
    let mut dw = vec![0f32; s.weight_len()];
    dw.par_chunks_mut(k * k * k).enumerate().for_each(|(c, g)| {
        let mut acc = vec![0f64; k * k * k];
        for n in 0..s.n {
            let xs = &x[(n * s.c + c) * sp..(n * s.c + c + 1) * sp];
            let gs = &dy[(n * s.c + c) * sp..(n * s.c + c + 1) * sp];
            for a in 0..k {
                for bb in 0..k {
                    for cc in 0..k {
                        let lo = p.saturating_sub(cc);
                        let hi = (s.w + p).saturating_sub(cc).min(s.w);
                        if lo >= hi {
                            continue;
                        }
                        let shift = lo + cc - p;
                        let mut sum = 0f32;
                        for z in 0..s.d {
                            let iz = z as isize + a as isize - p as isize;
                            if iz < 0 || iz >= s.d as isize {
                                continue;
                            }
                            for yy in 0..s.h {
                                let iy = yy as isize + bb as isize - p as isize;
                                if iy < 0 || iy >= s.h as isize {
                                    continue;
                                }
                                let grow = &gs[(z * s.h + yy) * s.w..(z * s.h + yy + 1) * s.w];
                                let xrow = &xs[(iz as usize * s.h + iy as usize) * s.w
                                    ..(iz as usize * s.h + iy as usize + 1) * s.w];
                                sum += grow[lo..hi]
                                    .iter()
                                    .zip(&xrow[shift..shift + (hi - lo)])
                                    .map(|(g, v)| g * v)
                                    .sum::<f32>();
                            }
                        }
                        acc[(a * k + bb) * k + cc] += sum as f64;
                    }
                }
            }
        }
        for (o, a) in g.iter_mut().zip(acc) {
            *o = a as f32;
        }
    });
    dw
}

// ---------------------------------------------------------------------------------------------
// FFT path

/// Indices `start, start + 1, …` modulo an axis length, `len` of them: the planes or rows a crop
/// reads (a crop may wrap around the circular grid).
#[derive(Clone, Copy, Debug)]
struct Wrap {
    start: usize,
    len: usize,
}

impl Wrap {
    fn contains(&self, i: usize, l: usize) -> bool {
        (i + l - self.start) % l < self.len
    }
}

/// Plans for 3-D real FFTs of one padded size `l` (C order): a real FFT along the last axis,
/// then complex FFTs along axes 1 and 0.
///
/// Spectra are stored **axis 0 innermost**: bin `(i, j, kw)` at `(kw·l₁ + j)·l₀ + i`, so that the
/// axis-0 transforms run on contiguous lines, batched over the whole spectrum, with no gather.
/// Every spectrum of one `Fft3` shares the layout, and the products between spectra are
/// elementwise, so it never needs undoing.
struct Fft3 {
    l: [usize; 3],
    half: usize,
    r2c: Arc<dyn RealToComplex<f32>>,
    c2r: Arc<dyn ComplexToReal<f32>>,
    fwd: [Arc<dyn Fft<f32>>; 2],
    inv: [Arc<dyn Fft<f32>>; 2],
}

/// Planes transformed (and moved between layouts) together.
const PLANES: usize = 8;

/// One worker's buffers for an [`Fft3`] (allocated once per rayon task, reused across channels).
struct Work {
    real: Vec<f32>,
    /// [`PLANES`] planes of the spectrum, axis 1 innermost: `(kw, j)` at `kw·l₁ + j`.
    planes: Vec<Complex32>,
    /// A product of two spectra (the forward's; sized on first use).
    prod: Vec<Complex32>,
    row: Vec<Complex32>,
    /// One output row (a crop's staging).
    line: Vec<f32>,
    scratch: Vec<Complex32>,
}

impl Fft3 {
    fn new(l: [usize; 3]) -> Self {
        let mut rp = RealFftPlanner::<f32>::new();
        let mut cp = FftPlanner::<f32>::new();
        Fft3 {
            l,
            half: l[2] / 2 + 1,
            r2c: rp.plan_fft_forward(l[2]),
            c2r: rp.plan_fft_inverse(l[2]),
            fwd: [cp.plan_fft_forward(l[0]), cp.plan_fft_forward(l[1])],
            inv: [cp.plan_fft_inverse(l[0]), cp.plan_fft_inverse(l[1])],
        }
    }

    fn real_len(&self) -> usize {
        self.l[0] * self.l[1] * self.l[2]
    }

    fn spec_len(&self) -> usize {
        self.l[0] * self.l[1] * self.half
    }

    fn work(&self) -> Work {
        let scratch = [self.r2c.get_scratch_len(), self.c2r.get_scratch_len()]
            .into_iter()
            .chain(
                self.fwd
                    .iter()
                    .chain(&self.inv)
                    .map(|p| p.get_inplace_scratch_len()),
            )
            .max()
            .unwrap_or(0);
        Work {
            real: vec![0.0; self.real_len()],
            planes: vec![Complex32::default(); PLANES * self.l[1] * self.half],
            prod: Vec::new(),
            row: vec![Complex32::default(); self.half],
            line: vec![0.0; self.l[2]],
            scratch: vec![Complex32::default(); scratch],
        }
    }

    /// 1 / (number of points): the inverse transforms are unnormalised.
    fn norm(&self) -> f32 {
        1.0 / self.real_len() as f32
    }

    /// `real` (destroyed) → a new spectrum. Only rows `0..ext[1]` of planes `0..ext[0]` of
    /// `real` are read (each in full; a padded volume or kernel sits in that corner, zero
    /// elsewhere): the transforms of all-zero rows and planes are skipped. The spectrum is built
    /// in fresh memory (no zero fill first: every bin is written once); a caller that does not
    /// keep it hands it back to the allocator, which serves the next one from the same pages.
    ///
    /// Planes go [`PLANES`] at a time, so that moving them into the axis-0-innermost layout
    /// writes runs of consecutive bins rather than single ones.
    fn forward_corner(&self, real: &mut [f32], w: &mut Work, ext: [usize; 2]) -> Vec<Complex32> {
        let [l0, l1, l2] = self.l;
        let (e0, e1) = (ext[0].min(l0), ext[1].min(l1));
        let pl = l1 * self.half;
        let Work {
            planes,
            row,
            scratch,
            ..
        } = w;
        let mut spec: Vec<Complex32> = Vec::with_capacity(self.spec_len());
        let out = &mut spec.spare_capacity_mut()[..self.spec_len()];
        for i0 in (0..e0).step_by(PLANES) {
            let g = PLANES.min(e0 - i0);
            for (t, plane) in planes.chunks_exact_mut(pl).take(g).enumerate() {
                let i = i0 + t;
                for j in 0..e1 {
                    // Lengths match the plans by construction; realfft reports only length errors.
                    let _ = self.r2c.process_with_scratch(
                        &mut real[(i * l1 + j) * l2..(i * l1 + j + 1) * l2],
                        row,
                        scratch,
                    );
                    for (kw, v) in row.iter().enumerate() {
                        plane[kw * l1 + j] = *v;
                    }
                }
                for line in plane.chunks_exact_mut(l1) {
                    line[e1..].fill(Complex32::default());
                }
                self.fwd[1].process_with_scratch(plane, scratch);
            }
            for (at, line) in out.chunks_exact_mut(l0).enumerate() {
                for (t, v) in line[i0..i0 + g].iter_mut().enumerate() {
                    v.write(planes[t * pl + at]);
                }
            }
        }
        for line in out.chunks_exact_mut(l0) {
            for v in &mut line[e0..] {
                v.write(Complex32::default());
            }
        }
        // SAFETY: the loops above wrote every bin: (kw, j, i) for i < e0 from the plane
        // transforms (a plane holds all kw·l₁ + j), and i ≥ e0 with zeros.
        unsafe { spec.set_len(self.spec_len()) };
        self.fwd[0].process_with_scratch(&mut spec, scratch);
        spec
    }

    /// `spec` (destroyed) → `real`, unnormalised, computed only on the planes and rows of `win`
    /// (what a crop reads); the other rows of `real` are left as they were.
    fn inverse_window(
        &self,
        spec: &mut [Complex32],
        real: &mut [f32],
        w: &mut Work,
        win: [Wrap; 2],
    ) {
        let [l0, l1, l2] = self.l;
        let h = self.half;
        let pl = l1 * h;
        let Work {
            planes,
            row,
            scratch,
            ..
        } = w;
        self.inv[0].process_with_scratch(spec, scratch);
        let wanted: Vec<usize> = (0..l0).filter(|&i| win[0].contains(i, l0)).collect();
        for group in wanted.chunks(PLANES) {
            for (at, line) in spec.chunks_exact(l0).enumerate() {
                for (t, &i) in group.iter().enumerate() {
                    planes[t * pl + at] = line[i];
                }
            }
            for (plane, &i) in planes.chunks_exact_mut(pl).zip(group) {
                self.inv[1].process_with_scratch(plane, scratch);
                for j in (0..l1).filter(|&j| win[1].contains(j, l1)) {
                    for (kw, v) in row.iter_mut().enumerate() {
                        *v = plane[kw * l1 + j];
                    }
                    // A real signal's DC (and Nyquist) bins are real; clear rounding residue so
                    // realfft accepts them.
                    row[0].im = 0.0;
                    if l2 % 2 == 0 {
                        row[h - 1].im = 0.0;
                    }
                    let _ = self.c2r.process_with_scratch(
                        row,
                        &mut real[(i * l1 + j) * l2..(i * l1 + j + 1) * l2],
                        scratch,
                    );
                }
            }
        }
    }

    /// Writes a D×H×W volume into rows `0..H` of planes `0..D` of `real`, zero-filled to the
    /// row length: exactly what [`Self::forward_corner`] with `ext = [D, H]` reads.
    fn pad(&self, s: &DwShape, src: &[f32], real: &mut [f32]) {
        let [_, l1, l2] = self.l;
        for z in 0..s.d {
            for y in 0..s.h {
                let row = &mut real[(z * l1 + y) * l2..(z * l1 + y + 1) * l2];
                row[..s.w].copy_from_slice(&src[(z * s.h + y) * s.w..(z * s.h + y + 1) * s.w]);
                row[s.w..].fill(0.0);
            }
        }
    }

    /// `out[z, y, x] = real[(z + start₀, y + start₁, x + start₂) mod l] · norm + add` (`norm`
    /// undoes the unnormalised inverse FFT), one row at a time: `put(row index z·H + y, row)`.
    fn crop(
        &self,
        s: &DwShape,
        real: &[f32],
        start: [usize; 3],
        add: f32,
        row: &mut [f32],
        mut put: impl FnMut(usize, &[f32]),
    ) {
        let scale = self.norm();
        let [l0, l1, l2] = self.l;
        // The columns of one row: `start₂..` up to the row's end, then wrapped from 0.
        let first = (l2 - start[2]).min(s.w);
        let row = &mut row[..s.w];
        for z in 0..s.d {
            for y in 0..s.h {
                let r = ((z + start[0]) % l0 * l1 + (y + start[1]) % l1) * l2;
                let (head, tail) = row.split_at_mut(first);
                for (o, v) in head
                    .iter_mut()
                    .zip(&real[r + start[2]..r + start[2] + first])
                {
                    *o = v * scale + add;
                }
                for (o, v) in tail.iter_mut().zip(&real[r..r + s.w - first]) {
                    *o = v * scale + add;
                }
                put(z * s.h + y, row);
            }
        }
    }

    /// The index range start `(l − p) mod l` per axis: where a circular correlation keeps its
    /// lag −p, and where the input gradient's crop begins.
    fn behind(&self, p: usize) -> [usize; 3] {
        self.l.map(|l| (l - p % l) % l)
    }
}

/// Per-channel kernel spectra for one shape, reusable across calls (inference keeps them).
pub struct KernelSpectra {
    shape: DwShape,
    fft: Fft3,
    flipped: bool,
    spectra: Vec<Vec<Complex32>>,
}

impl KernelSpectra {
    /// `flipped = false` gives the spectra the forward pass needs (of the flipped kernels:
    /// convolution implements PyTorch's correlation); `true` those of the kernels themselves.
    pub fn new(s: &DwShape, w: &[f32], flipped: bool) -> Self {
        s.check(s.input_len(), w.len());
        let fft = Fft3::new(fft_dims(s));
        let k = s.k;
        let [_, l1, l2] = fft.l;
        let spectra = (0..s.c)
            .into_par_iter()
            .map_init(
                || fft.work(),
                |work, c| {
                    let wk = &w[c * k * k * k..(c + 1) * k * k * k];
                    let real = &mut work.real;
                    for a in 0..k {
                        for b in 0..k {
                            let row = &mut real[(a * l1 + b) * l2..(a * l1 + b + 1) * l2];
                            for (cc, v) in row[..k].iter_mut().enumerate() {
                                *v = if flipped {
                                    wk[(a * k + b) * k + cc]
                                } else {
                                    wk[((k - 1 - a) * k + (k - 1 - b)) * k + (k - 1 - cc)]
                                };
                            }
                            row[k..].fill(0.0);
                        }
                    }
                    let mut real = std::mem::take(&mut work.real);
                    let spec = fft.forward_corner(&mut real, work, [k, k]);
                    work.real = real;
                    spec
                },
            )
            .collect();
        KernelSpectra {
            shape: *s,
            fft,
            flipped,
            spectra,
        }
    }

    /// Applies the kernels (as prepared) to `x` (N×C×D×H×W), adding `b`.
    pub fn forward(&self, x: &[f32], b: Option<&[f32]>) -> Vec<f32> {
        self.apply(x, b, false).0
    }

    /// [`Self::forward`], also returning each (sample, channel)'s input spectrum when `keep`.
    fn apply(&self, x: &[f32], b: Option<&[f32]>, keep: bool) -> (Vec<f32>, Vec<Vec<Complex32>>) {
        let s = &self.shape;
        assert_eq!(
            x.len(),
            s.input_len(),
            "depthwise conv: input length does not match {s:?}"
        );
        let sp = s.spatial();
        let f = &self.fft;
        let start = [s.k / 2; 3];
        let isa = isa();
        let mut y = vec![0f32; x.len()];
        let kept: Vec<Vec<Complex32>> = y
            .par_chunks_mut(sp)
            .enumerate()
            .map_init(
                || f.work(),
                |work, (nc, out)| {
                    let c = nc % s.c;
                    let mut real = std::mem::take(&mut work.real);
                    f.pad(s, &x[nc * sp..(nc + 1) * sp], &mut real);
                    let xs = f.forward_corner(&mut real, work, [s.d, s.h]);
                    let mut prod = std::mem::take(&mut work.prod);
                    prod.resize(f.spec_len(), Complex32::default());
                    mul(isa, &mut prod, &xs, &self.spectra[c]);
                    f.inverse_window(
                        &mut prod,
                        &mut real,
                        work,
                        [
                            Wrap {
                                start: start[0],
                                len: s.d,
                            },
                            Wrap {
                                start: start[1],
                                len: s.h,
                            },
                        ],
                    );
                    let mut line = std::mem::take(&mut work.line);
                    f.crop(
                        s,
                        &real,
                        start,
                        b.map(|b| b[c]).unwrap_or(0.0),
                        &mut line,
                        |r, v| out[r * s.w..(r + 1) * s.w].copy_from_slice(v),
                    );
                    (work.real, work.line, work.prod) = (real, line, prod);
                    if keep {
                        xs
                    } else {
                        Vec::new()
                    }
                },
            )
            .collect();
        (y, kept)
    }
}

/// What an FFT forward keeps for its backward: the (flipped) kernels' spectra and each (sample,
/// channel)'s input spectrum — the backward then transforms only `dy`. At RepUX-Net's stage 1
/// (48 ch · 48³, padded to 60³) that is 0.9 MB per channel and per sample.
pub struct DwSaved {
    kernels: KernelSpectra,
    inputs: Vec<Vec<Complex32>>,
}

impl std::fmt::Debug for DwSaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DwSaved({:?}, padded to {:?})",
            self.kernels.shape, self.kernels.fft.l
        )
    }
}

impl DwSaved {
    pub fn shape(&self) -> DwShape {
        self.kernels.shape
    }
}

/// [`forward`], also returning what [`backward_saved`] needs when the FFT path runs (`None` on
/// the direct path, whose backward reads `x` and `w` again).
pub fn forward_saving(
    s: &DwShape,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    algo: DwAlgo,
) -> (Vec<f32>, Option<DwSaved>) {
    s.check(x.len(), w.len());
    match resolve(s, algo) {
        DwAlgo::Fft => {
            let kernels = KernelSpectra::new(s, w, false);
            let (y, inputs) = kernels.apply(x, b, true);
            (y, Some(DwSaved { kernels, inputs }))
        }
        _ => (direct_forward(s, x, w, b), None),
    }
}

/// Gradients `(dx, dw, db)` from what [`forward_saving`] kept: one transform of `dy` per (sample,
/// channel) and two inverse ones, instead of the six transforms the backward would otherwise
/// repeat.
pub fn backward_saved(saved: &DwSaved, dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let s = saved.shape();
    assert_eq!(
        dy.len(),
        s.input_len(),
        "depthwise conv: gradient length does not match {s:?}"
    );
    let (dx, dw) = fft_backward(&saved.kernels, Inputs::Spectra(&saved.inputs), dy);
    (dx, dw, bias_grad(&s, dy))
}

fn bias_grad(s: &DwShape, dy: &[f32]) -> Vec<f32> {
    crate::conv_core::bias_grad(dy, s.c, s.spatial())
}

/// Where the backward finds the input's spectra.
enum Inputs<'a> {
    /// Kept by the forward, one per (sample, channel).
    Spectra(&'a [Vec<Complex32>]),
    /// Transformed again from the input.
    Volume(&'a [f32]),
}

/// Input and weight gradients by FFT from the forward's kernel spectra `ks` (flipped kernels);
/// one task per channel, samples inside it.
///
/// With `F` the flipped kernel's spectrum, the kernel's own is `conj(F)` delayed by K − 1, so
/// `dx = iFFT(DY · conj F)` read from lag −P; `dw[q] = iFFT(conj(DY) · X)` (the circular
/// cross-correlation of dy with x) read at lags q − P, summed over samples.
fn fft_backward(ks: &KernelSpectra, inputs: Inputs, dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    debug_assert!(!ks.flipped);
    let s = ks.shape;
    let f = &ks.fft;
    let (sp, k, p) = (s.spatial(), s.k, s.k / 2);
    let [_, l1, l2] = f.l;
    let behind = f.behind(p);
    let isa = isa();
    let mut dx = vec![0f32; s.input_len()];
    let out = SharedOut::new(&mut dx);
    let dw: Vec<Vec<f32>> = (0..s.c)
        .into_par_iter()
        .map_init(
            || f.work(),
            |work, c| {
                let mut real = std::mem::take(&mut work.real);
                let mut line = std::mem::take(&mut work.line);
                let mut acc = vec![Complex32::default(); f.spec_len()];
                for n in 0..s.n {
                    let off = (n * s.c + c) * sp;
                    f.pad(&s, &dy[off..off + sp], &mut real);
                    let mut g = f.forward_corner(&mut real, work, [s.d, s.h]);
                    let fresh;
                    let xs: &[Complex32] = match inputs {
                        Inputs::Spectra(v) => &v[n * s.c + c],
                        Inputs::Volume(x) => {
                            f.pad(&s, &x[off..off + sp], &mut real);
                            fresh = f.forward_corner(&mut real, work, [s.d, s.h]);
                            &fresh
                        }
                    };
                    grad_products(isa, &mut acc, &mut g, xs, &ks.spectra[c]);
                    f.inverse_window(
                        &mut g,
                        &mut real,
                        work,
                        [
                            Wrap {
                                start: behind[0],
                                len: s.d,
                            },
                            Wrap {
                                start: behind[1],
                                len: s.h,
                            },
                        ],
                    );
                    // SAFETY: (sample n, channel c) owns rows off/W.. of dx; one task per channel.
                    f.crop(&s, &real, behind, 0.0, &mut line, |r, v| unsafe {
                        out.write(off + r * s.w, v)
                    });
                }
                f.inverse_window(
                    &mut acc,
                    &mut real,
                    work,
                    [
                        Wrap {
                            start: behind[0],
                            len: k,
                        },
                        Wrap {
                            start: behind[1],
                            len: k,
                        },
                    ],
                );
                let mut dw = vec![0f32; k * k * k];
                let at = |q: usize, i: usize| (q + behind[i]) % f.l[i];
                for a in 0..k {
                    for b in 0..k {
                        for cc in 0..k {
                            dw[(a * k + b) * k + cc] =
                                real[(at(a, 0) * l1 + at(b, 1)) * l2 + at(cc, 2)] * f.norm();
                        }
                    }
                }
                (work.real, work.line) = (real, line);
                dw
            },
        )
        .collect();
    (dx, dw.concat())
}

/// `out[i] = a[i]·b[i]` (complex).
#[inline(always)]
fn mul_impl(out: &mut [Complex32], a: &[Complex32], b: &[Complex32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = Complex32::new(x.re * y.re - x.im * y.im, x.re * y.im + x.im * y.re);
    }
}

/// The backward's spectral products for one sample: `acc += conj(g)·x` (the weight gradient's
/// correlation), then `g *= conj(k)` (the input gradient's convolution).
#[inline(always)]
fn grad_products_impl(
    acc: &mut [Complex32],
    g: &mut [Complex32],
    x: &[Complex32],
    k: &[Complex32],
) {
    for (((a, gv), xv), kv) in acc.iter_mut().zip(g.iter_mut()).zip(x).zip(k) {
        let (gr, gi) = (gv.re, gv.im);
        a.re += gr * xv.re + gi * xv.im;
        a.im += gr * xv.im - gi * xv.re;
        gv.re = gr * kv.re + gi * kv.im;
        gv.im = gi * kv.re - gr * kv.im;
    }
}

isa_dispatch!(mul => mul_impl(out: &mut [Complex32], a: &[Complex32], b: &[Complex32]));
isa_dispatch!(grad_products => grad_products_impl(acc: &mut [Complex32], g: &mut [Complex32], x: &[Complex32], k: &[Complex32]));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_lengths() {
        assert_eq!(fast_len(58), 60);
        assert_eq!(fast_len(7), 8);
        assert_eq!(fast_len(1), 1);
        assert_eq!(fast_len(31), 32);
    }

    #[test]
    fn cost_model_choices() {
        let s = |k| DwShape {
            n: 1,
            c: 48,
            d: 48,
            h: 48,
            w: 48,
            k,
        };
        assert_eq!(choose(&s(21)), DwAlgo::Fft);
        assert_eq!(choose(&s(7)), DwAlgo::Fft);
        assert_eq!(choose(&s(3)), DwAlgo::Direct);
    }
}
