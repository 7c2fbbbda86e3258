//! Weights in and out: the authors' PyTorch `state_dict` files (`.pth`, zip/pickle as
//! `torch.save` writes them) and `.safetensors`, with PyTorch key names mapped 1:1 onto the
//! modules; and repux's own model directory (`model.safetensors` + `config.json`).
//!
//! Key names: `repuxnet_3d.` / `uxnet_3d.` + `downsample_layers.{i}.{0,1}.*`, `stages.{s}.{b}.*`,
//! `norm{i}.*`; `encoder{1..5}.layer.conv{1,2,3}.conv.weight`, `decoder{2..5}.transp_conv.conv.
//! weight`, `decoder{2..5}.conv_block.conv{1,2,3}.conv.weight`, `decoder1.layer.conv{1,2}.conv.
//! weight`, `out.conv.conv.{weight,bias}`. SR branches (repux only): `…stages.{s}.{b}.sr.{j}.*`.
//! SwinUNETR: MONAI's names (see `swin_unetr.rs`), including the `relative_position_index`
//! buffers, which are derived: written on export, checked (when present) on import.
//!
//! ## What a file's depthwise kernels mean ([`KernelForm`])
//! One rule, for every command that takes weights:
//! - **A weight file from outside repux holds the kernels the network convolves with** — the
//!   authors' checkpoints are what their evaluation network (`deploy=True`) runs as it is, with
//!   no δ applied. Importing one into a BFR configuration stores `W = W_file / δ`, so the
//!   network's effective kernel `δ ⊙ W` equals the file's: inference gives the authors' logits,
//!   and fine-tuning with BFR starts from exactly the file's network.
//! - **repux's own model directories and checkpoints hold the raw training W** (BFR's δ is
//!   applied by the forward), so resume stays exact. Their `model.safetensors` says so in its
//!   metadata (`repux.kernels = training`); a model directory is read that way in any case.
//! - **`repux model export` writes the deploy form** ([`deploy_state_dict`]): δ applied, the
//!   BatchNorms kept (SR branches folded), in the authors' key layout, as `.pth` (what
//!   `torch.save` writes) or `.safetensors` — the authors' `deploy=True` network reproduces
//!   repux's logits with it, and importing it back gives the same network.

use crate::config::{Arch, ModelConfig};
use crate::layers::conv::{Conv, DwConv, TranspConv};
use crate::layers::linear::Linear;
use crate::layers::norm::{LayerNorm, LayerNormCf};
use crate::layers::patch_merging::PatchMerging;
use crate::layers::repux_block::RepUxBlock;
use crate::layers::swin_block::SwinBlock;
use crate::layers::swin_stage::SwinStage;
use crate::layers::unetr::{ResBlock, UpBlock};
use crate::layers::ux_block::UxBlock;
use crate::layers::window_attention::{relative_position_index, WindowAttention};
use crate::net::{Block, Net, UxNet};
use crate::swin_unetr::SwinUnetr;
use burn::module::{Param, RunningState};
use burn::nn::BatchNorm;
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A flat map of named f32 arrays (shape, values in C order).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict(pub BTreeMap<String, (Vec<usize>, Vec<f32>)>);

/// What the depthwise kernels of a weight file are (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelForm {
    /// The kernels the convolution uses (δ already in them): the authors' files, MONAI's, and
    /// everything `repux model export` writes.
    Deploy,
    /// repux's stored training W: the forward applies BFR's δ.
    Training,
}

/// The safetensors metadata key that marks repux's own training-form files.
pub const KERNEL_FORM_KEY: &str = "repux.kernels";

#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error(transparent)]
    Values(#[from] crate::ValuesError),
    #[error("{}: {msg}", path.display())]
    Read { path: PathBuf, msg: String },
    #[error(
        "weights do not fit the model:{}",
        format_lists(missing, unexpected, mismatched)
    )]
    Mismatch {
        missing: Vec<String>,
        unexpected: Vec<String>,
        mismatched: Vec<String>,
    },
}

fn format_lists(missing: &[String], unexpected: &[String], mismatched: &[String]) -> String {
    let mut s = String::new();
    for (name, list) in [
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
    ] {
        if !list.is_empty() {
            s.push_str(&format!("\n  {} {name}: {}", list.len(), list.join(", ")));
        }
    }
    s
}

fn key(p: &str, name: &str) -> String {
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}.{name}")
    }
}

fn data<const D: usize>(
    key: &str,
    t: Tensor<D>,
) -> Result<(Vec<usize>, Vec<f32>), crate::ValuesError> {
    let shape = t.dims().to_vec();
    Ok((shape, crate::values(t, key)?))
}

/// Something that walks a module's tensors under their PyTorch key names: exporting reads them,
/// importing replaces them. One walk ([`Weights::visit`]) serves both, so the key names are
/// written once.
pub trait Visitor {
    fn param<const D: usize>(&mut self, key: &str, p: &mut Param<Tensor<D>>);
    fn running(&mut self, key: &str, r: &mut RunningState<Tensor<1>>);
    /// A buffer the model derives from its config (not a parameter, not state); ignored unless
    /// the visitor reads or checks files.
    fn constant(&mut self, _key: &str, _shape: &[usize], _values: &[f32]) {}
}

/// Collects every tensor into a [`StateDict`]; the first tensor whose values cannot be read is
/// kept as the error.
#[derive(Default)]
pub struct Exporter {
    sd: StateDict,
    error: Option<crate::ValuesError>,
}

impl Exporter {
    fn insert(&mut self, key: &str, d: Result<(Vec<usize>, Vec<f32>), crate::ValuesError>) {
        match d {
            Ok(v) => {
                self.sd.0.insert(key.to_string(), v);
            }
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    pub fn finish(self) -> Result<StateDict, WeightError> {
        match self.error {
            Some(e) => Err(e.into()),
            None => Ok(self.sd),
        }
    }
}

impl Visitor for Exporter {
    fn param<const D: usize>(&mut self, key: &str, p: &mut Param<Tensor<D>>) {
        self.insert(key, data(key, p.val()));
    }
    fn running(&mut self, key: &str, r: &mut RunningState<Tensor<1>>) {
        self.insert(key, data(key, r.value()));
    }
    fn constant(&mut self, key: &str, shape: &[usize], values: &[f32]) {
        self.sd
            .0
            .insert(key.to_string(), (shape.to_vec(), values.to_vec()));
    }
}

/// Takes tensors out of a state dict by key, checking shapes, and remembers what was missing,
/// mismatched or never asked for.
pub struct Importer {
    sd: StateDict,
    used: BTreeSet<String>,
    missing: Vec<String>,
    mismatched: Vec<String>,
    device: Device,
}

impl Importer {
    pub fn new(sd: StateDict, device: &Device) -> Self {
        Importer {
            sd,
            used: BTreeSet::new(),
            missing: Vec::new(),
            mismatched: Vec::new(),
            device: device.clone(),
        }
    }

    fn take<const D: usize>(&mut self, k: &str, want: [usize; D]) -> Option<Tensor<D>> {
        let Some((shape, values)) = self.sd.0.get(k) else {
            self.missing.push(k.to_string());
            return None;
        };
        self.used.insert(k.to_string());
        if shape.as_slice() != want.as_slice() {
            self.mismatched
                .push(format!("{k} (file {shape:?}, model {want:?})"));
            return None;
        }
        Some(Tensor::from_data(
            TensorData::new(values.clone(), want),
            &self.device,
        ))
    }

    /// Ok when every model tensor was found with its shape and every file key was used
    /// (`num_batches_tracked` counters are ignored).
    pub fn finish(self) -> Result<(), WeightError> {
        let unexpected: Vec<String> = self
            .sd
            .0
            .keys()
            .filter(|k| !self.used.contains(*k) && !k.ends_with("num_batches_tracked"))
            .cloned()
            .collect();
        if self.missing.is_empty() && self.mismatched.is_empty() && unexpected.is_empty() {
            Ok(())
        } else {
            Err(WeightError::Mismatch {
                missing: self.missing,
                unexpected,
                mismatched: self.mismatched,
            })
        }
    }
}

impl Visitor for Importer {
    fn param<const D: usize>(&mut self, key: &str, p: &mut Param<Tensor<D>>) {
        if let Some(t) = self.take(key, p.dims()) {
            *p = Param::from_tensor(t);
        }
    }
    fn running(&mut self, key: &str, r: &mut RunningState<Tensor<1>>) {
        if let Some(t) = self.take(key, r.value().dims()) {
            *r = RunningState::new(t);
        }
    }
    /// Optional in the file; where present it must equal the derived values.
    fn constant(&mut self, key: &str, shape: &[usize], values: &[f32]) {
        if let Some((s, v)) = self.sd.0.get(key) {
            self.used.insert(key.to_string());
            if s.as_slice() != shape || v.as_slice() != values {
                self.mismatched.push(format!(
                    "{key} (file {s:?} differs from the values this config derives, {shape:?})"
                ));
            }
        }
    }
}

/// The walk over a module's tensors under PyTorch key names (prefix `p`).
pub trait Weights {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V);
}

/// Every tensor of `m` by PyTorch key name (for a network: the training form, raw W).
pub fn state_dict<M: Weights + Clone>(m: &M) -> Result<StateDict, WeightError> {
    let mut e = Exporter::default();
    m.clone().visit("", &mut e);
    e.finish()
}

/// The state dict in the reference implementation's deploy form ([`Net::deploy_form`]): what
/// `repux model export` writes and what the authors' `deploy=True` network loads.
pub fn deploy_state_dict(net: &Net) -> Result<StateDict, WeightError> {
    state_dict(&net.deploy_form())
}

impl Weights for LayerNormCf {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        v.param(&key(p, "weight"), &mut self.weight);
        v.param(&key(p, "bias"), &mut self.bias);
    }
}

impl Weights for DwConv {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        v.param(&key(p, "weight"), &mut self.weight);
        v.param(&key(p, "bias"), &mut self.bias);
    }
}

impl Weights for Conv {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        v.param(&key(p, "weight"), &mut self.weight);
        if let Some(b) = self.bias.as_mut() {
            v.param(&key(p, "bias"), b);
        }
    }
}

impl Weights for TranspConv {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        v.param(&key(p, "weight"), &mut self.weight);
    }
}

impl Weights for BatchNorm {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        v.param(&key(p, "weight"), &mut self.gamma);
        v.param(&key(p, "bias"), &mut self.beta);
        v.running(&key(p, "running_mean"), &mut self.running_mean);
        v.running(&key(p, "running_var"), &mut self.running_var);
    }
}

impl Weights for RepUxBlock {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        self.dwconv.visit(&key(p, "dwconv"), v);
        if let Some(n) = self.norm.as_mut() {
            n.visit(&key(p, "norm"), v);
        }
        for (j, br) in self.sr.iter_mut().enumerate() {
            br.dwconv.visit(&key(p, &format!("sr.{j}.dwconv")), v);
            br.norm.visit(&key(p, &format!("sr.{j}.norm")), v);
        }
    }
}

impl Weights for UxBlock {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        self.dwconv.visit(&key(p, "dwconv"), v);
        self.norm.visit(&key(p, "norm"), v);
        self.pwconv1.visit(&key(p, "pwconv1"), v);
        self.pwconv2.visit(&key(p, "pwconv2"), v);
        v.param(&key(p, "gamma"), &mut self.gamma);
    }
}

/// MONAI's ResBlock: `conv{1,2,3}.conv.weight`.
impl Weights for ResBlock {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        self.conv1.visit(&key(p, "conv1.conv"), v);
        self.conv2.visit(&key(p, "conv2.conv"), v);
        if let Some(c) = self.conv3.as_mut() {
            c.visit(&key(p, "conv3.conv"), v);
        }
    }
}

impl Weights for UpBlock {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        self.transp_conv.visit(&key(p, "transp_conv.conv"), v);
        self.conv_block.visit(&key(p, "conv_block"), v);
    }
}

impl Weights for Linear {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        v.param(&key(p, "weight"), &mut self.weight);
        if let Some(b) = self.bias.as_mut() {
            v.param(&key(p, "bias"), b);
        }
    }
}

impl Weights for LayerNorm {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        v.param(&key(p, "weight"), &mut self.weight);
        v.param(&key(p, "bias"), &mut self.bias);
    }
}

impl Weights for WindowAttention {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        v.param(
            &key(p, "relative_position_bias_table"),
            &mut self.relative_position_bias_table,
        );
        let n = self.window.pow(3);
        let idx: Vec<f32> = relative_position_index(self.window)
            .into_iter()
            .map(|i| i as f32)
            .collect();
        v.constant(&key(p, "relative_position_index"), &[n, n], &idx);
        self.qkv.visit(&key(p, "qkv"), v);
        self.proj.visit(&key(p, "proj"), v);
    }
}

impl Weights for SwinBlock {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        self.norm1.visit(&key(p, "norm1"), v);
        self.attn.visit(&key(p, "attn"), v);
        self.norm2.visit(&key(p, "norm2"), v);
        self.mlp.linear1.visit(&key(p, "mlp.linear1"), v);
        self.mlp.linear2.visit(&key(p, "mlp.linear2"), v);
    }
}

impl Weights for PatchMerging {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        self.reduction.visit(&key(p, "reduction"), v);
        self.norm.visit(&key(p, "norm"), v);
    }
}

impl Weights for SwinStage {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        for (b, blk) in self.blocks.iter_mut().enumerate() {
            blk.visit(&key(p, &format!("blocks.{b}")), v);
        }
        self.downsample.visit(&key(p, "downsample"), v);
    }
}

/// MONAI's `SwinUNETR.state_dict()` names.
impl Weights for SwinUnetr {
    fn visit<V: Visitor>(&mut self, _p: &str, v: &mut V) {
        self.swin_vit
            .patch_embed
            .visit("swinViT.patch_embed.proj", v);
        for (i, l) in self.swin_vit.layers.iter_mut().enumerate() {
            l.visit(&format!("swinViT.layers{}.0", i + 1), v);
        }
        for (i, c) in self.swin_vit.layers_c.iter_mut().enumerate() {
            c.visit(&format!("swinViT.layers{}c.0.layer", i + 1), v);
        }
        for (name, r) in [
            ("encoder1", &mut self.encoder1),
            ("encoder2", &mut self.encoder2),
            ("encoder3", &mut self.encoder3),
            ("encoder4", &mut self.encoder4),
            ("encoder10", &mut self.encoder10),
        ] {
            r.visit(&format!("{name}.layer"), v);
        }
        for (name, u) in [
            ("decoder5", &mut self.decoder5),
            ("decoder4", &mut self.decoder4),
            ("decoder3", &mut self.decoder3),
            ("decoder2", &mut self.decoder2),
            ("decoder1", &mut self.decoder1),
        ] {
            u.visit(name, v);
        }
        self.out.visit("out.conv.conv", v);
    }
}

impl Weights for Net {
    fn visit<V: Visitor>(&mut self, p: &str, v: &mut V) {
        match self {
            Net::Ux(n) => n.visit(p, v),
            Net::Swin(n) => n.visit(p, v),
        }
    }
}

impl Weights for UxNet {
    fn visit<V: Visitor>(&mut self, _p: &str, v: &mut V) {
        let e = match self.config.arch {
            Arch::Repuxnet => "repuxnet_3d",
            Arch::Uxnet | Arch::Swinunetr => "uxnet_3d",
        };
        for (i, d) in self.encoder.downsample_layers.iter_mut().enumerate() {
            let (conv, norm) = if d.norm_first { (1, 0) } else { (0, 1) };
            d.conv
                .visit(&format!("{e}.downsample_layers.{i}.{conv}"), v);
            d.norm
                .visit(&format!("{e}.downsample_layers.{i}.{norm}"), v);
        }
        for (s, stage) in self.encoder.stages.iter_mut().enumerate() {
            for (b, block) in stage.iter_mut().enumerate() {
                let p = format!("{e}.stages.{s}.{b}");
                match block {
                    Block::Rep(r) => r.visit(&p, v),
                    Block::Ux(u) => u.visit(&p, v),
                }
            }
        }
        for (i, n) in self.encoder.norms.iter_mut().enumerate() {
            n.visit(&format!("{e}.norm{i}"), v);
        }
        for (name, r) in [
            ("encoder1", &mut self.encoder1),
            ("encoder2", &mut self.encoder2),
            ("encoder3", &mut self.encoder3),
            ("encoder4", &mut self.encoder4),
            ("encoder5", &mut self.encoder5),
            ("decoder1", &mut self.decoder1),
        ] {
            r.visit(&format!("{name}.layer"), v);
        }
        for (name, u) in [
            ("decoder5", &mut self.decoder5),
            ("decoder4", &mut self.decoder4),
            ("decoder3", &mut self.decoder3),
            ("decoder2", &mut self.decoder2),
        ] {
            u.visit(name, v);
        }
        self.out.visit("out.conv.conv", v);
    }
}

fn read_err(path: &Path, msg: impl std::fmt::Display) -> WeightError {
    WeightError::Read {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// Little-endian/native bytes of `dtype` → f32.
fn bytes_to_f32(path: &Path, name: &str, dtype: &str, b: &[u8]) -> Result<Vec<f32>, WeightError> {
    Ok(match dtype {
        "F32" => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        "F64" => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        "F16" => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "BF16" => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "I64" => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        other => {
            return Err(read_err(
                path,
                format!("tensor {name}: dtype {other} is not supported"),
            ))
        }
    })
}

/// Strips wrappers that training scripts add around a state dict.
fn normalise_key(k: &str) -> String {
    let mut k = k;
    for p in ["state_dict.", "model.", "module."] {
        if let Some(rest) = k.strip_prefix(p) {
            k = rest;
        }
    }
    k.to_string()
}

/// Reads `.pth`/`.pt` (torch.save zip or legacy pickle) or `.safetensors` into a [`StateDict`].
pub fn read_state_dict(path: &Path) -> Result<StateDict, WeightError> {
    Ok(read_weights(path)?.0)
}

/// Reads a weight file and says what its depthwise kernels are: [`KernelForm::Training`] only
/// for a safetensors file whose metadata marks it as repux's training state.
pub fn read_weights(path: &Path) -> Result<(StateDict, KernelForm), WeightError> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let mut sd = StateDict::default();
    let mut form = KernelForm::Deploy;
    if name.ends_with(".safetensors") {
        let bytes = std::fs::read(path).map_err(|e| read_err(path, e))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| read_err(path, format!("not a valid safetensors file: {e}")))?;
        if header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(KERNEL_FORM_KEY))
            .is_some_and(|v| v == "training")
        {
            form = KernelForm::Training;
        }
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| read_err(path, format!("not a valid safetensors file: {e}")))?;
        for (k, view) in st.tensors() {
            let v = bytes_to_f32(path, &k, &format!("{:?}", view.dtype()), view.data())?;
            sd.0.insert(normalise_key(&k), (view.shape().to_vec(), v));
        }
    } else if name.ends_with(".pth")
        || name.ends_with(".pt")
        || name.ends_with(".ckpt")
        || name.ends_with(".bin")
    {
        let reader = pytorch_reader::PytorchReader::new(path)
            .map_err(|e| read_err(path, format!("not a readable PyTorch checkpoint: {e}")))?;
        for (k, t) in reader.into_tensors() {
            let dtype = format!("{:?}", t.dtype()).to_ascii_uppercase();
            let shape = t.shape().to_vec();
            let bytes = t.read().map_err(|e| read_err(path, e))?;
            let v = bytes_to_f32(path, &k, &dtype, &bytes)?;
            sd.0.insert(normalise_key(&k), (shape, v));
        }
    } else {
        return Err(read_err(
            path,
            "unknown weight format (expected .pth, .pt, .safetensors, or a model directory)",
        ));
    }
    if sd.0.is_empty() {
        return Err(read_err(path, "holds no tensors"));
    }
    Ok((sd, form))
}

/// Writes a state dict as `.safetensors` (atomically).
pub fn write_safetensors(
    path: &Path,
    sd: &StateDict,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), WeightError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> =
        sd.0.iter()
            .map(|(k, (s, v))| {
                (
                    k.clone(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    s.clone(),
                )
            })
            .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (k.clone(), v))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(path, e))?;
    let out = safetensors::serialize(views, metadata).map_err(|e| read_err(path, e))?;
    repux_volume::fs::write_bytes_atomic(path, &out).map_err(|e| read_err(path, e))
}

/// Loads weights into `net` from a file (its [`KernelForm`] as the file says); every mismatch is
/// reported at once.
pub fn load_into(net: &mut Net, path: &Path, device: &Device) -> Result<(), WeightError> {
    let (sd, form) = read_weights(path)?;
    import_state_dict(net, sd, form, device).map_err(|e| match e {
        WeightError::Mismatch { .. } => read_err(path, e),
        other => other,
    })
}

/// Replaces every tensor of `net` by the state dict's; a deploy-form file's kernels become the
/// stored W that gives the same effective kernel ([`RepUxBlock::kernel_from_deploy`]).
pub fn import_state_dict(
    net: &mut Net,
    sd: StateDict,
    form: KernelForm,
    device: &Device,
) -> Result<(), WeightError> {
    let mut im = Importer::new(sd, device);
    net.visit("", &mut im);
    im.finish()?;
    if form == KernelForm::Deploy {
        net.for_each_rep_block(|b| b.kernel_from_deploy());
    }
    Ok(())
}

/// Writes the deploy-form state dict for PyTorch users: `.pth` (as `torch.save` writes a
/// state dict) or `.safetensors`, chosen by `format`.
pub fn export(net: &Net, path: &Path, format: ExportFormat) -> Result<(), WeightError> {
    let sd = deploy_state_dict(net)?;
    match format {
        ExportFormat::Pth => crate::pth::write_pth(path, &sd).map_err(|e| read_err(path, e)),
        ExportFormat::Safetensors => {
            let meta = [("format", "pt"), (KERNEL_FORM_KEY, "deploy")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            write_safetensors(path, &sd, Some(meta))
        }
    }
}

/// The file formats of [`export`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Pth,
    Safetensors,
}

/// repux's model directory: `model.safetensors` (training form, marked so) + `config.json`.
pub fn save_model_dir(net: &Net, dir: &Path) -> Result<(), WeightError> {
    std::fs::create_dir_all(dir).map_err(|e| read_err(dir, e))?;
    let meta = [(KERNEL_FORM_KEY.to_string(), "training".to_string())]
        .into_iter()
        .collect();
    write_safetensors(
        &dir.join("model.safetensors"),
        &state_dict(net)?,
        Some(meta),
    )?;
    let cp = dir.join("config.json");
    repux_volume::fs::write_json(&cp, net.config()).map_err(|e| read_err(&cp, e))
}

/// Builds a network from a model directory.
pub fn load_model_dir(dir: &Path, device: &Device) -> Result<Net, WeightError> {
    let cp = dir.join("config.json");
    let text = std::fs::read_to_string(&cp).map_err(|e| read_err(&cp, e))?;
    let cfg: ModelConfig = serde_json::from_str(&text)
        .map_err(|e| read_err(&cp, format!("invalid model config: {e}")))?;
    cfg.validate().map_err(|e| read_err(&cp, e))?;
    let mut net = Net::new(&cfg, device);
    // A model directory holds repux's training W, whatever its metadata says (directories
    // written before the metadata existed have none).
    let file = dir.join("model.safetensors");
    let (sd, _) = read_weights(&file)?;
    import_state_dict(&mut net, sd, KernelForm::Training, device).map_err(|e| match e {
        WeightError::Mismatch { .. } => read_err(&file, e),
        other => other,
    })?;
    Ok(net)
}
