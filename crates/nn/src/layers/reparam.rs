//! Re-parameterization maths on plain arrays: the BFR prior δ, BatchNorm folding and the SR
//! merge. Deploy-time merges run here in f64 and build fresh parameters.

/// δ[i,j,k] = α / (d + α), d = Euclidean distance of (i, j, k) from the kernel centre in index
/// units; shape K³, C order. Values at K = 21, α = 1: centre 1, face neighbour 0.5, axis end 1/11,
/// corner 1/(1 + 10√3).
pub fn bfr_delta(k: usize, alpha: f64) -> Vec<f64> {
    let c = (k as f64 - 1.0) / 2.0;
    let mut out = Vec::with_capacity(k * k * k);
    for i in 0..k {
        for j in 0..k {
            for l in 0..k {
                let d = ((i as f64 - c).powi(2) + (j as f64 - c).powi(2) + (l as f64 - c).powi(2))
                    .sqrt();
                out.push(alpha / (d + alpha));
            }
        }
    }
    out
}

/// BatchNorm parameters and running statistics of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct BnStats {
    pub gamma: Vec<f64>,
    pub beta: Vec<f64>,
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    pub eps: f64,
}

/// Folds eval-mode BatchNorm into the depthwise conv before it:
/// `BN(conv(x; W, b)) = conv(x; W·s, (b − μ)·s + β)`, `s = γ / √(σ² + ε)`, per channel.
/// `weight` is `[C, K³]` (C order), `bias` `[C]`.
pub fn fold_bn(weight: &mut [f64], bias: &mut [f64], bn: &BnStats) {
    let c = bias.len();
    let kk = weight.len() / c;
    for ch in 0..c {
        let s = bn.gamma[ch] / (bn.var[ch] + bn.eps).sqrt();
        weight[ch * kk..(ch + 1) * kk]
            .iter_mut()
            .for_each(|w| *w *= s);
        bias[ch] = (bias[ch] - bn.mean[ch]) * s + bn.beta[ch];
    }
}

/// Zero-pads `[C, k³]` kernels to `[C, K³]`, centred (k, K odd).
pub fn pad_kernel(w: &[f64], c: usize, k: usize, big: usize) -> Vec<f64> {
    let off = (big - k) / 2;
    let mut out = vec![0.0; c * big * big * big];
    for ch in 0..c {
        for i in 0..k {
            for j in 0..k {
                for l in 0..k {
                    out[ch * big.pow(3) + ((i + off) * big + j + off) * big + l + off] =
                        w[ch * k.pow(3) + (i * k + j) * k + l];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_values_at_k21() {
        let d = bfr_delta(21, 1.0);
        let at = |i: usize, j: usize, l: usize| d[(i * 21 + j) * 21 + l];
        assert_eq!(at(10, 10, 10), 1.0);
        assert_eq!(at(10, 10, 11), 0.5);
        assert!((at(10, 10, 20) - 1.0 / 11.0).abs() < 1e-15);
        assert!((at(0, 0, 0) - 0.0546).abs() < 1e-4);
        assert!((at(0, 0, 0) - 1.0 / (1.0 + 10.0 * 3f64.sqrt())).abs() < 1e-15);
    }

    #[test]
    fn fold_matches_batchnorm_on_a_point() {
        // A 1-voxel kernel on input 2: conv = 2w + b, BN((conv)) by hand.
        let bn = BnStats {
            gamma: vec![1.5],
            beta: vec![0.25],
            mean: vec![0.5],
            var: vec![4.0],
            eps: 0.0,
        };
        let (mut w, mut b) = (vec![3.0], vec![1.0]);
        let conv = 2.0 * 3.0 + 1.0;
        let want = 1.5 * (conv - 0.5) / 2.0 + 0.25;
        fold_bn(&mut w, &mut b, &bn);
        assert!((2.0 * w[0] + b[0] - want).abs() < 1e-12);
        let p = pad_kernel(&[1.0; 27], 1, 3, 5);
        assert_eq!(p.iter().sum::<f64>(), 27.0);
        assert_eq!(p[0], 0.0);
        assert_eq!(p[25 + 5 + 1], 1.0);
    }
}
