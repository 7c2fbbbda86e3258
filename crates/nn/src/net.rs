//! The segmentation network behind every command: [`Net`] is RepUX-Net / 3D UX-Net ([`UxNet`],
//! here) or SwinUNETR ([`SwinUnetr`], `swin_unetr.rs`), by `config.arch`.
//!
//! RepUX-Net and 3D UX-Net: the shared encoder (stem 7³ stride 2, three 2³ stride-2
//! downsamplings, four stages) and the MONAI-style residual decoder. One model type serves both
//! architectures; the encoder's blocks differ.
//!
//! Shapes (input `[N, C_in, D, H, W]`, sides divisible by 16, f = feature_size):
//! stage i output `[N, f_i, D/2^(i+1), …]`; encoder1 at full resolution; logits `[N, classes, D, H, W]`.

use crate::config::{Arch, ModelConfig, Reparam};
use crate::layers::conv::{Conv, ConvConfig};
use crate::layers::norm::LayerNormCf;
use crate::layers::repux_block::RepUxBlock;
use crate::layers::unetr::{ResBlock, UpBlock};
use crate::layers::ux_block::UxBlock;
use crate::swin_unetr::SwinUnetr;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

// One block exists per stage: boxing the larger variant would save nothing worth an indirection
// (and burn's Module derive has no Box<M>).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block {
    Rep(RepUxBlock),
    Ux(UxBlock),
}

impl Block {
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        match self {
            Block::Rep(b) => b.forward(x),
            Block::Ux(b) => b.forward(x),
        }
    }
}

/// Stem (`conv → LN`) or downsampling (`LN → conv`) layer.
#[derive(Module, Debug)]
pub struct DownLayer {
    pub conv: Conv,
    pub norm: LayerNormCf,
    pub norm_first: bool,
}

impl DownLayer {
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        if self.norm_first {
            self.conv.forward(self.norm.forward(x))
        } else {
            self.norm.forward(self.conv.forward(x))
        }
    }
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub downsample_layers: Vec<DownLayer>,
    pub stages: Vec<Vec<Block>>,
    /// `norm{i}`: applied to stage i's output on the branch to the decoder only.
    pub norms: Vec<LayerNormCf>,
}

impl Encoder {
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.feature_size;
        let mut downsample_layers = vec![DownLayer {
            conv: ConvConfig::new(cfg.in_channels, f[0], 7)
                .with_stride(2)
                .with_padding(3)
                .init(device),
            norm: LayerNormCf::new(f[0], 1e-6, device),
            norm_first: false,
        }];
        for i in 0..3 {
            downsample_layers.push(DownLayer {
                conv: ConvConfig::new(f[i], f[i + 1], 2)
                    .with_stride(2)
                    .init(device),
                norm: LayerNormCf::new(f[i], 1e-6, device),
                norm_first: true,
            });
        }
        let k = cfg.kernel();
        let stages = (0..4)
            .map(|s| {
                (0..cfg.depths[s])
                    .map(|_| match cfg.arch {
                        Arch::Repuxnet => {
                            let alpha = (cfg.reparam() == Reparam::Bfr).then_some(cfg.alpha);
                            let sr: &[usize] = if cfg.reparam() == Reparam::Sr {
                                &cfg.sr_kernels
                            } else {
                                &[]
                            };
                            Block::Rep(RepUxBlock::new(f[s], k, alpha, sr, device))
                        }
                        // (SwinUNETR never builds this encoder.)
                        Arch::Uxnet | Arch::Swinunetr => Block::Ux(UxBlock::new(f[s], k, device)),
                    })
                    .collect()
            })
            .collect();
        let norms = f
            .iter()
            .map(|&c| LayerNormCf::new(c, 1e-6, device))
            .collect();
        Encoder {
            downsample_layers,
            stages,
            norms,
        }
    }

    /// The four normalised stage outputs.
    pub fn forward(&self, mut x: Tensor<5>) -> Vec<Tensor<5>> {
        let mut outs = Vec::with_capacity(4);
        for i in 0..4 {
            x = self.downsample_layers[i].forward(x);
            for b in &self.stages[i] {
                x = b.forward(x);
            }
            outs.push(self.norms[i].forward(x.clone()));
        }
        outs
    }
}

/// The full segmentation network, by `config.arch`.
// One network exists per process; see `Block` for why the variants are not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Net {
    Ux(UxNet),
    Swin(SwinUnetr),
}

/// RepUX-Net or 3D UX-Net (by `config.arch`).
#[derive(Module, Debug)]
pub struct UxNet {
    pub encoder: Encoder,
    pub encoder1: ResBlock,
    pub encoder2: ResBlock,
    pub encoder3: ResBlock,
    pub encoder4: ResBlock,
    pub encoder5: ResBlock,
    pub decoder5: UpBlock,
    pub decoder4: UpBlock,
    pub decoder3: UpBlock,
    pub decoder2: UpBlock,
    pub decoder1: ResBlock,
    /// 1×1×1 conv head with bias (input feature_size[0]; the authors hard-code 48).
    pub out: Conv,
    #[module(skip)]
    pub config: ModelConfig,
}

/// Serialises initialisation: burn's device RNG is process-wide, so two networks built at once
/// (parallel tests, a trainer's evaluation copy beside another trainer's seeded network) would
/// interleave their draws. Every network built here takes it, not only the seeded ones: an
/// unseeded build draws too, and its draws between another thread's seed and build would
/// change that thread's weights.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Net {
    /// A freshly initialised network whose weights depend only on `seed` (and the config), even
    /// when other threads build networks meanwhile (every build takes [`INIT`]); a random tensor
    /// drawn on the CPU device outside a build (`Tensor::random`) still takes its numbers. The
    /// draws are the CPU's on every device — a GPU's generator draws other numbers from the same
    /// seed — so one seed is one network wherever it trains.
    pub fn seeded(cfg: &ModelConfig, device: &Device, seed: u64) -> Self {
        use burn::module::Module;
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        let on_cpu = if device.is_autodiff() {
            crate::cpu().autodiff()
        } else {
            crate::cpu()
        };
        on_cpu.seed(seed);
        let net = Net::build(cfg, &on_cpu);
        if *device == on_cpu {
            net
        } else {
            // `fork` keeps which parameters require gradients.
            net.fork(device)
        }
    }

    /// A network with weights from the device's generator as it stands (which other threads
    /// may have drawn from): for one that is then loaded, or where any weights do.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        Net::build(cfg, device)
    }

    /// [`Net::new`] without [`INIT`]: the caller holds it.
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        match cfg.arch {
            Arch::Swinunetr => Net::Swin(SwinUnetr::new(cfg, device)),
            Arch::Repuxnet | Arch::Uxnet => Net::Ux(UxNet::new(cfg, device)),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        match self {
            Net::Ux(n) => &n.config,
            Net::Swin(n) => &n.config,
        }
    }

    /// The input's channel count must match, and every side be a positive multiple of
    /// [`ModelConfig::size_multiple`] (16 for the UX-Nets, 32 for SwinUNETR).
    pub fn check_input(&self, dims: [usize; 5]) -> Result<(), String> {
        let [_, c, d, h, w] = dims;
        if c != self.config().in_channels {
            return Err(format!(
                "input has {c} channels, the model expects {}",
                self.config().in_channels
            ));
        }
        let m = self.config().size_multiple();
        if [d, h, w].iter().any(|s| s % m != 0 || *s == 0) {
            return Err(format!(
                "input size {d}×{h}×{w}: every side must be a positive multiple of {m}"
            ));
        }
        Ok(())
    }

    /// `[N, C_in, D, H, W] → [N, classes, D, H, W]` raw logits.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        match self {
            Net::Ux(n) => n.forward(x),
            Net::Swin(n) => n.forward(x),
        }
    }

    /// Calls `f` on every RepUX-Net block (3D UX-Net and SwinUNETR have none).
    pub fn for_each_rep_block(&mut self, mut f: impl FnMut(&mut RepUxBlock)) {
        if let Net::Ux(n) = self {
            for b in n.encoder.stages.iter_mut().flatten() {
                if let Block::Rep(r) = b {
                    f(r);
                }
            }
        }
    }

    /// The network as the reference implementation's evaluation network holds it — the
    /// authors' `deploy=True` RepUX-Net (kernels with δ applied, BatchNorms kept; SR folded), 3D
    /// UX-Net and MONAI's SwinUNETR as they are. Its state dict is what `repux model export`
    /// writes.
    pub fn deploy_form(&self) -> Net {
        let mut net = self.clone();
        net.for_each_rep_block(|b| *b = b.deploy_form());
        net
    }

    /// The deploy network: every RepUX block merged (δ applied, BatchNorms and SR branches
    /// folded); other networks are returned as they are. Its output equals this network's
    /// eval-mode output.
    pub fn merge(&self) -> Net {
        let mut net = self.clone();
        net.for_each_rep_block(|b| *b = b.merge());
        net
    }
}

impl UxNet {
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.feature_size;
        let h = cfg.hidden_size;
        UxNet {
            encoder: Encoder::new(cfg, device),
            encoder1: ResBlock::new(cfg.in_channels, f[0], device),
            encoder2: ResBlock::new(f[0], f[1], device),
            encoder3: ResBlock::new(f[1], f[2], device),
            encoder4: ResBlock::new(f[2], f[3], device),
            encoder5: ResBlock::new(f[3], h, device),
            decoder5: UpBlock::new(h, f[3], device),
            decoder4: UpBlock::new(f[3], f[2], device),
            decoder3: UpBlock::new(f[2], f[1], device),
            decoder2: UpBlock::new(f[1], f[0], device),
            decoder1: ResBlock::new(f[0], f[0], device),
            out: ConvConfig::new(f[0], cfg.out_channels, 1).init(device),
            config: cfg.clone(),
        }
    }

    /// `[N, C_in, D, H, W] → [N, classes, D, H, W]` raw logits.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let o = self.encoder.forward(x.clone());
        let e1 = self.encoder1.forward(x);
        let e2 = self.encoder2.forward(o[0].clone());
        let e3 = self.encoder3.forward(o[1].clone());
        let e4 = self.encoder4.forward(o[2].clone());
        let e5 = self.encoder5.forward(o[3].clone());
        let d = self.decoder5.forward(e5, e4);
        let d = self.decoder4.forward(d, e3);
        let d = self.decoder3.forward(d, e2);
        let d = self.decoder2.forward(d, e1);
        self.out.forward(self.decoder1.forward(d))
    }
}
