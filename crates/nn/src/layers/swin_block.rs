//! One Swin Transformer block (MONAI's `SwinTransformerBlock`, no dropout / drop-path):
//! `x = x + crop(unshift(WindowAttention(windows(shift(pad(LN(x)))))))`, then
//! `x = x + MLP(LN(x))` with MLP = Linear → GELU (erf) → Linear.

use super::linear::Linear;
use super::norm::LayerNorm;
use super::window_attention::{window_partition, window_reverse, WindowAttention};
use crate::ops::gelu;
use burn::module::Module;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

/// MONAI's `MLPBlock` (dropout_mode "swin", rate 0): `linear1 → GELU → linear2`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub linear1: Linear,
    pub linear2: Linear,
}

impl Mlp {
    pub fn new(dim: usize, hidden: usize, device: &Device) -> Self {
        Mlp {
            linear1: Linear::new(dim, hidden, true, device),
            linear2: Linear::new(hidden, dim, true, device),
        }
    }
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.linear2.forward(gelu(self.linear1.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct SwinBlock {
    pub norm1: LayerNorm,
    pub attn: WindowAttention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
}

impl SwinBlock {
    pub fn new(
        dim: usize,
        num_heads: usize,
        window: usize,
        mlp_ratio: f64,
        device: &Device,
    ) -> Self {
        SwinBlock {
            norm1: LayerNorm::new(dim, 1e-5, device),
            attn: WindowAttention::new(dim, num_heads, window, device),
            norm2: LayerNorm::new(dim, 1e-5, device),
            mlp: Mlp::new(dim, (dim as f64 * mlp_ratio).round() as usize, device),
        }
    }

    /// `x [B, D, H, W, C]` with the (possibly clipped) window `ws` and shift `ss` of this block;
    /// `mask [nW, N, N]` is used where any shift is non-zero.
    pub fn forward(
        &self,
        x: Tensor<5>,
        ws: [usize; 3],
        ss: [usize; 3],
        mask: Option<&Tensor<3>>,
    ) -> Tensor<5> {
        let [b, d, h, w, _] = x.dims();
        let pad = |s: usize, win: usize| (win - s % win) % win;
        let (pd, ph, pw) = (pad(d, ws[0]), pad(h, ws[1]), pad(w, ws[2]));
        let mut y = self.norm1.forward(x.clone());
        if pd + ph + pw > 0 {
            y = y.pad(
                [(0, 0), (0, pd), (0, ph), (0, pw), (0, 0)],
                PadMode::Constant(0.0),
            );
        }
        let dims = [b, d + pd, h + ph, w + pw];
        let shifted = ss.iter().any(|&s| s > 0);
        if shifted {
            y = y.roll(
                &[-(ss[0] as i64), -(ss[1] as i64), -(ss[2] as i64)],
                &[1, 2, 3],
            );
        }
        let windows = self.attn.forward(
            window_partition(y, ws),
            if shifted { mask.cloned() } else { None },
        );
        let mut y = window_reverse(windows, ws, dims);
        if shifted {
            y = y.roll(&[ss[0] as i64, ss[1] as i64, ss[2] as i64], &[1, 2, 3]);
        }
        if pd + ph + pw > 0 {
            y = y.narrow(1, 0, d).narrow(2, 0, h).narrow(3, 0, w);
        }
        let x = x + y;
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }
}
