//! The paper's loss: Dice + cross-entropy, 1:1 (MONAI `DiceCELoss(to_onehot_y=True,
//! softmax=True)`): Dice over the softmax, per sample and class, background included,
//! smooth 1e-5 in numerator and denominator, averaged over samples and classes; cross-entropy
//! averaged over voxels; optional per-class weights for the cross-entropy.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Tensor, TensorData};

pub const SMOOTH: f64 = 1e-5;

/// One-hot `[B, C, D, H, W]` of integer labels `[B × D × H × W]`.
pub fn one_hot(
    labels: &[u16],
    classes: usize,
    dims: [usize; 5],
    device: &burn::tensor::Device,
) -> Tensor<5> {
    let [b, _, d, h, w] = dims;
    let n = d * h * w;
    let mut v = vec![0f32; b * classes * n];
    for s in 0..b {
        for (i, &l) in labels[s * n..(s + 1) * n].iter().enumerate() {
            let c = (l as usize).min(classes - 1);
            v[(s * classes + c) * n + i] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(v, [b, classes, d, h, w]), device)
}

/// `(total, dice, ce)` for logits `[B, C, D, H, W]` and one-hot targets of the same shape.
pub fn dice_ce(
    logits: Tensor<5>,
    target: Tensor<5>,
    class_weights: Option<&[f32]>,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let [b, c, d, h, w] = logits.dims();
    let n = d * h * w;
    let p = softmax(logits.clone(), 1).reshape([b, c, n]);
    let t = target.reshape([b, c, n]);
    let inter = (p.clone() * t.clone()).sum_dim(2);
    let denom = p.sum_dim(2) + t.clone().sum_dim(2);
    let dice = (inter * 2.0 + SMOOTH) / (denom + SMOOTH);
    let dice_loss = (dice.neg() + 1.0).mean().reshape([1]);
    let logp = log_softmax(logits, 1).reshape([b, c, n]);
    let mut nll = logp * t;
    if let Some(wts) = class_weights {
        let wt = Tensor::<3>::from_data(TensorData::new(wts.to_vec(), [1, c, 1]), &nll.device());
        nll = nll * wt;
    }
    let ce = nll.sum_dim(1).neg().mean().reshape([1]);
    (dice_loss.clone() + ce.clone(), dice_loss, ce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_data().try_to_vec::<f32>().unwrap()[0] as f64
    }

    #[test]
    fn perfect_and_uniform_predictions() {
        let dev = repux_nn::cpu();
        let labels: Vec<u16> = vec![0, 1, 2, 1, 0, 2, 2, 1];
        let t = one_hot(&labels, 3, [1, 3, 2, 2, 2], &dev);
        // Large logits on the right class: Dice loss → 0, CE → 0.
        let (_, dice, ce) = dice_ce(t.clone() * 50.0, t.clone(), None);
        assert!(scalar(dice) < 1e-4 && scalar(ce) < 1e-4);
        // Uniform logits: CE = ln 3; Dice per class = 2·(n_c/3)/(n/3 + n_c) computed by hand.
        let (_, dice, ce) = dice_ce(t.clone() * 0.0, t, None);
        assert!((scalar(ce) - 3f64.ln()).abs() < 1e-5);
        let n = 8.0;
        let want: f64 = [2.0, 3.0, 3.0]
            .iter()
            .map(|&nc: &f64| 1.0 - (2.0 * nc / 3.0 + SMOOTH) / (n / 3.0 + nc + SMOOTH))
            .sum::<f64>()
            / 3.0;
        assert!((scalar(dice) - want).abs() < 1e-5, "{} vs {want}", 0);
    }
}
