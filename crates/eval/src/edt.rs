//! Exact Euclidean distance transform (Felzenszwalb & Huttenlocher 2012): squared distances by
//! one 1-D lower-envelope pass per axis, with the voxel spacing folded into each pass, lines in
//! parallel.

use rayon::prelude::*;

/// 1-D squared-distance transform of `f` with sample spacing `s` (in place), using `v`, `z`
/// as scratch: `d[p] = min_q f[q] + (s·(p − q))²`.
fn dt1(f: &mut [f64], s: f64, v: &mut Vec<usize>, z: &mut Vec<f64>, out: &mut Vec<f64>) {
    let n = f.len();
    v.clear();
    z.clear();
    out.clear();
    let s2 = s * s;
    // Skip leading infinite samples: they never lie on the envelope.
    let first = match f.iter().position(|x| x.is_finite()) {
        Some(i) => i,
        None => return, // all infinite: nothing to do
    };
    // g[q] = f[q] + s²q², computed once (reused in every intersection below).
    out.extend((0..n).map(|q| f[q] + s2 * (q * q) as f64));
    v.push(first);
    z.push(f64::NEG_INFINITY);
    z.push(f64::INFINITY);
    for q in first + 1..n {
        if !f[q].is_finite() {
            continue;
        }
        loop {
            let p = *v.last().unwrap_or(&first);
            let sq = (out[q] - out[p]) / (2.0 * s2 * (q as f64 - p as f64));
            if sq <= z[v.len() - 1] && v.len() > 1 {
                v.pop();
                z.pop();
                continue;
            }
            v.push(q);
            let last = z.len() - 1;
            z[last] = sq;
            z.push(f64::INFINITY);
            break;
        }
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate().take(n) {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        let d = q as f64 - p as f64;
        *o = s2 * d * d + f[p];
    }
    f.copy_from_slice(out);
}

/// First pass on binary seeds: squared distance to the nearest seed on the line by two scans
/// (exact, no envelope needed); `INFINITY` when the line has no seed.
fn seed_line(seed: &[bool], s: f64, out: &mut [f64]) {
    let n = seed.len();
    let mut last: Option<usize> = None;
    for q in 0..n {
        if seed[q] {
            last = Some(q);
        }
        out[q] = last
            .map(|p| ((q - p) as f64 * s).powi(2))
            .unwrap_or(f64::INFINITY);
    }
    let mut next: Option<usize> = None;
    for q in (0..n).rev() {
        if seed[q] {
            next = Some(q);
        }
        if let Some(p) = next {
            out[q] = out[q].min(((p - q) as f64 * s).powi(2));
        }
    }
}

/// Squared Euclidean distance (mm²) from every voxel of a C-order `shape` grid to the nearest
/// voxel where `seed` is true; `f64::INFINITY` everywhere if there is none.
pub fn squared_edt(seed: &[bool], shape: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let mut g = vec![f64::INFINITY; seed.len()];
    if !seed.iter().any(|&s| s) {
        return g;
    }
    first_two_passes(seed, shape, spacing, &mut g);
    last_pass(&mut g, shape, spacing[0]);
    g
}

/// Passes along axes 2 and 1: squared distance to the nearest seed within each (i) plane.
fn first_two_passes(seed: &[bool], shape: [usize; 3], spacing: [f64; 3], g: &mut [f64]) {
    let [_, h, w] = shape;
    // Axis 2 (contiguous lines), straight from the seeds.
    g.par_chunks_mut(w)
        .zip(seed.par_chunks(w))
        .for_each(|(line, sd)| seed_line(sd, spacing[2], line));
    // Axis 1: per plane i, lines along j; gather columns.
    g.par_chunks_mut(h * w).for_each_init(
        || (Vec::new(), Vec::new(), Vec::new(), vec![0f64; h]),
        |(v, z, o, col), plane| {
            for k in 0..w {
                for j in 0..h {
                    col[j] = plane[j * w + k];
                }
                dt1(col, spacing[1], v, z, o);
                for j in 0..h {
                    plane[j * w + k] = col[j];
                }
            }
        },
    );
}

/// Columns are taken in blocks of B neighbours so that every read and write is a contiguous run
/// of B values, not one value per plane (cache misses).
const B: usize = 64;

/// Pass along axis 0: lines along i for each (j, k), in blocks of B columns.
fn last_pass(g: &mut [f64], shape: [usize; 3], spacing0: f64) {
    let [d, h, w] = shape;
    let hw = h * w;
    let blocks: Vec<(usize, Vec<f64>)> = (0..hw)
        .step_by(B)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new(), Vec::new(), vec![0f64; d]),
            |(v, z, o, col), start| {
                let width = B.min(hw - start);
                let mut block = vec![0f64; d * width];
                for i in 0..d {
                    block[i * width..(i + 1) * width]
                        .copy_from_slice(&g[i * hw + start..i * hw + start + width]);
                }
                for c in 0..width {
                    for i in 0..d {
                        col[i] = block[i * width + c];
                    }
                    dt1(col, spacing0, v, z, o);
                    for i in 0..d {
                        block[i * width + c] = col[i];
                    }
                }
                (start, block)
            },
        )
        .collect();
    for (start, block) in blocks {
        let width = block.len() / d;
        for i in 0..d {
            g[i * hw + start..i * hw + start + width]
                .copy_from_slice(&block[i * width..(i + 1) * width]);
        }
    }
}

/// Squared distances (mm²) to the nearest seed, evaluated only at the voxels where `query` is
/// true (in C order). Exact, like [`squared_edt`], but the last pass runs only on columns that
/// hold queries: directly (a minimum over the column) where a column has few, by the lower
/// envelope where it has many. Surfaces cross most columns only a couple of times.
pub fn squared_edt_at(
    seed: &[bool],
    shape: [usize; 3],
    spacing: [f64; 3],
    query: &[bool],
) -> Vec<f64> {
    let [d, h, w] = shape;
    let hw = h * w;
    let n_query = query.iter().filter(|&&q| q).count();
    if !seed.iter().any(|&s| s) {
        return vec![f64::INFINITY; n_query];
    }
    let mut g = vec![f64::INFINITY; seed.len()];
    first_two_passes(seed, shape, spacing, &mut g);
    let s2 = spacing[0] * spacing[0];
    let results: Vec<Vec<(usize, f64)>> = (0..hw)
        .step_by(B)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map_init(
            || {
                (
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                    vec![0f64; d],
                    Vec::new(),
                )
            },
            |(v, z, o, col, rows), start| {
                let width = B.min(hw - start);
                let mut out = Vec::new();
                for c in 0..width {
                    let jk = start + c;
                    rows.clear();
                    rows.extend((0..d).filter(|&i| query[i * hw + jk]));
                    if rows.is_empty() {
                        continue;
                    }
                    for (i, x) in col.iter_mut().enumerate() {
                        *x = g[i * hw + jk];
                    }
                    if rows.len() * 12 < d {
                        for &qi in rows.iter() {
                            let best = col.iter().enumerate().fold(f64::INFINITY, |m, (r, &x)| {
                                m.min(x + s2 * ((qi as f64 - r as f64).powi(2)))
                            });
                            out.push((qi * hw + jk, best));
                        }
                    } else {
                        dt1(col, spacing[0], v, z, o);
                        out.extend(rows.iter().map(|&qi| (qi * hw + jk, col[qi])));
                    }
                }
                out
            },
        )
        .collect();
    let mut all: Vec<(usize, f64)> = results.into_iter().flatten().collect();
    all.sort_unstable_by_key(|p| p.0);
    all.into_iter().map(|p| p.1).collect()
}
