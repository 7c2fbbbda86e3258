//! The accuracy contract of `--precision bf16` on the parity fixtures: with bf16 GEMM operands
//! (fp32 sums; norms, depthwise convs, softmax in fp32) each network's logits lose no more
//! than PyTorch's bf16 autocast loses on the same weights and input (bf16_autocast.json,
//! written by tools/torch_bf16_fixtures.py): relative L2 to the float64 logits at most 5 %
//! above PyTorch's (and ≤ 0.1), arg-max agreement at least PyTorch's less 0.1 %. The fixtures have
//! random weights and many nearly tied logits, so a bare "1e-2 and 99.9 %" is out of reach of
//! PyTorch itself there (9.2e-2 on repux_k21, 99.45 % on repux_k7_plain); the trained-network
//! contract is the demo's Dice (crates/cli/tests). It runs at every bf16 level this CPU has
//! (`fp32` always). Its own test binary: the precision is process-wide.

use burn::tensor::{Tensor, TensorData};
use repux_kernels::bf16::{self as bf16_levels, set_precision, Precision};
use repux_nn::{cpu, load_into, ModelConfig, Net};
mod common;

use common::{fx, npy, rel_l2};

/// The share of voxels whose arg-max over classes (axis 1 of N × C × P) agrees.
fn argmax_agreement(a: &[f32], b: &[f32], n: usize, classes: usize) -> f64 {
    let per = a.len() / n / classes;
    let argmax = |v: &[f32], i: usize, p: usize| {
        (0..classes)
            .max_by(|&x, &y| {
                v[(i * classes + x) * per + p].total_cmp(&v[(i * classes + y) * per + p])
            })
            .unwrap()
    };
    let same = (0..n)
        .flat_map(|i| (0..per).map(move |p| (i, p)))
        .filter(|&(i, p)| argmax(a, i, p) == argmax(b, i, p))
        .count();
    same as f64 / (n * per) as f64
}

#[test]
fn bf16_logits_lose_no_more_than_pytorch_autocast() {
    let anchor: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx("bf16_autocast.json")).unwrap()).unwrap();
    for (name, weights) in [
        ("repux_k21", "repux_k21.pth"),
        ("repux_k7_plain", "repux_k7_plain.safetensors"),
        ("uxnet_k7", "uxnet_k7.pth"),
        ("swinunetr_w3", "swinunetr_w3.pth"),
    ] {
        let cfg = ModelConfig::load(fx(&format!("{name}.json")).to_str().unwrap()).unwrap();
        let mut net = Net::new(&cfg, &cpu());
        load_into(&mut net, &fx(weights), &cpu()).unwrap();
        let net = net.merge();
        let (shape, input) = npy(&format!("{name}_input.npy"));
        let s: [usize; 5] = shape.clone().try_into().unwrap();
        let (_, want) = npy(&format!("{name}_logits.npy"));
        let run = |p: Precision| {
            set_precision(p);
            let x = Tensor::<5>::from_data(TensorData::new(input.clone(), s), &cpu());
            let y = net.forward(x).into_data().try_to_vec::<f32>().unwrap();
            set_precision(Precision::Fp32);
            y
        };
        let fp32 = run(Precision::Fp32);
        let e32 = rel_l2(&fp32, &want);
        let torch = &anchor[name];
        let (torch_l2, torch_agree) = (
            torch["rel_l2"].as_f64().unwrap(),
            torch["argmax_agreement"].as_f64().unwrap(),
        );
        for level in bf16_levels::levels_available() {
            let bf16 = bf16_levels::at_level(level, || run(Precision::Bf16));
            let e16 = rel_l2(&bf16, &want);
            let agree = argmax_agreement(&bf16, &want, s[0], cfg.out_channels);
            eprintln!(
                "{name} at bf16 level {}: relative L2 to PyTorch float64: fp32 {e32:.2e}, bf16 {e16:.2e} (PyTorch autocast {torch_l2:.2e}); arg-max agreement {:.4} % (PyTorch {:.4} %)",
                level.name(),
                100.0 * agree,
                100.0 * torch_agree
            );
            // The bf16 run really differs (the switch reached this network's GEMMs) …
            assert!(e16 > 10.0 * e32, "{name}: bf16 {e16:.2e} vs fp32 {e32:.2e}");
            // … and stays within the contract. The same products run in bf16 as under autocast
            // (convs, linear layers, attention's batched products), with fp32 sums in another
            // order: at most 5 % above autocast's largest loss over the CPUs it was run on
            // (bf16_autocast.json's runs: SwinUNETR 8.84e-3 on AVX2, 1.04e-2 on AVX512-BF16,
            // where repux gives 8.9e-3 to 9.7e-3 depending on the CPU and level).
            assert!(
                e16 <= (1.05 * torch_l2).min(0.1),
                "{name}: bf16 relative L2 {e16}, PyTorch autocast {torch_l2}"
            );
            assert!(
                agree >= torch_agree - 1e-3,
                "{name}: arg-max agreement {agree}, PyTorch autocast {torch_agree}"
            );
        }
    }
}
