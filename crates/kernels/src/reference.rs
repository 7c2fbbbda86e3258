//! Slow, obviously-correct twins of the fast kernels: plain loops with f64 accumulation.

use crate::depthwise::DwShape;

/// `y[n,c,p] = b[c] + Σ_q x[n,c,p+q−P] · w[c,q]`, zero padding, P = K/2 (PyTorch's conv3d with
/// groups = C, padding = K/2).
pub fn depthwise_forward(s: &DwShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let (k, p) = (s.k, s.k / 2);
    let mut y = vec![0f32; x.len()];
    for n in 0..s.n {
        for c in 0..s.c {
            let base = (n * s.c + c) * s.d * s.h * s.w;
            for z in 0..s.d {
                for yy in 0..s.h {
                    for xx in 0..s.w {
                        let mut acc = b.map(|b| b[c] as f64).unwrap_or(0.0);
                        for a in 0..k {
                            for bb in 0..k {
                                for cc in 0..k {
                                    let (iz, iy, ix) = (z as isize + a as isize - p as isize, yy as isize + bb as isize - p as isize, xx as isize + cc as isize - p as isize);
                                    if iz < 0 || iy < 0 || ix < 0 || iz >= s.d as isize || iy >= s.h as isize || ix >= s.w as isize {
                                        continue;
                                    }
                                    let xv = x[base + ((iz as usize * s.h) + iy as usize) * s.w + ix as usize] as f64;
                                    acc += xv * w[c * k * k * k + (a * k + bb) * k + cc] as f64;
                                }
                            }
                        }
                        y[base + (z * s.h + yy) * s.w + xx] = acc as f32;
                    }
                }
            }
        }
    }
    y
}

/// Gradients of [`depthwise_forward`] for upstream `dy`: (dx, dw, db).
pub fn depthwise_backward(s: &DwShape, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (k, p) = (s.k, s.k / 2);
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; s.c * k * k * k];
    let mut db = vec![0f64; s.c];
    for n in 0..s.n {
        for c in 0..s.c {
            let base = (n * s.c + c) * s.d * s.h * s.w;
            for z in 0..s.d {
                for yy in 0..s.h {
                    for xx in 0..s.w {
                        let g = dy[base + (z * s.h + yy) * s.w + xx] as f64;
                        db[c] += g;
                        for a in 0..k {
                            for bb in 0..k {
                                for cc in 0..k {
                                    let (iz, iy, ix) = (z as isize + a as isize - p as isize, yy as isize + bb as isize - p as isize, xx as isize + cc as isize - p as isize);
                                    if iz < 0 || iy < 0 || ix < 0 || iz >= s.d as isize || iy >= s.h as isize || ix >= s.w as isize {
                                        continue;
                                    }
                                    let xi = base + ((iz as usize * s.h) + iy as usize) * s.w + ix as usize;
                                    let wi = c * k * k * k + (a * k + bb) * k + cc;
                                    dx[xi] += g * w[wi] as f64;
                                    dw[wi] += g * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect();
    (f(dx), f(dw), f(db))
}
