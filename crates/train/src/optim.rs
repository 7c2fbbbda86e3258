//! AdamW exactly as PyTorch's `torch.optim.AdamW` (the paper's optimizer), with its state keyed
//! by the parameters' PyTorch names so a checkpoint restores it into any freshly built network
//! (burn's optimizers key state by `ParamId`, which a rebuilt network does not keep).
//!
//! Per parameter, step t (from 1): `p ← p·(1 − lr·wd)`; `m ← β₁m + (1−β₁)g`;
//! `v ← β₂v + (1−β₂)g²`; `p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`.
//! Saved as `optimizer.safetensors` with keys `exp_avg.<name>` and `exp_avg_sq.<name>`
//! (PyTorch's state names) and the step count in the metadata.

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use repux_nn::collective::Collective;
use repux_nn::weights::Visitor;
use repux_nn::{Net, StateDict, WeightError, Weights};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Steps taken.
    pub step: u64,
    /// `(exp_avg, exp_avg_sq)` per parameter name.
    pub state: BTreeMap<String, (Vec<f32>, Vec<f32>)>,
}

impl AdamW {
    /// PyTorch's defaults (β 0.9, 0.999; ε 1e-8) with the given weight decay.
    pub fn new(weight_decay: f64) -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: weight_decay as f32,
            step: 0,
            state: BTreeMap::new(),
        }
    }

    /// One step over every parameter of `net` that has a gradient in `grads`. A moment whose
    /// size differs from its parameter's (a checkpoint of another network) is an error, never a
    /// silent reset.
    pub fn step(&mut self, net: &mut Net, grads: GradientsParams, lr: f64) -> Result<(), String> {
        self.step_synced(net, grads, lr, None)
    }

    /// [`AdamW::step`] with the gradients first averaged over the ranks of `group`: flattened
    /// in the network's parameter order into one buffer and all-reduced in buckets of
    /// [`BUCKET`] values (a few calls per step, not one per tensor).
    pub fn step_synced(
        &mut self,
        net: &mut Net,
        mut grads: GradientsParams,
        lr: f64,
        group: Option<&dyn Collective>,
    ) -> Result<(), String> {
        let reduced = match group.filter(|g| g.size() > 1) {
            Some(g) => {
                let mut c = CollectGrads {
                    grads: &mut grads,
                    out: Vec::new(),
                    error: None,
                };
                net.visit("", &mut c);
                if let Some(e) = c.error {
                    return Err(e);
                }
                let mut flat: Vec<f32> =
                    c.out.iter().flat_map(|(_, g)| g.iter().copied()).collect();
                all_reduce_buckets(g, &mut flat);
                let scale = 1.0 / g.size() as f32;
                let mut at = 0;
                let mut map = BTreeMap::new();
                for (key, g) in c.out {
                    let n = g.len();
                    map.insert(key, flat[at..at + n].iter().map(|v| v * scale).collect());
                    at += n;
                }
                Some(map)
            }
            None => None,
        };
        self.step += 1;
        let mut v = StepVisitor {
            opt: self,
            grads: &mut grads,
            reduced,
            lr: lr as f32,
            error: None,
        };
        net.visit("", &mut v);
        match v.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every moment must belong to a parameter of `net` and have its size (checked on resume).
    pub fn check(&self, net: &Net) -> Result<(), String> {
        let sd = repux_nn::state_dict(net).map_err(|e| e.to_string())?;
        for (k, (m, v)) in &self.state {
            let Some((shape, _)) = sd.0.get(k) else {
                return Err(format!(
                    "AdamW state for {k}, which the network does not have"
                ));
            };
            let n: usize = shape.iter().product();
            if m.len() != n || v.len() != n {
                return Err(format!(
                    "AdamW state of {k} holds {} values, the parameter {n}",
                    m.len()
                ));
            }
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<(), WeightError> {
        let mut sd = StateDict::default();
        for (k, (m, v)) in &self.state {
            sd.0.insert(format!("exp_avg.{k}"), (vec![m.len()], m.clone()));
            sd.0.insert(format!("exp_avg_sq.{k}"), (vec![v.len()], v.clone()));
        }
        let meta = [
            ("step", self.step.to_string()),
            ("beta1", self.beta1.to_string()),
            ("beta2", self.beta2.to_string()),
            ("eps", self.eps.to_string()),
            ("weight_decay", self.weight_decay.to_string()),
        ];
        repux_nn::weights::write_safetensors(
            path,
            &sd,
            Some(meta.into_iter().map(|(a, b)| (a.to_string(), b)).collect()),
        )
    }

    pub fn load(path: &Path) -> Result<AdamW, WeightError> {
        let bad = |msg: String| WeightError::Read {
            path: path.to_path_buf(),
            msg,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a valid safetensors file (truncated?): {e}")))?;
        let Some(meta) = header.metadata().clone() else {
            return Err(bad(
                "no metadata (beta1, beta2, eps, weight_decay, step): not an optimizer state written by repux".into(),
            ));
        };
        let num = |k: &str| {
            meta.get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| bad(format!("optimizer metadata lacks {k}")))
        };
        let mut opt = AdamW {
            beta1: num("beta1")? as f32,
            beta2: num("beta2")? as f32,
            eps: num("eps")? as f32,
            weight_decay: num("weight_decay")? as f32,
            step: num("step")? as u64,
            state: BTreeMap::new(),
        };
        let sd = repux_nn::read_state_dict(path)?;
        let mut avg = BTreeMap::new();
        let mut sq = BTreeMap::new();
        for (k, (_, v)) in sd.0 {
            if let Some(name) = k.strip_prefix("exp_avg_sq.") {
                sq.insert(name.to_string(), v);
            } else if let Some(name) = k.strip_prefix("exp_avg.") {
                avg.insert(name.to_string(), v);
            } else {
                return Err(bad(format!("unexpected key {k}")));
            }
        }
        for (k, m) in avg {
            let v = sq
                .remove(&k)
                .ok_or_else(|| bad(format!("exp_avg.{k} without exp_avg_sq.{k}")))?;
            opt.state.insert(k, (m, v));
        }
        if let Some(k) = sq.keys().next() {
            return Err(bad(format!("exp_avg_sq.{k} without exp_avg.{k}")));
        }
        Ok(opt)
    }
}

/// Values per all-reduce call when gradients are averaged (16 MiB of f32).
pub const BUCKET: usize = 1 << 22;

/// Sums `flat` over the ranks of `g` in buckets of [`BUCKET`] values: the gradient all-reduce
/// of one step (also what `repux bench all-reduce` times).
pub fn all_reduce_buckets(g: &dyn Collective, flat: &mut [f32]) {
    for bucket in flat.chunks_mut(BUCKET) {
        g.all_reduce_sum(bucket);
    }
}

/// Every parameter's gradient as values, in the network's order, keyed by name.
struct CollectGrads<'a> {
    grads: &'a mut GradientsParams,
    out: Vec<(String, Vec<f32>)>,
    error: Option<String>,
}

impl Visitor for CollectGrads<'_> {
    fn param<const D: usize>(&mut self, key: &str, p: &mut Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(p.id) {
            match repux_nn::values(g, &format!("gradient of {key}")) {
                Ok(v) => self.out.push((key.to_string(), v)),
                Err(e) => self.error = Some(e.to_string()),
            }
        }
    }
    fn running(&mut self, _key: &str, _r: &mut burn::module::RunningState<Tensor<1>>) {}
}

/// Rank 0's parameters and running statistics on every rank of `group`.
pub fn broadcast_weights(net: &mut Net, group: &dyn Collective) -> Result<(), String> {
    struct Bcast<'a> {
        group: &'a dyn Collective,
        error: Option<String>,
    }
    impl Visitor for Bcast<'_> {
        fn param<const D: usize>(&mut self, key: &str, p: &mut Param<Tensor<D>>) {
            let value = p.val();
            let (dims, device) = (value.dims(), value.device());
            match repux_nn::values(value, key) {
                Ok(mut v) => {
                    self.group.broadcast(&mut v);
                    let t =
                        Tensor::<D>::from_data(TensorData::new(v, dims), &device).require_grad();
                    *p = Param::initialized(p.id, t);
                }
                Err(e) => self.error = Some(e.to_string()),
            }
        }
        fn running(&mut self, key: &str, r: &mut burn::module::RunningState<Tensor<1>>) {
            let value = r.value();
            let (dims, device) = (value.dims(), value.device());
            match repux_nn::values(value, key) {
                Ok(mut v) => {
                    self.group.broadcast(&mut v);
                    r.update(Tensor::<1>::from_data(TensorData::new(v, dims), &device));
                }
                Err(e) => self.error = Some(e.to_string()),
            }
        }
    }
    let mut b = Bcast { group, error: None };
    net.visit("", &mut b);
    b.error.map_or(Ok(()), Err)
}

struct StepVisitor<'a> {
    opt: &'a mut AdamW,
    grads: &'a mut GradientsParams,
    /// Averaged gradients by name (data-parallel), used instead of `grads`.
    reduced: Option<BTreeMap<String, Vec<f32>>>,
    lr: f32,
    /// The first failure; later parameters are left untouched.
    error: Option<String>,
}

impl Visitor for StepVisitor<'_> {
    fn param<const D: usize>(&mut self, key: &str, p: &mut Param<Tensor<D>>) {
        if self.error.is_some() {
            return;
        }
        let g = match self.reduced.as_mut() {
            Some(map) => match map.remove(key) {
                Some(g) => Ok(g),
                None => return,
            },
            None => match self.grads.remove::<D>(p.id) {
                Some(g) => repux_nn::values(g, &format!("gradient of {key}")),
                None => return,
            },
        };
        let value = p.val();
        let (dims, device) = (value.dims(), value.device());
        let read = repux_nn::values(value, key).and_then(|w| Ok((w, g?)));
        let (mut w, g) = match read {
            Ok(v) => v,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        let o = &mut *self.opt;
        let (m, v) = o
            .state
            .entry(key.to_string())
            .or_insert_with(|| (vec![0.0; w.len()], vec![0.0; w.len()]));
        if m.len() != w.len() || v.len() != w.len() || g.len() != w.len() {
            self.error = Some(format!("AdamW state of {key} holds {} values, the parameter {} (gradient {}): the optimizer state belongs to another network", m.len(), w.len(), g.len()));
            return;
        }
        let t = o.step as i32;
        let bc1 = 1.0 - o.beta1.powi(t);
        let bc2_sqrt = (1.0 - o.beta2.powi(t)).sqrt();
        let step_size = self.lr / bc1;
        let decay = 1.0 - self.lr * o.weight_decay;
        for i in 0..w.len() {
            w[i] *= decay;
            m[i] = o.beta1 * m[i] + (1.0 - o.beta1) * g[i];
            v[i] = o.beta2 * v[i] + (1.0 - o.beta2) * g[i] * g[i];
            w[i] -= step_size * m[i] / (v[i].sqrt() / bc2_sqrt + o.eps);
        }
        let t = Tensor::<D>::from_data(TensorData::new(w, dims), &device).require_grad();
        *p = Param::initialized(p.id, t);
    }
    fn running(&mut self, _key: &str, _r: &mut burn::module::RunningState<Tensor<1>>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parameter, two steps, against values worked out by hand from PyTorch's formulas.
    #[test]
    fn matches_pytorch_adamw_by_hand() {
        let mut o = AdamW::new(0.01);
        let (lr, g, mut w) = (0.1f32, 0.5f32, 1.0f32);
        let (mut m, mut v) = (0f32, 0f32);
        for t in 1..=2 {
            w *= 1.0 - lr * 0.01;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            w -= lr / (1.0 - 0.9f32.powi(t)) * m
                / (v.sqrt() / (1.0 - 0.999f32.powi(t)).sqrt() + 1e-8);
        }
        let dev = repux_nn::cpu().autodiff();
        let mut p = Param::from_tensor(
            Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &dev).require_grad(),
        );
        for _ in 0..2 {
            let loss = (p.val() * g).sum();
            let mut grads = GradientsParams::new();
            let gr = p.val().grad(&loss.backward()).unwrap();
            grads.register(p.id, gr);
            o.step += 1;
            let mut vis = StepVisitor {
                opt: &mut o,
                grads: &mut grads,
                reduced: None,
                lr,
                error: None,
            };
            vis.param("w", &mut p);
        }
        let got = p.val().into_data().try_to_vec::<f32>().unwrap()[0];
        // Tolerance: f32 rounding of a dozen operations on values of order 1, in another order.
        assert!((got - w).abs() < 1e-5, "{got} vs {w}");
        // Roughly lr·2 below 1 after two steps of a constant gradient (Adam's normalised step).
        assert!((got - (1.0 - 2.0 * lr)).abs() < 0.01);
        // A state of another size is an error, and the parameter is left as it was.
        o.state.insert("w".into(), (vec![0.0; 3], vec![0.0; 3]));
        let loss = (p.val() * g).sum();
        let mut grads = GradientsParams::new();
        grads.register(p.id, p.val().grad(&loss.backward()).unwrap());
        let mut vis = StepVisitor {
            opt: &mut o,
            grads: &mut grads,
            reduced: None,
            lr,
            error: None,
        };
        vis.param("w", &mut p);
        assert!(vis
            .error
            .unwrap()
            .contains("holds 3 values, the parameter 1"));
        assert_eq!(p.val().into_data().try_to_vec::<f32>().unwrap()[0], got);
    }

    /// The optimizer's state must fit the network it resumes with, checked before any step.
    #[test]
    fn check_rejects_state_of_another_network() {
        let net = Net::new(
            &repux_nn::ModelConfig {
                out_channels: 2,
                ..repux_nn::ModelConfig::preset("micro").unwrap()
            },
            &repux_nn::cpu(),
        );
        let mut o = AdamW::new(0.0);
        o.check(&net).unwrap();
        o.state
            .insert("out.conv.conv.weight".into(), (vec![0.0; 7], vec![0.0; 7]));
        assert!(o.check(&net).unwrap_err().contains("out.conv.conv.weight"));
        let mut o = AdamW::new(0.0);
        o.state
            .insert("no.such.param".into(), (vec![0.0], vec![0.0]));
        assert!(o.check(&net).unwrap_err().contains("no.such.param"));
    }

    /// A safetensors file without the optimizer's metadata (a weights file passed by mistake)
    /// is refused by name, not read with made-up hyper-parameters.
    #[test]
    fn load_refuses_a_file_without_optimizer_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.safetensors");
        let mut sd = repux_nn::weights::StateDict(BTreeMap::new());
        sd.0.insert("exp_avg.w".into(), (vec![2], vec![0.0, 1.0]));
        repux_nn::weights::write_safetensors(&path, &sd, None).unwrap();
        let e = AdamW::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("weights.safetensors") && e.contains("no metadata"),
            "{e}"
        );
    }
}
