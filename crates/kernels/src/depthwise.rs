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
        assert!(self.k % 2 == 1 && self.k <= 31, "depthwise conv: K = {} must be odd and ≤ 31", self.k);
        assert_eq!(x, self.input_len(), "depthwise conv: input length does not match {self:?}");
        assert_eq!(w, self.weight_len(), "depthwise conv: weight length does not match {self:?}");
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
            while r % f == 0 {
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
    [fast_len((s.d + p).max(s.k)), fast_len((s.h + p).max(s.k)), fast_len((s.w + p).max(s.k))]
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
pub fn backward(s: &DwShape, x: &[f32], w: &[f32], dy: &[f32], algo: DwAlgo) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    s.check(x.len(), w.len());
    assert_eq!(dy.len(), x.len(), "depthwise conv: gradient length does not match the input");
    let db: Vec<f32> = (0..s.c).into_par_iter().map(|c| (0..s.n).map(|n| dy[(n * s.c + c) * s.spatial()..(n * s.c + c + 1) * s.spatial()].iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>() as f32).collect();
    match resolve(s, algo) {
        DwAlgo::Fft => {
            let (dx, dw) = fft_backward(s, x, w, dy);
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
                        let irow = &src[(iz as usize * s.h + iy as usize) * s.w..(iz as usize * s.h + iy as usize + 1) * s.w];
                        for cc in 0..k {
                            let wv = wk[(a * k + bb) * k + cc];
                            // out[x] += wv · in[x + cc − P] for x with 0 ≤ x + cc − P < W.
                            let lo = p.saturating_sub(cc);
                            let hi = (s.w + p).saturating_sub(cc).min(s.w);
                            if lo >= hi {
                                continue;
                            }
                            let shift = lo + cc - p;
                            for (o, i) in orow[lo..hi].iter_mut().zip(&irow[shift..shift + (hi - lo)]) {
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
                                let xrow = &xs[(iz as usize * s.h + iy as usize) * s.w..(iz as usize * s.h + iy as usize + 1) * s.w];
                                sum += grow[lo..hi].iter().zip(&xrow[shift..shift + (hi - lo)]).map(|(g, v)| g * v).sum::<f32>();
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

/// Plans for 3-D real FFTs of one padded size `l` (C order): a real FFT along the last axis,
/// then complex FFTs along axes 1 and 0, batched over all lines at once.
struct Fft3 {
    l: [usize; 3],
    half: usize,
    r2c: Arc<dyn RealToComplex<f32>>,
    c2r: Arc<dyn ComplexToReal<f32>>,
    fwd: [Arc<dyn Fft<f32>>; 2],
    inv: [Arc<dyn Fft<f32>>; 2],
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

    /// 1 / (number of points): the inverse transforms are unnormalised.
    fn norm(&self) -> f32 {
        1.0 / self.real_len() as f32
    }

    /// `real` (destroyed) → `spec`, where `real` is zero outside planes `0..ext[0]` and, inside
    /// them, outside rows `0..ext[1]` (a padded volume or kernel sits in the corner): the
    /// transforms of all-zero rows and planes are skipped (their spectrum is zero).
    fn forward_corner(&self, real: &mut [f32], spec: &mut [Complex32], buf: &mut Vec<Complex32>, ext: [usize; 2]) {
        let [_, l1, l2] = self.l;
        let h = self.half;
        for (row, (r, s)) in real.chunks_exact_mut(l2).zip(spec.chunks_exact_mut(h)).enumerate() {
            if row / l1 < ext[0] && row % l1 < ext[1] {
                // Lengths match the plan by construction; realfft reports only length errors.
                let _ = self.r2c.process(r, s);
            } else {
                s.fill(Complex32::default());
            }
        }
        self.axes(spec, buf, false, 0..ext[0]);
    }

    /// `spec` (destroyed) → `real`, unnormalised.
    fn inverse(&self, spec: &mut [Complex32], real: &mut [f32], buf: &mut Vec<Complex32>) {
        self.inverse_window(spec, real, buf, [0..self.l[0], 0..self.l[1]]);
    }

    /// `spec` (destroyed) → `real`, unnormalised, correct only on planes `win[0]` × rows `win[1]`
    /// (what a crop reads); the other rows of `real` are left as they were.
    fn inverse_window(&self, spec: &mut [Complex32], real: &mut [f32], buf: &mut Vec<Complex32>, win: [std::ops::Range<usize>; 2]) {
        self.axes(spec, buf, true, win[0].clone());
        let [_, l1, l2] = self.l;
        let h = self.half;
        for (row, (s, r)) in spec.chunks_exact_mut(h).zip(real.chunks_exact_mut(l2)).enumerate() {
            if !win[0].contains(&(row / l1)) || !win[1].contains(&(row % l1)) {
                continue;
            }
            // A real signal's DC (and Nyquist) bins are real; clear rounding residue so
            // realfft accepts them.
            s[0].im = 0.0;
            if l2 % 2 == 0 {
                s[h - 1].im = 0.0;
            }
            let _ = self.c2r.process(s, r);
        }
    }

    /// Complex FFTs along axes 1 and 0 (forward order) or 0 and 1 (inverse order); the axis-1
    /// transforms only on `planes` (forward: the others are zero; inverse: the others are not
    /// read).
    fn axes(&self, spec: &mut [Complex32], buf: &mut Vec<Complex32>, inverse: bool, planes: std::ops::Range<usize>) {
        let [l0, l1, _] = self.l;
        let h = self.half;
        let order: [usize; 2] = if inverse { [0, 1] } else { [1, 0] };
        for axis in order {
            let plan = if inverse { &self.inv[axis] } else { &self.fwd[axis] };
            if axis == 1 {
                buf.resize(l1 * h, Complex32::default());
                for i in planes.clone().take_while(|&i| i < l0) {
                    let block = &mut spec[i * l1 * h..(i + 1) * l1 * h];
                    for j in 0..l1 {
                        for kw in 0..h {
                            buf[kw * l1 + j] = block[j * h + kw];
                        }
                    }
                    plan.process(buf);
                    for j in 0..l1 {
                        for kw in 0..h {
                            block[j * h + kw] = buf[kw * l1 + j];
                        }
                    }
                }
            } else {
                buf.resize(l0 * h, Complex32::default());
                for j in 0..l1 {
                    for i in 0..l0 {
                        let row = &spec[(i * l1 + j) * h..(i * l1 + j + 1) * h];
                        for kw in 0..h {
                            buf[kw * l0 + i] = row[kw];
                        }
                    }
                    plan.process(buf);
                    for i in 0..l0 {
                        let row = &mut spec[(i * l1 + j) * h..(i * l1 + j + 1) * h];
                        for kw in 0..h {
                            row[kw] = buf[kw * l0 + i];
                        }
                    }
                }
            }
        }
    }

    /// Copies a D×H×W volume into the corner of a zeroed L³ buffer.
    fn pad(&self, s: &DwShape, src: &[f32], real: &mut [f32]) {
        real.fill(0.0);
        let [_, l1, l2] = self.l;
        for z in 0..s.d {
            for y in 0..s.h {
                real[(z * l1 + y) * l2..(z * l1 + y) * l2 + s.w].copy_from_slice(&src[(z * s.h + y) * s.w..(z * s.h + y + 1) * s.w]);
            }
        }
    }

    /// `out[p] = real[p + off] · scale + add`, p over D×H×W.
    fn crop(&self, s: &DwShape, real: &[f32], off: usize, scale: f32, add: f32, out: &mut [f32]) {
        let [_, l1, l2] = self.l;
        for z in 0..s.d {
            for y in 0..s.h {
                let src = &real[((z + off) * l1 + y + off) * l2 + off..((z + off) * l1 + y + off) * l2 + off + s.w];
                for (o, v) in out[(z * s.h + y) * s.w..(z * s.h + y + 1) * s.w].iter_mut().zip(src) {
                    *o = v * scale + add;
                }
            }
        }
    }
}

/// Per-channel kernel spectra for one shape, reusable across calls (inference keeps them).
pub struct KernelSpectra {
    shape: DwShape,
    fft: Fft3,
    spectra: Vec<Vec<Complex32>>,
}

impl KernelSpectra {
    /// `flipped = false` gives the spectra the forward pass needs (of the flipped kernels:
    /// convolution implements PyTorch's correlation); `true` those of the kernels themselves,
    /// which the input gradient needs.
    pub fn new(s: &DwShape, w: &[f32], flipped: bool) -> Self {
        s.check(s.input_len(), w.len());
        let fft = Fft3::new(fft_dims(s));
        let k = s.k;
        let [_, l1, l2] = fft.l;
        let spectra = (0..s.c)
            .into_par_iter()
            .map(|c| {
                let mut real = vec![0f32; fft.real_len()];
                let wk = &w[c * k * k * k..(c + 1) * k * k * k];
                for a in 0..k {
                    for b in 0..k {
                        for cc in 0..k {
                            let v = if flipped { wk[(a * k + b) * k + cc] } else { wk[((k - 1 - a) * k + (k - 1 - b)) * k + (k - 1 - cc)] };
                            real[(a * l1 + b) * l2 + cc] = v;
                        }
                    }
                }
                let mut spec = vec![Complex32::default(); fft.spec_len()];
                fft.forward_corner(&mut real, &mut spec, &mut Vec::new(), [k, k]);
                spec
            })
            .collect();
        KernelSpectra { shape: *s, fft, spectra }
    }

    /// Applies the kernels (as prepared) to `x` (N×C×D×H×W), adding `b`.
    pub fn forward(&self, x: &[f32], b: Option<&[f32]>) -> Vec<f32> {
        let s = &self.shape;
        assert_eq!(x.len(), s.input_len(), "depthwise conv: input length does not match {s:?}");
        let sp = s.spatial();
        let f = &self.fft;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(sp).enumerate().for_each_init(
            || (vec![0f32; f.real_len()], vec![Complex32::default(); f.spec_len()], Vec::new()),
            |(real, spec, buf), (nc, out)| {
                let c = nc % s.c;
                f.pad(s, &x[nc * sp..(nc + 1) * sp], real);
                f.forward_corner(real, spec, buf, [s.d, s.h]);
                for (a, k) in spec.iter_mut().zip(&self.spectra[c]) {
                    *a *= k;
                }
                let p = s.k / 2;
                f.inverse_window(spec, real, buf, [p..p + s.d, p..p + s.h]);
                f.crop(s, real, p, f.norm(), b.map(|b| b[c]).unwrap_or(0.0), out);
            },
        );
        y
    }
}

/// Input and weight gradients by FFT; one task per channel, samples inside it.
fn fft_backward(s: &DwShape, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let ks = KernelSpectra::new(s, w, true);
    let f = &ks.fft;
    let (sp, k, p) = (s.spatial(), s.k, s.k / 2);
    let [l0, l1, l2] = f.l;
    let per_channel: Vec<(Vec<f32>, Vec<f32>)> = (0..s.c)
        .into_par_iter()
        .map(|c| {
            let mut real = vec![0f32; f.real_len()];
            let mut gspec = vec![Complex32::default(); f.spec_len()];
            let mut xspec = vec![Complex32::default(); f.spec_len()];
            let mut acc = vec![Complex32::default(); f.spec_len()];
            let mut buf = Vec::new();
            let mut dx = vec![0f32; s.n * sp];
            for n in 0..s.n {
                let off = (n * s.c + c) * sp;
                f.pad(s, &dy[off..off + sp], &mut real);
                f.forward_corner(&mut real, &mut gspec, &mut buf, [s.d, s.h]);
                f.pad(s, &x[off..off + sp], &mut real);
                f.forward_corner(&mut real, &mut xspec, &mut buf, [s.d, s.h]);
                // Weight gradient: cross-correlation of x with dy ↔ conj(DY)·X, summed over n.
                for ((a, g), xv) in acc.iter_mut().zip(&gspec).zip(&xspec) {
                    *a += g.conj() * xv;
                }
                // Input gradient: dy convolved with the (unflipped) kernel, 'same' crop.
                for (g, kv) in gspec.iter_mut().zip(&ks.spectra[c]) {
                    *g *= kv;
                }
                f.inverse_window(&mut gspec, &mut real, &mut buf, [p..p + s.d, p..p + s.h]);
                f.crop(s, &real, p, f.norm(), 0.0, &mut dx[n * sp..(n + 1) * sp]);
            }
            f.inverse(&mut acc, &mut real, &mut buf);
            let mut dw = vec![0f32; k * k * k];
            let wrap = |q: usize, l: usize| (q + l - p) % l;
            for a in 0..k {
                for b in 0..k {
                    for cc in 0..k {
                        dw[(a * k + b) * k + cc] = real[(wrap(a, l0) * l1 + wrap(b, l1)) * l2 + wrap(cc, l2)] * f.norm();
                    }
                }
            }
            (dx, dw)
        })
        .collect();
    let mut dx = vec![0f32; x.len()];
    let mut dw = Vec::with_capacity(s.weight_len());
    for (c, (dxc, dwc)) in per_channel.into_iter().enumerate() {
        for n in 0..s.n {
            dx[(n * s.c + c) * sp..(n * s.c + c + 1) * sp].copy_from_slice(&dxc[n * sp..(n + 1) * sp]);
        }
        dw.extend(dwc);
    }
    (dx, dw)
}

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
        let s = |k| DwShape { n: 1, c: 48, d: 48, h: 48, w: 48, k };
        assert_eq!(choose(&s(21)), DwAlgo::Fft);
        assert_eq!(choose(&s(7)), DwAlgo::Fft);
        assert_eq!(choose(&s(3)), DwAlgo::Direct);
    }
}
