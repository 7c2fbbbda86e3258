//! One Swin stage (MONAI's `BasicLayer`): `depth` blocks alternating plain and shifted windows
//! (shift ⌊w/2⌋ on odd blocks), then patch merging. Channels-first in and out:
//! `[B, C, D, H, W] → [B, 2C, ⌈D/2⌉, ⌈H/2⌉, ⌈W/2⌉]`.

use super::patch_merging::PatchMerging;
use super::swin_block::SwinBlock;
use super::window_attention::{compute_mask, window_and_shift};
use crate::config::Merging;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct SwinStage {
    pub blocks: Vec<SwinBlock>,
    pub downsample: PatchMerging,
    pub window: usize,
}

impl SwinStage {
    pub fn new(
        dim: usize,
        depth: usize,
        num_heads: usize,
        window: usize,
        mlp_ratio: f64,
        merging: Merging,
        device: &Device,
    ) -> Self {
        SwinStage {
            blocks: (0..depth)
                .map(|_| SwinBlock::new(dim, num_heads, window, mlp_ratio, device))
                .collect(),
            downsample: PatchMerging::new(dim, merging, device),
            window,
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [_, _, d, h, w] = x.dims();
        let (ws, ss) = window_and_shift([d, h, w], self.window, self.window / 2);
        let padded = [
            d.div_ceil(ws[0]) * ws[0],
            h.div_ceil(ws[1]) * ws[1],
            w.div_ceil(ws[2]) * ws[2],
        ];
        let mask = ss
            .iter()
            .any(|&s| s > 0)
            .then(|| compute_mask(padded, ws, ss, &x.device()));
        let mut x = x.permute([0, 2, 3, 4, 1]);
        for (i, blk) in self.blocks.iter().enumerate() {
            let shift = if i % 2 == 0 { [0; 3] } else { ss };
            x = blk.forward(x, ws, shift, mask.as_ref());
        }
        self.downsample.forward(x).permute([0, 4, 1, 2, 3])
    }
}
