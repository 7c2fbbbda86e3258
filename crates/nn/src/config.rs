//! The model configuration file (JSON) and named presets.
//!
//! ```json
//! {"arch": "repuxnet", "in_channels": 1, "out_channels": 5, "depths": [2,2,2,2],
//!  "feature_size": [48,96,192,384], "hidden_size": 768, "kernel_size": 21, "alpha": 1.0,
//!  "reparam": "bfr", "sr_kernels": [3, 7]}
//! ```
//! Missing fields take the defaults of the paper's RepUX-Net (3D UX-Net: kernel 7, no
//! re-parameterization).
//!
//! SwinUNETR (MONAI 1.5's `monai.networks.nets.SwinUNETR`, the paper's transformer baseline):
//!
//! ```json
//! {"arch": "swinunetr", "in_channels": 1, "out_channels": 14, "feature_size": 48,
//!  "depths": [2,2,2,2], "num_heads": [3,6,12,24], "window_size": 7, "mlp_ratio": 4.0,
//!  "use_v2": false, "downsample": "merging"}
//! ```
//! `feature_size` takes MONAI's single number f (stage widths f, 2f, 4f, 8f) or the four widths.
//! `hidden_size`, `kernel_size`, `alpha`, `reparam` and `sr_kernels` are UX-Net fields and are
//! not used by SwinUNETR (`kernel_size`/`reparam` are rejected there).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// RepUX-Net: 21³ depthwise conv → BatchNorm → GELU blocks.
    Repuxnet,
    /// 3D UX-Net: 7³ depthwise conv → LayerNorm → grouped MLP → γ, residual.
    Uxnet,
    /// SwinUNETR (MONAI): shifted-window transformer encoder, UNETR residual decoder.
    Swinunetr,
}

/// SwinUNETR's patch merging: MONAI's `"merging"` (v0.9 concat order, the default) or
/// `"mergingv2"` (itertools.product order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Merging {
    Merging,
    Mergingv2,
}

/// How the large depthwise kernels are parameterised during training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reparam {
    /// Bayesian frequency re-parameterization: the forward pass uses δ ⊙ W.
    Bfr,
    /// Structural re-parameterization: parallel small-kernel branches with their own BatchNorm.
    Sr,
    /// A plain large kernel.
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default = "d_arch")]
    pub arch: Arch,
    #[serde(default = "d_in")]
    pub in_channels: usize,
    #[serde(default = "d_out")]
    pub out_channels: usize,
    #[serde(default = "d_depths")]
    pub depths: [usize; 4],
    /// Stage widths; SwinUNETR configs may give MONAI's single `feature_size` f (→ f, 2f, 4f, 8f).
    #[serde(default = "d_features", deserialize_with = "features")]
    pub feature_size: [usize; 4],
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    /// Depthwise kernel size; default 21 (RepUX-Net) or 7 (3D UX-Net).
    #[serde(default)]
    pub kernel_size: Option<usize>,
    /// BFR prior strength α in δ = α / (d + α).
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    /// Default `bfr` for RepUX-Net, `none` for 3D UX-Net.
    #[serde(default)]
    pub reparam: Option<Reparam>,
    /// Small kernel sizes of the SR branches.
    #[serde(default = "d_sr")]
    pub sr_kernels: Vec<usize>,
    /// SwinUNETR: attention heads per stage.
    #[serde(default = "d_heads")]
    pub num_heads: [usize; 4],
    /// SwinUNETR: attention window side (clipped to the feature map where that is smaller).
    #[serde(default = "d_window")]
    pub window_size: usize,
    /// SwinUNETR: MLP hidden width / embedding width.
    #[serde(default = "d_mlp")]
    pub mlp_ratio: f64,
    /// SwinUNETR v2: a residual conv block before each transformer stage.
    #[serde(default)]
    pub use_v2: bool,
    /// SwinUNETR: patch merging variant.
    #[serde(default = "d_merging")]
    pub downsample: Merging,
}

fn features<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[usize; 4], D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        One(usize),
        Four([usize; 4]),
    }
    Ok(match F::deserialize(d)? {
        F::One(f) => [f, 2 * f, 4 * f, 8 * f],
        F::Four(v) => v,
    })
}
fn d_heads() -> [usize; 4] {
    [3, 6, 12, 24]
}
fn d_window() -> usize {
    7
}
fn d_mlp() -> f64 {
    4.0
}
fn d_merging() -> Merging {
    Merging::Merging
}

fn d_arch() -> Arch {
    Arch::Repuxnet
}
fn d_in() -> usize {
    1
}
fn d_out() -> usize {
    5
}
fn d_depths() -> [usize; 4] {
    [2, 2, 2, 2]
}
fn d_features() -> [usize; 4] {
    [48, 96, 192, 384]
}
fn d_hidden() -> usize {
    768
}
fn d_alpha() -> f64 {
    1.0
}
fn d_sr() -> Vec<usize> {
    vec![3, 7]
}

impl Default for ModelConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all fields have defaults")
    }
}

/// Named presets: `paper` (RepUX-Net as published), `paper-uxnet`, reduced ones for CPU work
/// that keep the 21³ kernel and BFR and shrink only the widths, and SwinUNETR with MONAI's
/// feature_size 48 (`swinunetr`), 24 (`swinunetr-small`) and 12 (`swinunetr-tiny`, MONAI's
/// smallest: feature_size must be a multiple of 12).
pub const PRESETS: &[&str] = &["paper", "paper-uxnet", "small", "tiny", "micro", "swinunetr", "swinunetr-small", "swinunetr-tiny"];

impl ModelConfig {
    pub fn preset(name: &str) -> Option<ModelConfig> {
        let base = ModelConfig::default();
        Some(match name {
            "paper" => base,
            "paper-uxnet" => ModelConfig { arch: Arch::Uxnet, ..base },
            "small" => ModelConfig { feature_size: [16, 32, 64, 128], hidden_size: 256, ..base },
            "tiny" => ModelConfig { feature_size: [8, 16, 32, 64], hidden_size: 128, ..base },
            "micro" => ModelConfig { feature_size: [4, 8, 16, 32], hidden_size: 64, ..base },
            "swinunetr" => ModelConfig { arch: Arch::Swinunetr, ..base },
            "swinunetr-small" => ModelConfig { arch: Arch::Swinunetr, feature_size: [24, 48, 96, 192], ..base },
            "swinunetr-tiny" => ModelConfig { arch: Arch::Swinunetr, feature_size: [12, 24, 48, 96], ..base },
            _ => return None,
        })
    }

    pub fn kernel(&self) -> usize {
        self.kernel_size.unwrap_or(match self.arch {
            Arch::Repuxnet => 21,
            Arch::Uxnet | Arch::Swinunetr => 7,
        })
    }

    pub fn reparam(&self) -> Reparam {
        self.reparam.unwrap_or(match self.arch {
            Arch::Repuxnet => Reparam::Bfr,
            Arch::Uxnet | Arch::Swinunetr => Reparam::None,
        })
    }

    /// Every input side must be a multiple of this: 16 for the UX-Nets (stem + three stride-2
    /// stages), 32 for SwinUNETR (MONAI: patch_size⁵ = 2⁵).
    pub fn size_multiple(&self) -> usize {
        match self.arch {
            Arch::Swinunetr => 32,
            _ => 16,
        }
    }

    /// Checks the values; the error says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.arch == Arch::Swinunetr {
            return self.validate_swin();
        }
        let k = self.kernel();
        if k % 2 == 0 || !(1..=31).contains(&k) {
            return Err(format!("kernel_size {k} must be odd, 1 to 31"));
        }
        if self.in_channels == 0 || self.out_channels == 0 || self.hidden_size == 0 || self.feature_size.contains(&0) || self.depths.contains(&0) {
            return Err("channel counts, feature sizes and depths must be positive".into());
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return Err(format!("alpha {} must be positive", self.alpha));
        }
        if self.reparam() == Reparam::Sr {
            if self.arch != Arch::Repuxnet {
                return Err("sr re-parameterization applies to RepUX-Net blocks".into());
            }
            for &s in &self.sr_kernels {
                if s % 2 == 0 || s >= k {
                    return Err(format!("sr kernel {s} must be odd and smaller than kernel_size {k}"));
                }
            }
        }
        if self.reparam() == Reparam::Bfr && self.arch != Arch::Repuxnet {
            return Err("bfr re-parameterization applies to RepUX-Net blocks".into());
        }
        Ok(())
    }

    fn validate_swin(&self) -> Result<(), String> {
        if self.kernel_size.is_some() || self.reparam.is_some_and(|r| r != Reparam::None) {
            return Err("kernel_size and reparam are UX-Net fields; SwinUNETR has no depthwise kernels".into());
        }
        if self.in_channels == 0 || self.out_channels == 0 || self.depths.contains(&0) || self.num_heads.contains(&0) || self.window_size == 0 {
            return Err("channel counts, depths, num_heads and window_size must be positive".into());
        }
        let f = self.feature_size[0];
        if f == 0 || f % 12 != 0 || self.feature_size != [f, 2 * f, 4 * f, 8 * f] {
            return Err(format!("feature_size {:?}: SwinUNETR takes one feature_size f, a multiple of 12 (widths f, 2f, 4f, 8f)", self.feature_size));
        }
        for (s, (&c, &h)) in self.feature_size.iter().zip(&self.num_heads).enumerate() {
            if c % h != 0 {
                return Err(format!("stage {s}: width {c} is not divisible by num_heads {h}"));
            }
        }
        if !(self.mlp_ratio > 0.0 && self.mlp_ratio.is_finite()) || (f as f64 * self.mlp_ratio).fract() != 0.0 {
            return Err(format!("mlp_ratio {} must be positive and give whole MLP widths", self.mlp_ratio));
        }
        Ok(())
    }

    /// A JSON file path or a preset name.
    pub fn load(spec: &str) -> Result<ModelConfig, String> {
        let p = std::path::Path::new(spec);
        let cfg = if p.is_file() {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{spec}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("{spec}: invalid model config: {e}"))?
        } else if let Some(c) = ModelConfig::preset(spec) {
            c
        } else {
            return Err(format!("{spec}: no such file, and not a preset ({})", PRESETS.join(", ")));
        };
        cfg.validate().map_err(|e| format!("{spec}: {e}"))?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_presets() {
        let c: ModelConfig = serde_json::from_str(r#"{"arch": "uxnet", "out_channels": 14}"#).unwrap();
        assert_eq!((c.kernel(), c.reparam(), c.feature_size), (7, Reparam::None, [48, 96, 192, 384]));
        assert_eq!(ModelConfig::default().kernel(), 21);
        assert_eq!(ModelConfig::default().reparam(), Reparam::Bfr);
        for p in PRESETS {
            ModelConfig::preset(p).unwrap().validate().unwrap();
        }
        assert!(serde_json::from_str::<ModelConfig>(r#"{"kernal_size": 3}"#).is_err());
        let bad = ModelConfig { kernel_size: Some(20), ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("odd"));
        // MONAI's single feature_size for SwinUNETR.
        let s: ModelConfig = serde_json::from_str(r#"{"arch": "swinunetr", "feature_size": 24, "out_channels": 14}"#).unwrap();
        assert_eq!((s.feature_size, s.num_heads, s.window_size, s.size_multiple()), ([24, 48, 96, 192], [3, 6, 12, 24], 7, 32));
        s.validate().unwrap();
        let odd: ModelConfig = serde_json::from_str(r#"{"arch": "swinunetr", "feature_size": 20}"#).unwrap();
        assert!(odd.validate().unwrap_err().contains("multiple of 12"));
        let rep: ModelConfig = serde_json::from_str(r#"{"arch": "swinunetr", "reparam": "bfr"}"#).unwrap();
        assert!(rep.validate().is_err());
    }
}
