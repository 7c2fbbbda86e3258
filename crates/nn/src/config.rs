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
//!
//! Configs written for the reference tools load as they are:
//! - MONAI 1.5's `SwinUNETR(...)` argument names (`in_channels, out_channels, patch_size, depths,
//!   num_heads, window_size, qkv_bias, mlp_ratio, feature_size, norm_name, drop_rate,
//!   attn_drop_rate, dropout_path_rate, normalize, spatial_dims, downsample, use_v2,
//!   use_checkpoint`); any of the SwinUNETR-only names implies `"arch": "swinunetr"`.
//! - The authors' `REPUXNET(...)`/`UXNET(...)` names (`in_chans, out_chans, depths, feat_size,
//!   hidden_size, ks, a, deploy, drop_path_rate, layer_scale_init_value, norm_name, conv_block,
//!   res_block, spatial_dims`); they imply RepUX-Net unless `"arch": "uxnet"` says otherwise.
//!   `deploy: true` is the authors' evaluation network (the stored kernels run as they are:
//!   `reparam` none); `deploy: false` their training network (BFR).
//!
//! A value repux cannot build (`patch_size` ≠ 2, `spatial_dims` ≠ 3, `normalize: false`, any
//! dropout rate ≠ 0, …) is an error naming the key and the value it supports; an unknown key is an
//! error too.

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
#[serde(try_from = "RawConfig")]
pub struct ModelConfig {
    pub arch: Arch,
    pub in_channels: usize,
    pub out_channels: usize,
    pub depths: [usize; 4],
    /// Stage widths; SwinUNETR configs may give MONAI's single `feature_size` f (→ f, 2f, 4f, 8f).
    pub feature_size: [usize; 4],
    pub hidden_size: usize,
    /// Depthwise kernel size; default 21 (RepUX-Net) or 7 (3D UX-Net).
    pub kernel_size: Option<usize>,
    /// BFR prior strength α in δ = α / (d + α).
    pub alpha: f64,
    /// Default `bfr` for RepUX-Net, `none` for 3D UX-Net.
    pub reparam: Option<Reparam>,
    /// Small kernel sizes of the SR branches.
    pub sr_kernels: Vec<usize>,
    /// SwinUNETR: attention heads per stage.
    pub num_heads: [usize; 4],
    /// SwinUNETR: attention window side (clipped to the feature map where that is smaller).
    pub window_size: usize,
    /// SwinUNETR: MLP hidden width / embedding width.
    pub mlp_ratio: f64,
    /// SwinUNETR v2: a residual conv block before each transformer stage.
    pub use_v2: bool,
    /// SwinUNETR: patch merging variant.
    pub downsample: Merging,
}

/// One number or one per axis (MONAI's `window_size`, `patch_size`), all equal.
#[derive(Deserialize)]
#[serde(untagged)]
enum Isotropic {
    One(usize),
    Three([usize; 3]),
}

impl Isotropic {
    fn value(&self, key: &str) -> Result<usize, String> {
        match *self {
            Isotropic::One(v) => Ok(v),
            Isotropic::Three([a, b, c]) if a == b && b == c => Ok(a),
            Isotropic::Three(v) => Err(format!(
                "{key} {v:?}: repux builds the same size on every axis"
            )),
        }
    }
}

/// What a config file may say: repux's own names, MONAI 1.5's `SwinUNETR` constructor names and
/// the authors' `REPUXNET`/`UXNET` constructor names (`in_chans`, `feat_size`, `ks`, `a`,
/// `deploy`, …). Names that mean the same thing are synonyms (giving both is an error); values
/// repux cannot build are errors that name the key and the value it supports.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    arch: Option<Arch>,
    in_channels: Option<usize>,
    out_channels: Option<usize>,
    depths: Option<[usize; 4]>,
    #[serde(default, deserialize_with = "features")]
    feature_size: Option<[usize; 4]>,
    hidden_size: Option<usize>,
    kernel_size: Option<usize>,
    alpha: Option<f64>,
    reparam: Option<Reparam>,
    sr_kernels: Option<Vec<usize>>,
    num_heads: Option<[usize; 4]>,
    window_size: Option<Isotropic>,
    mlp_ratio: Option<f64>,
    use_v2: Option<bool>,
    downsample: Option<Merging>,
    // MONAI 1.5 SwinUNETR.
    patch_size: Option<Isotropic>,
    qkv_bias: Option<bool>,
    norm_name: Option<String>,
    drop_rate: Option<f64>,
    attn_drop_rate: Option<f64>,
    dropout_path_rate: Option<f64>,
    normalize: Option<bool>,
    spatial_dims: Option<usize>,
    use_checkpoint: Option<bool>,
    // The authors' REPUXNET / UXNET.
    in_chans: Option<usize>,
    out_chans: Option<usize>,
    #[serde(default, deserialize_with = "features")]
    feat_size: Option<[usize; 4]>,
    ks: Option<usize>,
    a: Option<f64>,
    deploy: Option<bool>,
    drop_path_rate: Option<f64>,
    layer_scale_init_value: Option<f64>,
    conv_block: Option<bool>,
    res_block: Option<bool>,
}

fn features<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<[usize; 4]>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        One(usize),
        Four([usize; 4]),
    }
    Ok(Option::<F>::deserialize(d)?.map(|f| match f {
        F::One(f) => [f, 2 * f, 4 * f, 8 * f],
        F::Four(v) => v,
    }))
}

/// The value under either of two synonymous names.
fn synonym<T>(a: (&str, Option<T>), b: (&str, Option<T>)) -> Result<Option<T>, String> {
    match (a.1, b.1) {
        (Some(_), Some(_)) => Err(format!("{} and {} name the same thing; give one", a.0, b.0)),
        (x, y) => Ok(x.or(y)),
    }
}

/// A value repux builds only one way: anything else is an error naming the supported value.
fn only<T: PartialEq + std::fmt::Debug>(
    key: &str,
    value: Option<T>,
    supported: T,
    why: &str,
) -> Result<(), String> {
    match value {
        Some(v) if v != supported => Err(format!(
            "{key} {v:?} is not supported: repux builds {key} = {supported:?} ({why})"
        )),
        _ => Ok(()),
    }
}

impl TryFrom<RawConfig> for ModelConfig {
    type Error = String;

    fn try_from(r: RawConfig) -> Result<ModelConfig, String> {
        // Keys that only one family of networks takes; where `arch` is absent they decide it.
        let swin_only = [
            ("patch_size", r.patch_size.is_some()),
            ("qkv_bias", r.qkv_bias.is_some()),
            ("drop_rate", r.drop_rate.is_some()),
            ("attn_drop_rate", r.attn_drop_rate.is_some()),
            ("dropout_path_rate", r.dropout_path_rate.is_some()),
            ("normalize", r.normalize.is_some()),
            ("use_checkpoint", r.use_checkpoint.is_some()),
        ];
        let authors_only = [
            ("in_chans", r.in_chans.is_some()),
            ("out_chans", r.out_chans.is_some()),
            ("feat_size", r.feat_size.is_some()),
            ("ks", r.ks.is_some()),
            ("a", r.a.is_some()),
            ("deploy", r.deploy.is_some()),
            ("drop_path_rate", r.drop_path_rate.is_some()),
            ("layer_scale_init_value", r.layer_scale_init_value.is_some()),
            ("conv_block", r.conv_block.is_some()),
            ("res_block", r.res_block.is_some()),
        ];
        let first = |keys: &[(&'static str, bool)]| keys.iter().find(|k| k.1).map(|k| k.0);
        let (swin_key, ux_key) = (first(&swin_only), first(&authors_only));
        // MONAI's names that repux's own schema shares also say SwinUNETR when nothing else
        // names the network.
        let shared_swin_key = first(&[
            ("num_heads", r.num_heads.is_some()),
            ("window_size", r.window_size.is_some()),
            ("mlp_ratio", r.mlp_ratio.is_some()),
            ("use_v2", r.use_v2.is_some()),
            ("downsample", r.downsample.is_some()),
        ]);
        let arch = match (r.arch, swin_key, ux_key) {
            (_, Some(s), Some(u)) => {
                return Err(format!("{s} is a SwinUNETR (MONAI) argument and {u} one of the authors' UX-Net arguments; one config describes one network"))
            }
            (Some(a), Some(s), None) if a != Arch::Swinunetr => return Err(format!("{s} is a SwinUNETR (MONAI) argument, but arch is {a:?}")),
            (Some(Arch::Swinunetr), None, Some(u)) => return Err(format!("{u} is one of the authors' UX-Net arguments, but arch is Swinunetr")),
            (Some(a), _, _) => a,
            (None, Some(_), None) => Arch::Swinunetr,
            (None, None, Some(_)) => Arch::Repuxnet,
            (None, None, None) if shared_swin_key.is_some() && r.kernel_size.is_none() && r.reparam.is_none() => Arch::Swinunetr,
            (None, None, None) => Arch::Repuxnet,
        };
        only("spatial_dims", r.spatial_dims, 3, "3-D networks")?;
        if let Some(p) = &r.patch_size {
            only(
                "patch_size",
                Some(p.value("patch_size")?),
                2,
                "MONAI's default patch embedding",
            )?;
        }
        only("qkv_bias", r.qkv_bias, true, "MONAI's default")?;
        if let Some(n) = &r.norm_name {
            only(
                "norm_name",
                Some(n.to_ascii_lowercase().as_str()),
                "instance",
                "the UNETR blocks' InstanceNorm",
            )?;
        }
        for (k, v) in [
            ("drop_rate", r.drop_rate),
            ("attn_drop_rate", r.attn_drop_rate),
            ("dropout_path_rate", r.dropout_path_rate),
            ("drop_path_rate", r.drop_path_rate),
        ] {
            only(k, v, 0.0, "no dropout or stochastic depth is implemented")?;
        }
        only(
            "normalize",
            r.normalize,
            true,
            "MONAI's default: the encoder features are layer-normalised",
        )?;
        only(
            "layer_scale_init_value",
            r.layer_scale_init_value,
            1e-6,
            "the authors' default γ initialisation",
        )?;
        only(
            "conv_block",
            r.conv_block,
            true,
            "the authors' default UNETR blocks",
        )?;
        only(
            "res_block",
            r.res_block,
            true,
            "the authors' default residual UNETR blocks",
        )?;
        // `use_checkpoint` trades memory for recomputation in PyTorch and changes no value;
        // repux plans its own memory, so either setting is honoured as it is.
        let mut reparam = r.reparam;
        if let Some(deploy) = r.deploy {
            if arch != Arch::Repuxnet {
                return Err(format!(
                    "deploy is a RepUX-Net argument, but arch is {arch:?}"
                ));
            }
            // deploy=True is the authors' evaluation network: it runs the stored kernels as they
            // are. deploy=False is their training network: BFR.
            let want = if deploy { Reparam::None } else { Reparam::Bfr };
            match reparam {
                Some(given) if given != want => {
                    return Err(format!("deploy {deploy} and reparam {given:?} contradict each other (deploy {deploy} means reparam {want:?})"))
                }
                _ => reparam = Some(want),
            }
        }
        let window_size = match &r.window_size {
            Some(w) => w.value("window_size")?,
            None => 7,
        };
        Ok(ModelConfig {
            arch,
            in_channels: synonym(("in_channels", r.in_channels), ("in_chans", r.in_chans))?
                .unwrap_or(1),
            out_channels: synonym(("out_channels", r.out_channels), ("out_chans", r.out_chans))?
                .unwrap_or(5),
            depths: r.depths.unwrap_or([2, 2, 2, 2]),
            feature_size: synonym(("feature_size", r.feature_size), ("feat_size", r.feat_size))?
                .unwrap_or([48, 96, 192, 384]),
            hidden_size: r.hidden_size.unwrap_or(768),
            kernel_size: synonym(("kernel_size", r.kernel_size), ("ks", r.ks))?,
            alpha: synonym(("alpha", r.alpha), ("a", r.a))?.unwrap_or(1.0),
            reparam,
            sr_kernels: r.sr_kernels.unwrap_or_else(|| vec![3, 7]),
            num_heads: r.num_heads.unwrap_or([3, 6, 12, 24]),
            window_size,
            mlp_ratio: r.mlp_ratio.unwrap_or(4.0),
            use_v2: r.use_v2.unwrap_or(false),
            downsample: r.downsample.unwrap_or(Merging::Merging),
        })
    }
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
pub const PRESETS: &[&str] = &[
    "paper",
    "paper-uxnet",
    "small",
    "tiny",
    "micro",
    "swinunetr",
    "swinunetr-small",
    "swinunetr-tiny",
];

impl ModelConfig {
    pub fn preset(name: &str) -> Option<ModelConfig> {
        let base = ModelConfig::default();
        Some(match name {
            "paper" => base,
            "paper-uxnet" => ModelConfig {
                arch: Arch::Uxnet,
                ..base
            },
            "small" => ModelConfig {
                feature_size: [16, 32, 64, 128],
                hidden_size: 256,
                ..base
            },
            "tiny" => ModelConfig {
                feature_size: [8, 16, 32, 64],
                hidden_size: 128,
                ..base
            },
            "micro" => ModelConfig {
                feature_size: [4, 8, 16, 32],
                hidden_size: 64,
                ..base
            },
            "swinunetr" => ModelConfig {
                arch: Arch::Swinunetr,
                ..base
            },
            "swinunetr-small" => ModelConfig {
                arch: Arch::Swinunetr,
                feature_size: [24, 48, 96, 192],
                ..base
            },
            "swinunetr-tiny" => ModelConfig {
                arch: Arch::Swinunetr,
                feature_size: [12, 24, 48, 96],
                ..base
            },
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
        if k.is_multiple_of(2) || !(1..=31).contains(&k) {
            return Err(format!("kernel_size {k} must be odd, 1 to 31"));
        }
        if self.in_channels == 0
            || self.out_channels == 0
            || self.hidden_size == 0
            || self.feature_size.contains(&0)
            || self.depths.contains(&0)
        {
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
                    return Err(format!(
                        "sr kernel {s} must be odd and smaller than kernel_size {k}"
                    ));
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
            return Err(
                "kernel_size and reparam are UX-Net fields; SwinUNETR has no depthwise kernels"
                    .into(),
            );
        }
        if self.in_channels == 0
            || self.out_channels == 0
            || self.depths.contains(&0)
            || self.num_heads.contains(&0)
            || self.window_size == 0
        {
            return Err(
                "channel counts, depths, num_heads and window_size must be positive".into(),
            );
        }
        let f = self.feature_size[0];
        if f == 0 || !f.is_multiple_of(12) || self.feature_size != [f, 2 * f, 4 * f, 8 * f] {
            return Err(format!("feature_size {:?}: SwinUNETR takes one feature_size f, a multiple of 12 (widths f, 2f, 4f, 8f)", self.feature_size));
        }
        for (s, (&c, &h)) in self.feature_size.iter().zip(&self.num_heads).enumerate() {
            if c % h != 0 {
                return Err(format!(
                    "stage {s}: width {c} is not divisible by num_heads {h}"
                ));
            }
        }
        if !(self.mlp_ratio > 0.0 && self.mlp_ratio.is_finite())
            || (f as f64 * self.mlp_ratio).fract() != 0.0
        {
            return Err(format!(
                "mlp_ratio {} must be positive and give whole MLP widths",
                self.mlp_ratio
            ));
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
            return Err(format!(
                "{spec}: no such file, and not a preset ({})",
                PRESETS.join(", ")
            ));
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
        let c: ModelConfig =
            serde_json::from_str(r#"{"arch": "uxnet", "out_channels": 14}"#).unwrap();
        assert_eq!(
            (c.kernel(), c.reparam(), c.feature_size),
            (7, Reparam::None, [48, 96, 192, 384])
        );
        assert_eq!(ModelConfig::default().kernel(), 21);
        assert_eq!(ModelConfig::default().reparam(), Reparam::Bfr);
        for p in PRESETS {
            ModelConfig::preset(p).unwrap().validate().unwrap();
        }
        assert!(serde_json::from_str::<ModelConfig>(r#"{"kernal_size": 3}"#).is_err());
        let bad = ModelConfig {
            kernel_size: Some(20),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("odd"));
        // MONAI's single feature_size for SwinUNETR.
        let s: ModelConfig = serde_json::from_str(
            r#"{"arch": "swinunetr", "feature_size": 24, "out_channels": 14}"#,
        )
        .unwrap();
        assert_eq!(
            (
                s.feature_size,
                s.num_heads,
                s.window_size,
                s.size_multiple()
            ),
            ([24, 48, 96, 192], [3, 6, 12, 24], 7, 32)
        );
        s.validate().unwrap();
        let odd: ModelConfig =
            serde_json::from_str(r#"{"arch": "swinunetr", "feature_size": 20}"#).unwrap();
        assert!(odd.validate().unwrap_err().contains("multiple of 12"));
        let rep: ModelConfig =
            serde_json::from_str(r#"{"arch": "swinunetr", "reparam": "bfr"}"#).unwrap();
        assert!(rep.validate().is_err());
    }

    fn parse(json: &str) -> Result<ModelConfig, String> {
        serde_json::from_str::<ModelConfig>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn monai_swinunetr_argument_names() {
        let monai = r#"{"in_channels": 1, "out_channels": 14, "patch_size": 2, "depths": [2, 2, 2, 2],
            "num_heads": [3, 6, 12, 24], "window_size": 7, "qkv_bias": true, "mlp_ratio": 4.0,
            "feature_size": 24, "norm_name": "instance", "drop_rate": 0.0, "attn_drop_rate": 0.0,
            "dropout_path_rate": 0.0, "normalize": true, "spatial_dims": 3, "downsample": "mergingv2",
            "use_v2": true, "use_checkpoint": true}"#;
        let c = parse(monai).unwrap();
        assert_eq!(
            (
                c.arch,
                c.feature_size,
                c.out_channels,
                c.downsample,
                c.use_v2
            ),
            (
                Arch::Swinunetr,
                [24, 48, 96, 192],
                14,
                Merging::Mergingv2,
                true
            )
        );
        c.validate().unwrap();
        assert_eq!(
            parse(r#"{"window_size": [7, 7, 7], "feature_size": 12}"#)
                .unwrap()
                .arch,
            Arch::Swinunetr
        );
        for (json, key, supported) in [
            (r#"{"patch_size": 4}"#, "patch_size", "2"),
            (
                r#"{"arch": "swinunetr", "spatial_dims": 2}"#,
                "spatial_dims",
                "3",
            ),
            (r#"{"normalize": false}"#, "normalize", "true"),
            (r#"{"dropout_path_rate": 0.1}"#, "dropout_path_rate", "0.0"),
            (r#"{"qkv_bias": false}"#, "qkv_bias", "true"),
            (
                r#"{"norm_name": "batch", "patch_size": 2}"#,
                "norm_name",
                "instance",
            ),
            (r#"{"window_size": [7, 7, 5]}"#, "window_size", "same size"),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.contains(key) && e.contains(supported), "{json}: {e}");
        }
        assert!(parse(r#"{"img_size": [96, 96, 96]}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(parse(r#"{"arch": "repuxnet", "patch_size": 2}"#)
            .unwrap_err()
            .contains("SwinUNETR"));
    }

    #[test]
    fn authors_argument_names() {
        let authors = r#"{"in_chans": 1, "out_chans": 16, "depths": [2, 2, 2, 2], "feat_size": [48, 96, 192, 384],
            "drop_path_rate": 0, "layer_scale_init_value": 1e-6, "hidden_size": 768, "norm_name": "instance",
            "conv_block": true, "res_block": true, "spatial_dims": 3, "ks": 21, "a": 1, "deploy": true}"#;
        let c = parse(authors).unwrap();
        assert_eq!(
            (
                c.arch,
                c.in_channels,
                c.out_channels,
                c.kernel(),
                c.alpha,
                c.reparam()
            ),
            (Arch::Repuxnet, 1, 16, 21, 1.0, Reparam::None)
        );
        c.validate().unwrap();
        assert_eq!(
            parse(r#"{"ks": 21, "deploy": false}"#).unwrap().reparam(),
            Reparam::Bfr
        );
        assert_eq!(parse(r#"{"arch": "uxnet", "in_chans": 1, "out_chans": 14, "feat_size": [48, 96, 192, 384]}"#).unwrap().kernel(), 7);
        for (json, needle) in [
            (
                r#"{"in_chans": 1, "in_channels": 1}"#,
                "name the same thing",
            ),
            (r#"{"deploy": true, "reparam": "bfr"}"#, "contradict"),
            (r#"{"arch": "uxnet", "deploy": true}"#, "RepUX-Net argument"),
            (r#"{"drop_path_rate": 0.1}"#, "drop_path_rate"),
            (r#"{"layer_scale_init_value": 1.0}"#, "1e-6"),
            (r#"{"in_chans": 1, "qkv_bias": true}"#, "one network"),
            (r#"{"ks": 21, "deplyo": true}"#, "unknown field"),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn own_config_json_round_trips() {
        for p in PRESETS {
            let c = ModelConfig::preset(p).unwrap();
            let back: ModelConfig =
                serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(back, c, "{p}");
        }
    }
}
