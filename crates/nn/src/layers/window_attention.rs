//! Window multi-head self-attention with a relative position bias (Swin Transformer, as MONAI's
//! `monai.networks.nets.swin_unetr.WindowAttention` computes it), and the window helpers around
//! it: partition/reverse, MONAI's `get_window_size` and the shifted-window attention mask.
//!
//! Token order inside a window is (d, h, w) row-major; windows are ordered (batch, d, h, w).

use super::linear::Linear;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

#[derive(Module, Debug)]
pub struct WindowAttention {
    pub qkv: Linear,
    pub proj: Linear,
    /// `[(2w−1)³, heads]` learned biases, indexed by the relative offset of two tokens.
    pub relative_position_bias_table: Param<Tensor<2>>,
    pub num_heads: usize,
    /// The configured window side w (the bias index is built for w³ tokens).
    pub window: usize,
}

impl WindowAttention {
    pub fn new(dim: usize, num_heads: usize, window: usize, device: &Device) -> Self {
        let t = (2 * window - 1).pow(3);
        WindowAttention {
            qkv: Linear::new(dim, 3 * dim, true, device),
            proj: Linear::new(dim, dim, true, device),
            // MONAI: trunc_normal_(std=0.02) (truncated at ±2, i.e. ±100σ: a plain normal).
            relative_position_bias_table: Param::from_tensor(Tensor::random(
                [t, num_heads],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            num_heads,
            window,
        }
    }

    /// `x [B·nW, N, C]`, `mask [nW, N, N]` (0 or −100) → `[B·nW, N, C]`.
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<3>>) -> Tensor<3> {
        let [b, n, c] = x.dims();
        let h = self.num_heads;
        let hd = c / h;
        // [B_, N, 3C] → [3, B_, heads, N, hd]
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3, h, hd])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([b, h, n, hd]);
        let (q, k, v) = (part(0), part(1), part(2));
        let q = q * (hd as f64).powf(-0.5);
        // [B_·heads, N, N], through repux's GEMM (bf16 under `--precision bf16`).
        let attn = crate::ops::bmm(
            q.reshape([b * h, n, hd]),
            k.swap_dims(2, 3).reshape([b * h, hd, n]),
        )
        .reshape([b, h, n, n]);
        // MONAI takes the top-left n×n block of the full window's index, also where the window
        // was clipped to a smaller feature map.
        let device = attn.device();
        let sub = Tensor::<1, Int>::from_data(
            TensorData::new(position_index(self.window, n), [n * n]),
            &device,
        );
        let bias = self
            .relative_position_bias_table
            .val()
            .select(0, sub)
            .reshape([n, n, h])
            .permute([2, 0, 1]);
        // bias + mask + softmax as one pass whose backward keeps only the probabilities.
        let attn = crate::ops::window_softmax(attn, bias, mask);
        let y = crate::ops::bmm(attn.reshape([b * h, n, n]), v.reshape([b * h, n, hd]))
            .reshape([b, h, n, hd])
            .swap_dims(1, 2)
            .reshape([b, n, c]);
        self.proj.forward(y)
    }
}

/// MONAI's `relative_position_index` for a w³ window: `[w³ · w³]` row-major, entry (i, j) the
/// table row of the offset from key j to query i.
pub fn relative_position_index(w: usize) -> Vec<i64> {
    position_index(w, w.pow(3))
}

/// The top-left `n × n` block of [`relative_position_index`] (`n ≤ w³`), built directly.
fn position_index(w: usize, n: usize) -> Vec<i64> {
    let coord = |t: usize| [(t / (w * w)) as i64, ((t / w) % w) as i64, (t % w) as i64];
    let (w, m) = (w as i64, (2 * w - 1) as i64);
    let mut out = Vec::with_capacity(n * n);
    for i in 0..n {
        let a = coord(i);
        for j in 0..n {
            let b = coord(j);
            out.push(
                (a[0] - b[0] + w - 1) * m * m + (a[1] - b[1] + w - 1) * m + (a[2] - b[2] + w - 1),
            );
        }
    }
    out
}

/// MONAI's `get_window_size`: a side no larger than the window becomes the window (and is not
/// shifted). Returns (window, shift) per axis.
pub fn window_and_shift(size: [usize; 3], window: usize, shift: usize) -> ([usize; 3], [usize; 3]) {
    let mut ws = [window; 3];
    let mut ss = [shift; 3];
    for a in 0..3 {
        if size[a] <= window {
            ws[a] = size[a];
            ss[a] = 0;
        }
    }
    (ws, ss)
}

/// `[B, D, H, W, C]` (sides multiples of the window) → `[B·nW, wd·wh·ww, C]`.
pub fn window_partition(x: Tensor<5>, ws: [usize; 3]) -> Tensor<3> {
    let [b, d, h, w, c] = x.dims();
    x.reshape([b, d / ws[0], ws[0], h / ws[1], ws[1], w / ws[2], ws[2], c])
        .permute([0, 1, 3, 5, 2, 4, 6, 7])
        .reshape([
            b * (d / ws[0]) * (h / ws[1]) * (w / ws[2]),
            ws[0] * ws[1] * ws[2],
            c,
        ])
}

/// Inverse of [`window_partition`] for a `[B, D, H, W, C]` result.
pub fn window_reverse(windows: Tensor<3>, ws: [usize; 3], [b, d, h, w]: [usize; 4]) -> Tensor<5> {
    let c = windows.dims()[2];
    windows
        .reshape([b, d / ws[0], h / ws[1], w / ws[2], ws[0], ws[1], ws[2], c])
        .permute([0, 1, 4, 2, 5, 3, 6, 7])
        .reshape([b, d, h, w, c])
}

/// Python's `range(L)[slice(start, stop)]` for the negative or absent bounds `compute_mask` uses
/// (`-0` is 0, as in Python).
fn py_range(len: usize, start: Option<i64>, stop: Option<i64>) -> std::ops::Range<usize> {
    let res = |v: i64| {
        if v < 0 {
            (len as i64 + v).max(0) as usize
        } else {
            (v as usize).min(len)
        }
    };
    let s = start.map_or(0, res);
    let e = stop.map_or(len, res);
    s..e.max(s)
}

/// MONAI's `compute_mask`: for padded sides `dims`, window `ws` and shift `ss`, the additive
/// attention mask `[nW, N, N]` (0 within a region, −100 across regions of the rolled map).
pub fn compute_mask(
    dims: [usize; 3],
    ws: [usize; 3],
    ss: [usize; 3],
    device: &Device,
) -> Tensor<3> {
    let [d, h, w] = dims;
    let ranges = |a: usize, len: usize| {
        let (wa, sa) = (ws[a] as i64, ss[a] as i64);
        [
            py_range(len, None, Some(-wa)),
            py_range(len, Some(-wa), Some(-sa)),
            py_range(len, Some(-sa), None),
        ]
    };
    let mut img = vec![0f32; d * h * w];
    let mut cnt = 0f32;
    for rd in ranges(0, d) {
        for rh in ranges(1, h) {
            for rw in ranges(2, w) {
                for z in rd.clone() {
                    for y in rh.clone() {
                        for x in rw.clone() {
                            img[(z * h + y) * w + x] = cnt;
                        }
                    }
                }
                cnt += 1.0;
            }
        }
    }
    // window_partition of the region map, then pairwise "same region" per window.
    let n = ws[0] * ws[1] * ws[2];
    let (nd, nh, nw) = (d / ws[0], h / ws[1], w / ws[2]);
    let windows = nd * nh * nw;
    let mut m = Vec::with_capacity(windows * n);
    for wz in 0..nd {
        for wy in 0..nh {
            for wx in 0..nw {
                for t in 0..n {
                    let (z, y, x) = (
                        wz * ws[0] + t / (ws[1] * ws[2]),
                        wy * ws[1] + (t / ws[2]) % ws[1],
                        wx * ws[2] + t % ws[2],
                    );
                    m.push(img[(z * h + y) * w + x]);
                }
            }
        }
    }
    let mut mask = Vec::with_capacity(windows * n * n);
    for win in 0..windows {
        let r = &m[win * n..(win + 1) * n];
        for i in 0..n {
            for j in 0..n {
                mask.push(if r[j] != r[i] { -100.0f32 } else { 0.0 });
            }
        }
    }
    Tensor::from_data(TensorData::new(mask, [windows, n, n]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_index_matches_monai_formula() {
        let idx = relative_position_index(7);
        assert_eq!(idx.len(), 343 * 343);
        // Same token: offset 0 → centre row (6·169 + 6·13 + 6).
        assert_eq!(idx[0], 6 * 169 + 6 * 13 + 6);
        // Query (0,0,0), key (6,6,6): offset −6 on every axis → row 0.
        assert_eq!(idx[342], 0);
        assert_eq!(*idx.iter().max().unwrap(), 13 * 13 * 13 - 1);
    }

    #[test]
    fn python_slices() {
        assert_eq!(py_range(14, None, Some(-7)), 0..7);
        assert_eq!(py_range(14, Some(-7), Some(-3)), 7..11);
        assert_eq!(py_range(14, Some(-3), None), 11..14);
        // shift 0: slice(-w, -0) is empty and slice(-0, None) is everything.
        assert!(py_range(4, Some(-4), Some(0)).is_empty());
        assert_eq!(py_range(4, Some(0), None), 0..4);
    }

    #[test]
    fn partition_roundtrip_and_mask_shape() {
        let dev = crate::cpu();
        let x = Tensor::<5>::random([2, 6, 4, 9, 3], Distribution::Default, &dev);
        let ws = [3, 2, 3];
        let p = window_partition(x.clone(), ws);
        assert_eq!(p.dims(), [2 * 2 * 2 * 3, 18, 3]);
        let back = window_reverse(p, ws, [2, 6, 4, 9]);
        assert_eq!(
            back.into_data().try_to_vec::<f32>().unwrap(),
            x.into_data().try_to_vec::<f32>().unwrap()
        );
        let m = compute_mask([6, 4, 9], ws, [1, 0, 1], &dev);
        assert_eq!(m.dims(), [12, 18, 18]);
        // The first window lies in one region: no masking there; the last straddles the shift.
        let v = m.into_data().try_to_vec::<f32>().unwrap();
        assert!(v[..18 * 18].iter().all(|&a| a == 0.0));
        assert!(v[11 * 324..].iter().any(|&a| a == -100.0));
    }
}
