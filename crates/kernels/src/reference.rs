//! Slow, obviously-correct twins of the fast kernels: plain loops with f64 accumulation.

use crate::depthwise::DwShape;

/// Largest |got − want| relative to max(1, max |want|), the measure the property tests hold to
/// a stated tolerance; a NaN in `got` (a float a kernel left unwritten, under
/// [`crate::poison_fresh_outputs`]) counts as infinite.
pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "rel_err: lengths differ");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).fold(0f32, |m, (x, y)| {
        m.max(if x.is_nan() {
            f32::INFINITY
        } else {
            (x - y).abs()
        })
    }) / scale
}

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
                                    let (iz, iy, ix) = (
                                        z as isize + a as isize - p as isize,
                                        yy as isize + bb as isize - p as isize,
                                        xx as isize + cc as isize - p as isize,
                                    );
                                    if iz < 0
                                        || iy < 0
                                        || ix < 0
                                        || iz >= s.d as isize
                                        || iy >= s.h as isize
                                        || ix >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[base
                                        + ((iz as usize * s.h) + iy as usize) * s.w
                                        + ix as usize]
                                        as f64;
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
pub fn depthwise_backward(
    s: &DwShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (k, p) = (s.k, s.k / 2);
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; s.c * k * k * k];
    let mut db = vec![0f64; s.c];
    for n in 0..s.n {
        for (c, db_c) in db.iter_mut().enumerate() {
            let base = (n * s.c + c) * s.d * s.h * s.w;
            for z in 0..s.d {
                for yy in 0..s.h {
                    for xx in 0..s.w {
                        let g = dy[base + (z * s.h + yy) * s.w + xx] as f64;
                        *db_c += g;
                        for a in 0..k {
                            for bb in 0..k {
                                for cc in 0..k {
                                    let (iz, iy, ix) = (
                                        z as isize + a as isize - p as isize,
                                        yy as isize + bb as isize - p as isize,
                                        xx as isize + cc as isize - p as isize,
                                    );
                                    if iz < 0
                                        || iy < 0
                                        || ix < 0
                                        || iz >= s.d as isize
                                        || iy >= s.h as isize
                                        || ix >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xi = base
                                        + ((iz as usize * s.h) + iy as usize) * s.w
                                        + ix as usize;
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

/// `y[n,o,z] = b[o] + Σ_{i∈group(o), q} x[n,i,z·s+q−p] · w[o,i,q]` (PyTorch's conv3d, zero
/// padding, groups).
pub fn conv3d_forward(
    s: &crate::dense::ConvShape,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
) -> Vec<f32> {
    let mut y = vec![0f64; s.output_len()];
    conv3d_visit(s, |xi, wi, yi| y[yi] += x[xi] as f64 * w[wi] as f64);
    let sp: usize = s.out().iter().product();
    for (i, v) in y.iter_mut().enumerate() {
        *v += b.map(|b| b[i / sp % s.cout] as f64).unwrap_or(0.0);
    }
    y.into_iter().map(|v| v as f32).collect()
}

/// Gradients of [`conv3d_forward`]: (dx, dw, db).
pub fn conv3d_backward(
    s: &crate::dense::ConvShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; w.len()];
    conv3d_visit(s, |xi, wi, yi| {
        dx[xi] += dy[yi] as f64 * w[wi] as f64;
        dw[wi] += dy[yi] as f64 * x[xi] as f64;
    });
    let sp: usize = s.out().iter().product();
    let mut db = vec![0f64; s.cout];
    for (i, &g) in dy.iter().enumerate() {
        db[i / sp % s.cout] += g as f64;
    }
    let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect();
    (f(dx), f(dw), f(db))
}

/// Calls `f(x index, w index, y index)` for every product term of a conv3d.
fn conv3d_visit(s: &crate::dense::ConvShape, mut f: impl FnMut(usize, usize, usize)) {
    let [od, oh, ow] = s.out();
    let (k, cg, og) = (s.k, s.cin / s.groups, s.cout / s.groups);
    for n in 0..s.n {
        for o in 0..s.cout {
            let g = o / og;
            for z in 0..od {
                for yy in 0..oh {
                    for xx in 0..ow {
                        let yi = (((n * s.cout + o) * od + z) * oh + yy) * ow + xx;
                        for i in 0..cg {
                            for a in 0..k {
                                for b in 0..k {
                                    for c in 0..k {
                                        let iz = (z * s.stride + a) as isize - s.pad as isize;
                                        let iy = (yy * s.stride + b) as isize - s.pad as isize;
                                        let ix = (xx * s.stride + c) as isize - s.pad as isize;
                                        if iz < 0
                                            || iy < 0
                                            || ix < 0
                                            || iz >= s.d as isize
                                            || iy >= s.h as isize
                                            || ix >= s.w as isize
                                        {
                                            continue;
                                        }
                                        let xi = (((n * s.cin + g * cg + i) * s.d + iz as usize)
                                            * s.h
                                            + iy as usize)
                                            * s.w
                                            + ix as usize;
                                        let wi = (((o * cg + i) * k + a) * k + b) * k + c;
                                        f(xi, wi, yi);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y[n,o,2z+q] = Σ_i x[n,i,z] · w[i,o,q]` (PyTorch's conv_transpose3d, kernel 2, stride 2).
pub fn conv_transpose_k2s2_forward(s: &crate::dense::UpShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    let mut y = vec![0f64; s.output_len()];
    up_visit(s, |xi, wi, yi| y[yi] += x[xi] as f64 * w[wi] as f64);
    y.into_iter().map(|v| v as f32).collect()
}

/// Gradients of [`conv_transpose_k2s2_forward`]: (dx, dw).
pub fn conv_transpose_k2s2_backward(
    s: &crate::dense::UpShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; w.len()];
    up_visit(s, |xi, wi, yi| {
        dx[xi] += dy[yi] as f64 * w[wi] as f64;
        dw[wi] += dy[yi] as f64 * x[xi] as f64;
    });
    let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect();
    (f(dx), f(dw))
}

fn up_visit(s: &crate::dense::UpShape, mut f: impl FnMut(usize, usize, usize)) {
    for n in 0..s.n {
        for i in 0..s.cin {
            for o in 0..s.cout {
                for z in 0..s.d {
                    for yy in 0..s.h {
                        for xx in 0..s.w {
                            let xi = (((n * s.cin + i) * s.d + z) * s.h + yy) * s.w + xx;
                            for q in 0..8 {
                                let (a, b, c) = (q / 4, q / 2 % 2, q % 2);
                                let yi = (((n * s.cout + o) * 2 * s.d + 2 * z + a) * 2 * s.h
                                    + 2 * yy
                                    + b)
                                    * 2
                                    * s.w
                                    + 2 * xx
                                    + c;
                                f(xi, (i * s.cout + o) * 8 + q, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// InstanceNorm + LeakyReLU per row of `sp` values (two-pass statistics in f64).
pub fn instance_norm_act(x: &[f32], sp: usize, eps: f32, slope: f32) -> Vec<f32> {
    x.chunks(sp)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / sp as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / sp as f64;
            let r = 1.0 / (var + eps as f64).sqrt();
            row.iter().map(move |&v| {
                let h = (v as f64 - mean) * r;
                (if h > 0.0 { h } else { h * slope as f64 }) as f32
            })
        })
        .collect()
}

/// dx of [`instance_norm_act`] from its input `x` (not its output), by the chain rule written
/// out per element: `dx_i = Σ_j dy_j · act'(x̂_j) · ∂x̂_j/∂x_i`, in f64.
pub fn instance_norm_act_backward(
    x: &[f32],
    dy: &[f32],
    sp: usize,
    eps: f32,
    slope: f32,
) -> Vec<f32> {
    let mut dx = vec![0f32; x.len()];
    for (r, (row, drow)) in x.chunks(sp).zip(dy.chunks(sp)).enumerate() {
        let n = sp as f64;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let rs = 1.0 / (var + eps as f64).sqrt();
        let xh: Vec<f64> = row.iter().map(|&v| (v as f64 - mean) * rs).collect();
        let g: Vec<f64> = xh
            .iter()
            .zip(drow)
            .map(|(&h, &d)| d as f64 * if h > 0.0 { 1.0 } else { slope as f64 })
            .collect();
        for i in 0..sp {
            // ∂x̂_j/∂x_i = rs · (δ_ij − 1/n − x̂_i x̂_j / n)
            let s: f64 = (0..sp)
                .map(|j| g[j] * rs * ((i == j) as u8 as f64 - 1.0 / n - xh[i] * xh[j] / n))
                .sum();
            dx[r * sp + i] = s as f32;
        }
    }
    dx
}

/// `y = x · Wᵀ + b` (`x` rows × cin, `w` cout × cin), f64 sums.
pub fn linear_forward(
    rows: usize,
    cin: usize,
    cout: usize,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
) -> Vec<f32> {
    let mut y = vec![0f32; rows * cout];
    for r in 0..rows {
        for o in 0..cout {
            let mut acc = b.map_or(0.0, |b| b[o] as f64);
            for i in 0..cin {
                acc += x[r * cin + i] as f64 * w[o * cin + i] as f64;
            }
            y[r * cout + o] = acc as f32;
        }
    }
    y
}

/// `(dx, dw, db)` of [`linear_forward`] for upstream `dy`, f64 sums.
pub fn linear_backward(
    rows: usize,
    cin: usize,
    cout: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f64; rows * cin];
    let mut dw = vec![0f64; cout * cin];
    let mut db = vec![0f64; cout];
    for r in 0..rows {
        for o in 0..cout {
            let g = dy[r * cout + o] as f64;
            db[o] += g;
            for i in 0..cin {
                dx[r * cin + i] += g * w[o * cin + i] as f64;
                dw[o * cin + i] += g * x[r * cin + i] as f64;
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect();
    (f(dx), f(dw), f(db))
}

/// `c[i] = a[i] · b[i]` over the batch (`batch × m × k` by `batch × k × n`), f64 sums.
pub fn bmm_forward(s: crate::bmm::BmmShape, a: &[f32], b: &[f32]) -> Vec<f32> {
    let crate::bmm::BmmShape { batch, m, k, n } = s;
    let mut c = vec![0f32; batch * m * n];
    for i in 0..batch {
        for r in 0..m {
            for j in 0..n {
                c[(i * m + r) * n + j] = (0..k)
                    .map(|kk| a[(i * m + r) * k + kk] as f64 * b[(i * k + kk) * n + j] as f64)
                    .sum::<f64>() as f32;
            }
        }
    }
    c
}

/// `(da, db)` of [`bmm_forward`] for upstream `dc`, f64 sums.
pub fn bmm_backward(
    s: crate::bmm::BmmShape,
    a: &[f32],
    b: &[f32],
    dc: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let crate::bmm::BmmShape { batch, m, k, n } = s;
    let mut da = vec![0f64; batch * m * k];
    let mut db = vec![0f64; batch * k * n];
    for i in 0..batch {
        for r in 0..m {
            for j in 0..n {
                let g = dc[(i * m + r) * n + j] as f64;
                for kk in 0..k {
                    da[(i * m + r) * k + kk] += g * b[(i * k + kk) * n + j] as f64;
                    db[(i * k + kk) * n + j] += g * a[(i * m + r) * k + kk] as f64;
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f(da), f(db))
}

/// `softmax(S + bias + mask)` over the last axis in f64 (see [`crate::softmax`] for layouts).
pub fn window_softmax(
    s: crate::softmax::AttnShape,
    scores: &[f32],
    bias: &[f32],
    mask: Option<&[f32]>,
) -> Vec<f32> {
    let n = s.n;
    let mut out = vec![0f32; scores.len()];
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..n {
                let at = ((b * s.heads + h) * n + i) * n;
                let logit = |j: usize| {
                    let mut v = scores[at + j] as f64 + bias[(h * n + i) * n + j] as f64;
                    if let Some(m) = mask {
                        v += m[((b % s.windows) * n + i) * n + j] as f64;
                    }
                    v
                };
                let max = (0..n).map(logit).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..n).map(|j| (logit(j) - max).exp()).sum();
                for j in 0..n {
                    out[at + j] = ((logit(j) - max).exp() / sum) as f32;
                }
            }
        }
    }
    out
}

/// The window softmax's backward by the chain rule from the input, in f64: `(dS, dbias)`.
pub fn window_softmax_backward(
    s: crate::softmax::AttnShape,
    scores: &[f32],
    bias: &[f32],
    mask: Option<&[f32]>,
    dp: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let n = s.n;
    let p = window_softmax(s, scores, bias, mask);
    let mut ds = vec![0f32; scores.len()];
    let mut dbias = vec![0f64; s.heads * n * n];
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..n {
                let at = ((b * s.heads + h) * n + i) * n;
                // dS_j = Σ_k dP_k ∂P_k/∂S_j = P_j (dP_j − Σ_k dP_k P_k)
                let dot: f64 = (0..n).map(|k| dp[at + k] as f64 * p[at + k] as f64).sum();
                for j in 0..n {
                    let g = p[at + j] as f64 * (dp[at + j] as f64 - dot);
                    ds[at + j] = g as f32;
                    dbias[(h * n + i) * n + j] += g;
                }
            }
        }
    }
    (ds, dbias.into_iter().map(|v| v as f32).collect())
}

/// Exact GELU, `x · Φ(x)` with `Φ(x) = erfc(−x/√2) / 2`, in f64 (libm's erfc).
pub fn gelu(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| {
            let v = v as f64;
            (v * 0.5 * libm::erfc(-v * std::f64::consts::FRAC_1_SQRT_2)) as f32
        })
        .collect()
}

/// dx of [`gelu`]: `dy · (Φ(x) + x · φ(x))`, in f64.
pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(dy)
        .map(|(&v, &d)| {
            let v = v as f64;
            let cdf = 0.5 * libm::erfc(-v * std::f64::consts::FRAC_1_SQRT_2);
            let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            (d as f64 * (cdf + v * pdf)) as f32
        })
        .collect()
}
