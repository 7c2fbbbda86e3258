//! SwinUNETR as MONAI 1.5 defines it (`monai.networks.nets.SwinUNETR`, spatial_dims 3, no
//! dropout, `normalize=True`, `patch_norm=False`, v2 optional): the paper's transformer baseline.
//!
//! Shapes (input `[N, C_in, D, H, W]`, sides multiples of 32, f = feature_size):
//! patch embedding (2³ conv, stride 2) `[N, f, D/2, …]`; Swin stage i `[N, 2^(i+1)·f, D/2^(i+2), …]`;
//! the five hidden states (embedding + four stages) are LayerNorm'd over channels and feed the
//! UNETR residual encoders/decoders; logits `[N, classes, D, H, W]`.
//!
//! Key names are MONAI's: `swinViT.patch_embed.proj.*`, `swinViT.layers{1..4}.0.blocks.{b}.*`,
//! `swinViT.layers{i}.0.downsample.{norm,reduction}.*`, (v2) `swinViT.layers{i}c.0.layer.*`,
//! `encoder{1,2,3,4,10}.layer.*`, `decoder{1..5}.{transp_conv,conv_block}.*`, `out.conv.conv.*`.

use crate::config::ModelConfig;
use crate::layers::conv::{Conv, ConvConfig};
use crate::layers::norm::layer_norm_channels;
use crate::layers::swin_stage::SwinStage;
use crate::layers::unetr::{ResBlock, UpBlock};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// MONAI's `SwinTransformer` (the `swinViT` submodule).
#[derive(Module, Debug)]
pub struct SwinViT {
    /// `patch_embed.proj`: Conv3d(C_in → f, k 2, s 2) with bias.
    pub patch_embed: Conv,
    pub layers: Vec<SwinStage>,
    /// v2 only: `layers{i}c`, a residual conv block before stage i.
    pub layers_c: Vec<ResBlock>,
}

impl SwinViT {
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.feature_size;
        SwinViT {
            patch_embed: ConvConfig::new(cfg.in_channels, f[0], 2)
                .with_stride(2)
                .init(device),
            layers: (0..4)
                .map(|i| {
                    SwinStage::new(
                        f[i],
                        cfg.depths[i],
                        cfg.num_heads[i],
                        cfg.window_size,
                        cfg.mlp_ratio,
                        cfg.downsample,
                        device,
                    )
                })
                .collect(),
            layers_c: if cfg.use_v2 {
                (0..4).map(|i| ResBlock::new(f[i], f[i], device)).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The five normalised hidden states `[x0, x1, x2, x3, x4]`.
    pub fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        let mut x = self.patch_embed.forward(x);
        let mut outs = vec![layer_norm_channels(x.clone(), 1e-5)];
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(c) = self.layers_c.get(i) {
                x = c.forward(x);
            }
            x = layer.forward(x);
            outs.push(layer_norm_channels(x.clone(), 1e-5));
        }
        outs
    }
}

#[derive(Module, Debug)]
pub struct SwinUnetr {
    pub swin_vit: SwinViT,
    pub encoder1: ResBlock,
    pub encoder2: ResBlock,
    pub encoder3: ResBlock,
    pub encoder4: ResBlock,
    pub encoder10: ResBlock,
    pub decoder5: UpBlock,
    pub decoder4: UpBlock,
    pub decoder3: UpBlock,
    pub decoder2: UpBlock,
    pub decoder1: UpBlock,
    /// 1×1×1 conv head with bias.
    pub out: Conv,
    #[module(skip)]
    pub config: ModelConfig,
}

impl SwinUnetr {
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.feature_size[0];
        SwinUnetr {
            swin_vit: SwinViT::new(cfg, device),
            encoder1: ResBlock::new(cfg.in_channels, f, device),
            encoder2: ResBlock::new(f, f, device),
            encoder3: ResBlock::new(2 * f, 2 * f, device),
            encoder4: ResBlock::new(4 * f, 4 * f, device),
            encoder10: ResBlock::new(16 * f, 16 * f, device),
            decoder5: UpBlock::new(16 * f, 8 * f, device),
            decoder4: UpBlock::new(8 * f, 4 * f, device),
            decoder3: UpBlock::new(4 * f, 2 * f, device),
            decoder2: UpBlock::new(2 * f, f, device),
            decoder1: UpBlock::new(f, f, device),
            out: ConvConfig::new(f, cfg.out_channels, 1).init(device),
            config: cfg.clone(),
        }
    }

    /// `[N, C_in, D, H, W] → [N, classes, D, H, W]` raw logits.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let hs = self.swin_vit.forward(x.clone());
        let enc0 = self.encoder1.forward(x);
        let enc1 = self.encoder2.forward(hs[0].clone());
        let enc2 = self.encoder3.forward(hs[1].clone());
        let enc3 = self.encoder4.forward(hs[2].clone());
        let dec4 = self.encoder10.forward(hs[4].clone());
        let dec3 = self.decoder5.forward(dec4, hs[3].clone());
        let dec2 = self.decoder4.forward(dec3, enc3);
        let dec1 = self.decoder3.forward(dec2, enc2);
        let dec0 = self.decoder2.forward(dec1, enc1);
        self.out.forward(self.decoder1.forward(dec0, enc0))
    }
}
