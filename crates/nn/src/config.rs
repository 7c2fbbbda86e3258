//! The model configuration file (JSON) and named presets.
//!
//! ```json
//! {"arch": "repuxnet", "in_channels": 1, "out_channels": 5, "depths": [2,2,2,2],
//!  "feature_size": [48,96,192,384], "hidden_size": 768, "kernel_size": 21, "alpha": 1.0,
//!  "reparam": "bfr", "sr_kernels": [3, 7]}
//! ```
//! Missing fields take the defaults of the paper's RepUX-Net (3D UX-Net: kernel 7, no
//! re-parameterization).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// RepUX-Net: 21³ depthwise conv → BatchNorm → GELU blocks.
    Repuxnet,
    /// 3D UX-Net: 7³ depthwise conv → LayerNorm → grouped MLP → γ, residual.
    Uxnet,
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
    #[serde(default = "d_features")]
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

/// Named presets: `paper` (RepUX-Net as published), `paper-uxnet`, and reduced ones for CPU work
/// that keep the 21³ kernel and BFR and shrink only the widths.
pub const PRESETS: &[&str] = &["paper", "paper-uxnet", "small", "tiny", "micro"];

impl ModelConfig {
    pub fn preset(name: &str) -> Option<ModelConfig> {
        let base = ModelConfig::default();
        Some(match name {
            "paper" => base,
            "paper-uxnet" => ModelConfig { arch: Arch::Uxnet, ..base },
            "small" => ModelConfig { feature_size: [16, 32, 64, 128], hidden_size: 256, ..base },
            "tiny" => ModelConfig { feature_size: [8, 16, 32, 64], hidden_size: 128, ..base },
            "micro" => ModelConfig { feature_size: [4, 8, 16, 32], hidden_size: 64, ..base },
            _ => return None,
        })
    }

    pub fn kernel(&self) -> usize {
        self.kernel_size.unwrap_or(match self.arch {
            Arch::Repuxnet => 21,
            Arch::Uxnet => 7,
        })
    }

    pub fn reparam(&self) -> Reparam {
        self.reparam.unwrap_or(match self.arch {
            Arch::Repuxnet => Reparam::Bfr,
            Arch::Uxnet => Reparam::None,
        })
    }

    /// Checks the values; the error says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
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
    }
}
