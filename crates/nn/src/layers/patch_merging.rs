//! Swin patch merging (MONAI's `PatchMerging`, v0.9 concat order, or `PatchMergingV2`):
//! `[B, D, H, W, C]` → the eight 2×2×2 neighbours concatenated on channels → LayerNorm(8C) →
//! Linear(8C → 2C, no bias) → `[B, ⌈D/2⌉, ⌈H/2⌉, ⌈W/2⌉, 2C]`.

use super::linear::Linear;
use super::norm::LayerNorm;
use crate::config::Merging;
use burn::module::Module;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

/// Neighbour (d, h, w) offsets in MONAI's concatenation order.
const V1: [[usize; 3]; 8] = [
    [0, 0, 0],
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
    [1, 1, 0],
    [1, 0, 1],
    [0, 1, 1],
    [1, 1, 1],
];
const V2: [[usize; 3]; 8] = [
    [0, 0, 0],
    [0, 0, 1],
    [0, 1, 0],
    [0, 1, 1],
    [1, 0, 0],
    [1, 0, 1],
    [1, 1, 0],
    [1, 1, 1],
];

#[derive(Module, Debug)]
pub struct PatchMerging {
    pub norm: LayerNorm,
    pub reduction: Linear,
    pub v2: bool,
}

impl PatchMerging {
    pub fn new(dim: usize, kind: Merging, device: &Device) -> Self {
        PatchMerging {
            norm: LayerNorm::new(8 * dim, 1e-5, device),
            reduction: Linear::new(8 * dim, 2 * dim, false, device),
            v2: kind == Merging::Mergingv2,
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, d, h, w, c] = x.dims();
        let x = if d % 2 + h % 2 + w % 2 > 0 {
            x.pad(
                [(0, 0), (0, d % 2), (0, h % 2), (0, w % 2), (0, 0)],
                PadMode::Constant(0.0),
            )
        } else {
            x
        };
        let (d2, h2, w2) = (d.div_ceil(2), h.div_ceil(2), w.div_ceil(2));
        let g = x.reshape([b, d2, 2, h2, 2, w2, 2, c]);
        let parts = (if self.v2 { V2 } else { V1 })
            .iter()
            .map(|&[i, j, k]| {
                g.clone()
                    .slice([
                        0..b,
                        0..d2,
                        i..i + 1,
                        0..h2,
                        j..j + 1,
                        0..w2,
                        k..k + 1,
                        0..c,
                    ])
                    .reshape([b, d2, h2, w2, c])
            })
            .collect();
        self.reduction
            .forward(self.norm.forward(Tensor::cat(parts, 4)))
    }
}
