//! The RepUX-Net encoder block: depthwise Conv3d(C, K, pad K/2, groups C, bias) → BatchNorm3d →
//! GELU. No residual, no MLP.
//!
//! Training parameterisations of the depthwise kernel:
//! - BFR: the forward pass uses `W_eff = δ ⊙ W`, built from the stored `W` inside the autodiff
//!   graph on every forward, so `∂L/∂W = δ ⊙ ∂L/∂W_eff` and nothing ever overwrites `W` (the
//!   authors' released code re-wraps the weight in place each forward, which compounds δ).
//! - SR: parallel depthwise branches with kernels `sr_kernels`, each with its own BatchNorm, summed
//!   before the GELU.
//!
//! [`RepUxBlock::merge`] gives the deploy block: one depthwise conv with δ, every BatchNorm and
//! every SR branch folded in, then GELU.

use super::conv::DwConv;
use super::reparam::{bfr_delta, fold_bn, pad_kernel, BnStats};
use crate::ops::gelu;
use burn::module::{Module, Param, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor, TensorData};

/// One SR side branch: a small depthwise conv and its BatchNorm.
#[derive(Module, Debug)]
pub struct SrBranch {
    pub dwconv: DwConv,
    pub norm: BatchNorm,
}

#[derive(Module, Debug)]
pub struct RepUxBlock {
    pub dwconv: DwConv,
    /// `None` once merged for deploy.
    pub norm: Option<BatchNorm>,
    pub sr: Vec<SrBranch>,
    /// α of the BFR prior; `None` when BFR is off (plain kernel, SR, or merged).
    pub bfr_alpha: Option<f64>,
}

pub(crate) fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c)
        .with_epsilon(1e-5)
        .with_momentum(0.1)
        .init(device)
}

pub(crate) fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    // Every block tensor is f32 on the CPU device; a failed read is a bug, not data to zero.
    crate::values(t, "RepUX block tensor")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|v| v as f64)
        .collect()
}

pub(crate) fn bn_stats(b: &BatchNorm) -> BnStats {
    BnStats {
        gamma: to_f64(b.gamma.val()),
        beta: to_f64(b.beta.val()),
        mean: to_f64(b.running_mean.value()),
        var: to_f64(b.running_var.value()),
        eps: b.epsilon,
    }
}

fn tensor<const D: usize>(v: &[f64], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(
        TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), shape),
        device,
    )
}

impl RepUxBlock {
    pub fn new(
        channels: usize,
        kernel: usize,
        bfr_alpha: Option<f64>,
        sr_kernels: &[usize],
        device: &Device,
    ) -> Self {
        RepUxBlock {
            dwconv: DwConv::new(channels, kernel, device),
            norm: Some(bn(channels, device)),
            sr: sr_kernels
                .iter()
                .map(|&k| SrBranch {
                    dwconv: DwConv::new(channels, k, device),
                    norm: bn(channels, device),
                })
                .collect(),
            bfr_alpha,
        }
    }

    /// The kernel the convolution actually uses: `δ ⊙ W` under BFR, else `W`.
    /// `[C, 1, K, K, K]`
    pub fn effective_weight(&self) -> Tensor<5> {
        let w = self.dwconv.weight.val();
        match self.bfr_alpha {
            Some(alpha) => {
                let k = self.dwconv.kernel();
                let delta = tensor(&bfr_delta(k, alpha), [1, 1, k, k, k], &w.device());
                w * delta
            }
            None => w,
        }
    }

    /// `[N, C, D, H, W] → [N, C, D, H, W]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut y = crate::ops::depthwise_conv3d(
            x.clone(),
            self.effective_weight(),
            Some(self.dwconv.bias.val()),
        );
        if let Some(n) = &self.norm {
            y = crate::collective::batch_norm(n, y);
        }
        for br in &self.sr {
            y = y + crate::collective::batch_norm(&br.norm, br.dwconv.forward(x.clone()));
        }
        gelu(y)
    }

    /// The deploy block: δ applied once, every BatchNorm folded (eval statistics), SR branches
    /// zero-padded and summed into the large kernel. Same output as `forward` in eval mode.
    pub fn merge(&self) -> RepUxBlock {
        let device = self.dwconv.weight.device();
        let [c, _, k, _, _] = self.dwconv.weight.dims();
        let mut w = to_f64(self.effective_weight());
        let mut b = to_f64(self.dwconv.bias.val());
        if let Some(n) = &self.norm {
            fold_bn(&mut w, &mut b, &bn_stats(n));
        }
        for br in &self.sr {
            let ks = br.dwconv.kernel();
            let mut ws = to_f64(br.dwconv.weight.val());
            let mut bs = to_f64(br.dwconv.bias.val());
            fold_bn(&mut ws, &mut bs, &bn_stats(&br.norm));
            for (a, p) in w.iter_mut().zip(pad_kernel(&ws, c, ks, k)) {
                *a += p;
            }
            for (a, p) in b.iter_mut().zip(bs) {
                *a += p;
            }
        }
        RepUxBlock {
            dwconv: DwConv {
                weight: Param::from_tensor(tensor(&w, [c, 1, k, k, k], &device)),
                bias: Param::from_tensor(tensor(&b, [c], &device)),
            },
            norm: None,
            sr: Vec::new(),
            bfr_alpha: None,
        }
    }

    /// Takes the stored depthwise kernel as the kernel the convolution uses (what the authors'
    /// files and every deploy-form file hold) and turns it into this block's stored W: under
    /// BFR `W = W_file / δ`, so that `δ ⊙ W = W_file` and the block computes what the file's
    /// network computes; without BFR the kernel is W already.
    pub fn kernel_from_deploy(&mut self) {
        let Some(alpha) = self.bfr_alpha else { return };
        let device = self.dwconv.weight.device();
        let [c, _, k, _, _] = self.dwconv.weight.dims();
        let delta = bfr_delta(k, alpha);
        let w: Vec<f64> = to_f64(self.dwconv.weight.val())
            .chunks(k * k * k)
            .flat_map(|ch| {
                ch.iter()
                    .zip(&delta)
                    .map(|(w, d)| w / d)
                    .collect::<Vec<_>>()
            })
            .collect();
        self.dwconv.weight = Param::from_tensor(tensor(&w, [c, 1, k, k, k], &device));
    }

    /// The block as the authors' evaluation network (`deploy=True`) holds it: the depthwise
    /// kernel the convolution uses (δ applied) with the BatchNorm kept beside it. SR branches
    /// cannot be written that way unfolded, so an SR block folds everything ([`Self::merge`]) and
    /// keeps an identity BatchNorm (γ 1, β 0, mean 0, variance 1 − ε). Same eval output.
    pub fn deploy_form(&self) -> RepUxBlock {
        if self.sr.is_empty() {
            let device = self.dwconv.weight.device();
            let w = Param::from_tensor(Tensor::from_data(
                self.effective_weight().into_data(),
                &device,
            ));
            return RepUxBlock {
                dwconv: DwConv {
                    weight: w,
                    bias: self.dwconv.bias.clone(),
                },
                norm: self.norm.clone(),
                sr: Vec::new(),
                bfr_alpha: None,
            };
        }
        let mut merged = self.merge();
        let c = merged.dwconv.bias.dims()[0];
        let mut norm = bn(c, &merged.dwconv.weight.device());
        let eps = norm.epsilon;
        RepUxBlock::set_bn(
            &mut norm,
            &vec![1.0; c],
            &vec![0.0; c],
            &vec![0.0; c],
            &vec![1.0 - eps; c],
        );
        merged.norm = Some(norm);
        merged
    }

    /// Folds only the BatchNorm (no BFR, no SR) — exposed for the folding test.
    pub fn set_bn(norm: &mut BatchNorm, gamma: &[f64], beta: &[f64], mean: &[f64], var: &[f64]) {
        let device = norm.gamma.device();
        let c = gamma.len();
        norm.gamma = Param::from_tensor(tensor(gamma, [c], &device));
        norm.beta = Param::from_tensor(tensor(beta, [c], &device));
        norm.running_mean = RunningState::new(tensor(mean, [c], &device));
        norm.running_var = RunningState::new(tensor(var, [c], &device));
    }
}
