//! The networks against an independent PyTorch implementation (tools/torch_reference.py, run
//! once to write tests/fixtures), the paper's parameter counts, BFR that really trains, the SR
//! and BatchNorm merges, and weight-file errors.

use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Distribution, Tensor, TensorData};
use repux_nn::layers::reparam::bfr_delta;
use repux_nn::layers::repux_block::RepUxBlock;
use repux_nn::{cpu, load_into, ModelConfig, Net, Reparam};
mod common;

use common::{fx, npy, rel_l2};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Back-propagates `Σ ours·t` and `Σ theirs·t` and compares the gradients of the named 5-D and
/// 1-D leaves to relative L2 `tol`.
fn assert_same_gradients(
    ours: Tensor<5>,
    theirs: Tensor<5>,
    t: Tensor<5>,
    leaves5: &[(&str, &Tensor<5>)],
    leaves1: &[(&str, &Tensor<1>)],
    tol: f64,
    what: &str,
) {
    let g1 = (ours * t.clone()).sum().backward();
    let g2 = (theirs * t).sum().backward();
    let pairs = leaves5
        .iter()
        .map(|(n, l)| {
            (
                *n,
                values(l.grad(&g1).unwrap()),
                values(l.grad(&g2).unwrap()),
            )
        })
        .chain(leaves1.iter().map(|(n, l)| {
            (
                *n,
                values(l.grad(&g1).unwrap()),
                values(l.grad(&g2).unwrap()),
            )
        }));
    for (name, a, b) in pairs {
        let e = rel_l2(&a, &b);
        assert!(e < tol, "{what} {name}: relative L2 {e}");
    }
}

fn input(name: &str) -> Tensor<5> {
    let (shape, data) = npy(&format!("{name}_input.npy"));
    let s: [usize; 5] = shape.try_into().unwrap();
    Tensor::from_data(TensorData::new(data, s), &cpu())
}

#[test]
fn matches_pytorch_reference_and_deploy_merge_agrees() {
    // repux_k21 is an authors'-style checkpoint (their deploy network) read with the default
    // RepUX-Net config (BFR) and with the authors' own constructor names (deploy: true);
    // repux_k21_train is repux's training form (raw W, marked in the file's metadata).
    for (name, config, weights) in [
        ("repux_k21", "repux_k21.json", "repux_k21.pth"),
        ("repux_k21", "repux_k21_authors.json", "repux_k21.pth"),
        (
            "repux_k21_train",
            "repux_k21_train.json",
            "repux_k21_train.safetensors",
        ),
        (
            "repux_k7_plain",
            "repux_k7_plain.json",
            "repux_k7_plain.safetensors",
        ),
        ("uxnet_k7", "uxnet_k7.json", "uxnet_k7.pth"),
    ] {
        let cfg = ModelConfig::load(fx(config).to_str().unwrap()).unwrap();
        let mut net = Net::new(&cfg, &cpu());
        load_into(&mut net, &fx(weights), &cpu()).unwrap();
        let x = input(name);
        net.check_input(x.dims()).unwrap();
        let (shape, want) = npy(&format!("{name}_logits.npy"));
        let y = net.forward(x.clone());
        assert_eq!(y.dims().to_vec(), shape);
        let got = values(y);
        // Tolerance: relative L2 ≤ 1e-4 (f32 here vs float64 in PyTorch on the same weights).
        let e = rel_l2(&got, &want);
        assert!(e <= 1e-4, "{name} ({config}): relative L2 error {e}");
        // Deploy: δ and BatchNorm folded into the kernels; same output to ≤ 1e-5 relative.
        let deployed = net.merge();
        let e2 = rel_l2(&values(deployed.forward(x)), &got);
        assert!(
            e2 <= 1e-5,
            "{name}: deploy vs train-mode eval, relative L2 {e2}"
        );
    }
}

#[test]
fn paper_parameter_counts() {
    // Counted as PyTorch does (tools/torch_reference.py printed the same numbers).
    let rep = repux_nn::summary::summary(&Net::new(&ModelConfig::preset("paper").unwrap(), &cpu()))
        .unwrap();
    assert_eq!(rep.parameters, 65_827_829);
    assert_eq!(rep.buffers, 2 * 2 * (48 + 96 + 192 + 384));
    let dw: usize = rep
        .tensors
        .iter()
        .filter(|t| t.name.ends_with("dwconv.weight"))
        .map(|t| t.numel)
        .sum();
    assert_eq!(dw, 13_335_840, "the 21³ depthwise kernels");
    let ux = repux_nn::summary::summary(&Net::new(
        &ModelConfig::preset("paper-uxnet").unwrap(),
        &cpu(),
    ))
    .unwrap();
    assert_eq!(ux.parameters, 53_006_069);
}

#[test]
fn bfr_gradient_step_is_delta_scaled_and_w_is_never_overwritten() {
    let device = cpu().autodiff();
    device.seed(3);
    let k = 5;
    let block = RepUxBlock::new(2, k, Some(1.0), &[], &device);
    let w0 = values(block.dwconv.weight.val());
    let x = Tensor::<5>::random([1, 2, 6, 6, 6], Distribution::Normal(0.0, 1.0), &device);
    let target = Tensor::<5>::random([1, 2, 6, 6, 6], Distribution::Normal(0.0, 1.0), &device);
    // (b) repeated forwards give identical outputs (no compounding) and leave W alone.
    let y1 = values(block.forward(x.clone()));
    let y2 = values(block.forward(x.clone()));
    assert_eq!(y1, y2);
    assert_eq!(values(block.dwconv.weight.val()), w0);
    // The gradient reaching W_eff, from a plain conv whose weight is the effective kernel.
    let w_eff = block.effective_weight().detach().require_grad();
    let loss = (repux_nn::ops::depthwise_conv3d(
        x.clone(),
        w_eff.clone(),
        Some(block.dwconv.bias.val().detach()),
    ) * target.clone())
    .sum();
    let g_eff = values(w_eff.grad(&loss.backward()).unwrap());
    // (a) One SGD step on the BFR conv: W changes by −lr · δ ⊙ ∂L/∂W_eff.
    let loss = (repux_nn::ops::depthwise_conv3d(
        x,
        block.effective_weight(),
        Some(block.dwconv.bias.val()),
    ) * target)
        .sum();
    let grads = GradientsParams::from_grads(loss.backward(), &block);
    let lr = 0.1;
    let mut optim = SgdConfig::new().init();
    let stepped = optim.step(lr, block, grads);
    let w1 = values(stepped.dwconv.weight.val());
    let delta = bfr_delta(k, 1.0);
    let mut worst: f64 = 0.0;
    for (i, ((a, b), g)) in w1.iter().zip(&w0).zip(&g_eff).enumerate() {
        let want = -lr * delta[i % (k * k * k)] * *g as f64;
        worst = worst.max(((*a - *b) as f64 - want).abs());
    }
    // Tolerance: f32 rounding of W (|W| ≤ 1/√125) and of the gradient.
    assert!(
        worst < 1e-6,
        "max deviation from the δ-scaled step: {worst}"
    );
}

#[test]
fn sr_and_bn_merges_equal_the_training_network_in_eval() {
    let device = cpu();
    device.seed(5);
    for reparam in [Reparam::Sr, Reparam::Bfr, Reparam::None] {
        let mut block = RepUxBlock::new(
            3,
            7,
            (reparam == Reparam::Bfr).then_some(1.0),
            if reparam == Reparam::Sr { &[3, 5] } else { &[] },
            &device,
        );
        // Non-trivial BatchNorm statistics everywhere (eval mode uses them).
        let c = 3;
        let set = |n: &mut burn::nn::BatchNorm, s: f64| {
            RepUxBlock::set_bn(
                n,
                &[1.2 * s, 0.8, 1.1],
                &[0.1, -0.2 * s, 0.05],
                &[0.3, -0.1, 0.2 * s],
                &[0.5, 1.5 * s, 0.9],
            )
        };
        set(block.norm.as_mut().unwrap(), 1.0);
        for (i, br) in block.sr.iter_mut().enumerate() {
            set(&mut br.norm, 1.5 + i as f64);
        }
        let x = Tensor::<5>::random([2, c, 9, 8, 7], Distribution::Normal(0.0, 1.0), &device);
        let train = values(block.forward(x.clone()));
        let merged = block.merge();
        assert!(merged.norm.is_none() && merged.sr.is_empty() && merged.bfr_alpha.is_none());
        let deploy = values(merged.forward(x));
        let e = rel_l2(&deploy, &train);
        assert!(e <= 1e-5, "{reparam:?}: merged vs eval relative L2 {e}");
    }
}

/// The authors' kernels are the ones convolved with: imported under BFR, the stored W is
/// W_file / δ and the effective kernel δ ⊙ W is the file's (what fine-tuning starts from), and
/// applying δ once more would change the logits by tens of percent.
#[test]
fn authors_kernels_are_the_effective_kernels_under_bfr() {
    let cfg = ModelConfig::load(fx("repux_k21.json").to_str().unwrap()).unwrap();
    assert_eq!(cfg.reparam(), Reparam::Bfr);
    let mut net = Net::new(&cfg, &cpu());
    load_into(&mut net, &fx("repux_k21.pth"), &cpu()).unwrap();
    let file = repux_nn::read_state_dict(&fx("repux_k21.pth")).unwrap();
    let delta = bfr_delta(21, 1.0);
    let mut blocks = 0;
    net.for_each_rep_block(|b| {
        let key = format!(
            "repuxnet_3d.stages.{}.{}.dwconv.weight",
            blocks / 2,
            blocks % 2
        );
        let (_, want) = &file.0[&key];
        let e = rel_l2(&values(b.effective_weight()), want);
        assert!(e < 1e-6, "{key}: effective kernel vs file, relative L2 {e}");
        // The stored W is the file's kernel divided by δ, tap by tap.
        let w = values(b.dwconv.weight.val());
        let k3 = delta.len();
        let worst = w
            .iter()
            .enumerate()
            .map(|(i, v)| ((*v as f64) * delta[i % k3] - want[i] as f64).abs())
            .fold(0f64, f64::max);
        assert!(worst < 1e-5, "{key}: W·δ vs file off by {worst}");
        blocks += 1;
    });
    assert_eq!(blocks, 8);
    // The old misreading (δ applied on top of the file's kernels) is far from the authors' logits.
    let mut wrong = Net::new(&cfg, &cpu());
    repux_nn::import_state_dict(&mut wrong, file, repux_nn::KernelForm::Training, &cpu()).unwrap();
    let (_, want) = npy("repux_k21_logits.npy");
    let e = rel_l2(&values(wrong.forward(input("repux_k21"))), &want);
    assert!(
        e > 0.05,
        "δ applied twice should be visibly wrong, got relative L2 {e}"
    );
}

/// `repux model export` writes the deploy form: for repux's training-form network, the state
/// dict PyTorch computes from it (tools/torch_reference.py `deploy_state_dict`: W·δ, BatchNorm
/// kept), so the authors' deploy network reproduces repux's logits; both formats read back to
/// the same network.
#[test]
fn export_writes_the_deploy_form_pytorch_computes() {
    let cfg = ModelConfig::load(fx("repux_k21_train.json").to_str().unwrap()).unwrap();
    let mut net = Net::new(&cfg, &cpu());
    load_into(&mut net, &fx("repux_k21_train.safetensors"), &cpu()).unwrap();
    let want = repux_nn::read_state_dict(&fx("repux_k21_train_deploy.safetensors")).unwrap();
    let d = tempfile::tempdir().unwrap();
    let x = input("repux_k21_train");
    let logits = values(net.forward(x.clone()));
    for (file, fmt) in [
        ("m.pth", repux_nn::ExportFormat::Pth),
        ("m.safetensors", repux_nn::ExportFormat::Safetensors),
    ] {
        let path = d.path().join(file);
        repux_nn::export(&net, &path, fmt).unwrap();
        let (got, form) = repux_nn::read_weights(&path).unwrap();
        assert_eq!(form, repux_nn::KernelForm::Deploy, "{file}");
        assert_eq!(
            got.0.keys().collect::<Vec<_>>(),
            want.0.keys().collect::<Vec<_>>(),
            "{file}: the authors' keys"
        );
        for (k, (shape, v)) in &want.0 {
            let (s2, v2) = &got.0[k];
            assert_eq!(s2, shape, "{k}");
            let e = rel_l2(v2, v);
            // Tolerance: δ·W in f32 here and in PyTorch (δ from f64 here, f32 there).
            assert!(e < 1e-6, "{file} {k}: relative L2 {e}");
        }
        // Imported back (deploy form into the BFR config): the same network.
        let mut back = Net::new(&cfg, &cpu());
        load_into(&mut back, &path, &cpu()).unwrap();
        let e = rel_l2(&values(back.forward(x.clone())), &logits);
        assert!(e < 1e-5, "{file}: re-imported export, relative L2 {e}");
    }
}

/// An SR network exports with its branches folded (identity BatchNorm beside the merged
/// kernel): a plain RepUX-Net of the same widths loading that file computes the same logits.
#[test]
fn sr_export_loads_into_the_plain_network() {
    let cfg = ModelConfig {
        reparam: Some(Reparam::Sr),
        feature_size: [4, 8, 16, 16],
        hidden_size: 16,
        kernel_size: Some(7),
        sr_kernels: vec![3, 5],
        ..ModelConfig::default()
    };
    let device = cpu();
    device.seed(11);
    let net = Net::new(&cfg, &device);
    let x = Tensor::<5>::random([1, 1, 16, 16, 32], Distribution::Normal(0.0, 1.0), &device);
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("sr.pth");
    repux_nn::export(&net, &path, repux_nn::ExportFormat::Pth).unwrap();
    let plain_cfg = ModelConfig {
        reparam: Some(Reparam::None),
        ..cfg.clone()
    };
    let mut plain = Net::new(&plain_cfg, &cpu());
    load_into(&mut plain, &path, &cpu()).unwrap();
    let e = rel_l2(&values(plain.forward(x.clone())), &values(net.forward(x)));
    assert!(e < 1e-5, "SR export in the plain network: relative L2 {e}");
}

#[test]
fn weight_errors_list_the_keys() {
    let cfg = ModelConfig::load(fx("uxnet_k7.json").to_str().unwrap()).unwrap();
    // Wrong architecture: every encoder key is missing and every file encoder key unexpected.
    let other = ModelConfig {
        arch: repux_nn::Arch::Repuxnet,
        reparam: None,
        ..cfg.clone()
    };
    let mut net = Net::new(&other, &cpu());
    let e = load_into(&mut net, &fx("uxnet_k7.pth"), &cpu())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("uxnet_k7.pth")
            && e.contains("missing keys")
            && e.contains("repuxnet_3d.stages.0.0.dwconv.weight")
            && e.contains("unexpected keys")
            && e.contains("uxnet_3d.stages.0.0.gamma"),
        "{e}"
    );
    // Wrong width: shape mismatches name the key and both shapes.
    let wide = ModelConfig {
        out_channels: 7,
        ..cfg.clone()
    };
    let mut net = Net::new(&wide, &cpu());
    let e = load_into(&mut net, &fx("uxnet_k7.pth"), &cpu())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shape mismatches")
            && e.contains("out.conv.conv.weight (file [3, 4, 1, 1, 1], model [7, 4, 1, 1, 1])"),
        "{e}"
    );
    // Not a checkpoint at all.
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("x.pth");
    std::fs::write(&bad, b"not a zip").unwrap();
    let mut net = Net::new(&cfg, &cpu());
    let e = load_into(&mut net, &bad, &cpu()).unwrap_err().to_string();
    assert!(e.contains("x.pth"), "{e}");
}

#[test]
fn model_directory_roundtrip() {
    let cfg = ModelConfig::load(fx("repux_k21.json").to_str().unwrap()).unwrap();
    let mut net = Net::new(&cfg, &cpu());
    load_into(&mut net, &fx("repux_k21.pth"), &cpu()).unwrap();
    let d = tempfile::tempdir().unwrap();
    repux_nn::save_model_dir(&net, d.path()).unwrap();
    let back = repux_nn::load_model_dir(d.path(), &cpu()).unwrap();
    assert_eq!(back.config(), net.config());
    let x = input("repux_k21");
    assert_eq!(values(back.forward(x.clone())), values(net.forward(x)));
}

#[test]
fn whole_sr_network_merges_to_the_same_output() {
    // Seeded weights (unseeded, a rare draw put InstanceNorm over a near-constant 2-channel
    // feature map, which amplifies f32 rounding past the bound).
    let cfg = ModelConfig {
        reparam: Some(Reparam::Sr),
        feature_size: [4, 8, 16, 16],
        hidden_size: 16,
        kernel_size: Some(7),
        sr_kernels: vec![3, 5],
        ..ModelConfig::default()
    };
    cfg.validate().unwrap();
    let seeds: Vec<u64> = std::env::var("REPUX_SR_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_else(|| vec![7]);
    for seed in seeds {
        let device = cpu();
        device.seed(seed);
        let net = Net::new(&cfg, &device);
        let x = Tensor::<5>::random([1, 1, 16, 16, 32], Distribution::Normal(0.0, 1.0), &device);
        let train = values(net.forward(x.clone()));
        let e = rel_l2(&values(net.merge().forward(x)), &train);
        eprintln!("seed {seed}: relative L2 {e:.2e}");
        assert!(
            e <= 1e-5,
            "SR network merged vs eval (seed {seed}): relative L2 {e}"
        );
    }
}

/// The fast depthwise kernel (forward on Flex, custom backward on Autodiff<Flex>) against burn's
/// generic conv3d with groups = C and its autodiff, on small shapes (gradient check).
#[test]
fn depthwise_extension_matches_burn_generic_op_and_its_gradients() {
    use burn::tensor::module::conv3d;
    use burn::tensor::ops::ConvOptions;
    for (k, shape) in [
        (3usize, [2usize, 3, 5, 6, 7]),
        (7, [1, 2, 8, 8, 8]),
        (21, [1, 2, 6, 10, 12]),
    ] {
        let device = cpu().autodiff();
        device.seed(k as u64);
        let c = shape[1];
        // k3 runs the direct loops; k21 the FFT, whose backward reuses the forward's spectra.
        let dw = repux_kernels::DwShape {
            n: shape[0],
            c,
            d: shape[2],
            h: shape[3],
            w: shape[4],
            k,
        };
        if k == 21 {
            assert_eq!(
                repux_kernels::depthwise::choose(&dw),
                repux_kernels::DwAlgo::Fft
            );
        }
        let x = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
        let w = Tensor::<5>::random([c, 1, k, k, k], Distribution::Normal(0.0, 0.2), &device)
            .require_grad();
        let b = Tensor::<1>::random([c], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let t = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let ours = repux_nn::ops::depthwise_conv3d(x.clone(), w.clone(), Some(b.clone()));
        let theirs = conv3d(
            x.clone(),
            w.clone(),
            Some(b.clone()),
            ConvOptions::new([1, 1, 1], [k / 2; 3], [1, 1, 1], c),
        );
        // Tolerance: f32 sums of up to K³ terms, FFT rounding: 1e-4 relative L2.
        assert!(
            rel_l2(&values(ours.clone()), &values(theirs.clone())) < 1e-4,
            "k{k} forward"
        );
        assert_same_gradients(
            ours,
            theirs,
            t,
            &[("dx", &x), ("dw", &w)],
            &[("db", &b)],
            1e-4,
            &format!("k{k}"),
        );
    }
}

/// The im2col + GEMM dense/grouped and transposed convs (forward on Flex, custom backward on
/// Autodiff<Flex>) against burn's generic conv3d / conv_transpose3d and their autodiff.
#[test]
fn dense_and_transposed_extensions_match_burn_generic_ops_and_their_gradients() {
    use burn::tensor::module::{conv3d, conv_transpose3d};
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
    // (cin, cout, k, stride, pad, groups, input shape): stem, 3³ res conv, downsampling, 1³ head,
    // grouped 1³ (UX-Net MLP), and a 3³ conv wide enough for Winograd (forward and dx).
    let cases = [
        (
            1usize,
            4usize,
            7usize,
            2usize,
            3usize,
            1usize,
            [1usize, 1, 9, 10, 8],
        ),
        (3, 5, 3, 1, 1, 1, [2, 3, 6, 5, 7]),
        (4, 6, 2, 2, 0, 1, [2, 4, 6, 8, 4]),
        (6, 3, 1, 1, 0, 1, [1, 6, 4, 5, 3]),
        (6, 12, 1, 1, 0, 3, [2, 6, 3, 4, 5]),
        (32, 33, 3, 1, 1, 1, [1, 32, 16, 16, 17]),
    ];
    for (i, &(cin, cout, k, stride, pad, groups, shape)) in cases.iter().enumerate() {
        let device = cpu().autodiff();
        device.seed(i as u64);
        let x = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
        let w = Tensor::<5>::random(
            [cout, cin / groups, k, k, k],
            Distribution::Normal(0.0, 0.2),
            &device,
        )
        .require_grad();
        let b = Tensor::<1>::random([cout], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let ours =
            repux_nn::ops::conv3d_dense(x.clone(), w.clone(), Some(b.clone()), stride, pad, groups);
        let theirs = conv3d(
            x.clone(),
            w.clone(),
            Some(b.clone()),
            ConvOptions::new([stride; 3], [pad; 3], [1, 1, 1], groups),
        );
        assert_eq!(ours.dims(), theirs.dims());
        // Tolerance: f32 sums of up to Cin·k³ terms in another order: 1e-5 relative L2.
        assert!(
            rel_l2(&values(ours.clone()), &values(theirs.clone())) < 1e-5,
            "case {i} forward"
        );
        let t = Tensor::<5>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
        assert_same_gradients(
            ours,
            theirs,
            t,
            &[("dx", &x), ("dw", &w)],
            &[("db", &b)],
            1e-5,
            &format!("case {i}"),
        );
    }
    // A wide conv (Cin·k³ > 1024): inference routes it to burn's forward, training to ours; both agree.
    let plain = cpu();
    plain.seed(7);
    let x = Tensor::<5>::random([1, 40, 5, 6, 4], Distribution::Normal(0.0, 1.0), &plain);
    let w = Tensor::<5>::random([8, 40, 3, 3, 3], Distribution::Normal(0.0, 0.1), &plain);
    let infer = repux_nn::ops::conv3d_dense(x.clone(), w.clone(), None, 1, 1, 1);
    let ad = cpu().autodiff();
    let train = repux_nn::ops::conv3d_dense(
        Tensor::from_data(x.into_data(), &ad),
        Tensor::from_data(w.into_data(), &ad),
        None,
        1,
        1,
        1,
    );
    assert!(
        rel_l2(&values(infer), &values(train)) < 1e-5,
        "wide conv: inference and training paths"
    );
    let device = cpu().autodiff();
    device.seed(9);
    let x = Tensor::<5>::random([2, 5, 3, 4, 2], Distribution::Normal(0.0, 1.0), &device)
        .require_grad();
    let w = Tensor::<5>::random([5, 3, 2, 2, 2], Distribution::Normal(0.0, 0.3), &device)
        .require_grad();
    let ours = repux_nn::ops::conv_transpose3d_k2s2(x.clone(), w.clone());
    let theirs = conv_transpose3d(
        x.clone(),
        w.clone(),
        None,
        ConvTransposeOptions::new([2, 2, 2], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1),
    );
    assert!(
        rel_l2(&values(ours.clone()), &values(theirs.clone())) < 1e-5,
        "transposed forward"
    );
    let t = Tensor::<5>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
    assert_same_gradients(
        ours,
        theirs,
        t,
        &[("dx", &x), ("dw", &w)],
        &[],
        1e-5,
        "transposed",
    );
}

/// The linear extension (SwinUNETR's projections and MLPs) against burn's matmul + bias and its
/// autodiff gradients, with and without bias.
#[test]
fn linear_extension_matches_burn_matmul_and_its_gradients() {
    for (i, bias) in [(0u64, true), (1, false)] {
        let device = cpu().autodiff();
        device.seed(i);
        let x =
            Tensor::<2>::random([37, 12], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let w =
            Tensor::<2>::random([9, 12], Distribution::Normal(0.0, 0.3), &device).require_grad();
        let b = Tensor::<1>::random([9], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let ours = repux_nn::ops::linear(x.clone(), w.clone(), bias.then(|| b.clone()));
        let mut theirs = x.clone().matmul(w.clone().transpose());
        if bias {
            theirs = theirs + b.clone().unsqueeze::<2>();
        }
        // Tolerance: f32 sums of 12 terms in another order.
        assert!(
            rel_l2(&values(ours.clone()), &values(theirs.clone())) < 1e-6,
            "forward"
        );
        let t = Tensor::<2>::random([37, 9], Distribution::Normal(0.0, 1.0), &device);
        let g1 = (ours * t.clone()).sum().backward();
        let g2 = (theirs * t).sum().backward();
        for (name, a, c) in [
            (
                "dx",
                values(x.grad(&g1).unwrap()),
                values(x.grad(&g2).unwrap()),
            ),
            (
                "dw",
                values(w.grad(&g1).unwrap()),
                values(w.grad(&g2).unwrap()),
            ),
        ] {
            assert!(rel_l2(&a, &c) < 1e-6, "{name} (bias {bias})");
        }
        if bias {
            assert!(rel_l2(&values(b.grad(&g1).unwrap()), &values(b.grad(&g2).unwrap())) < 1e-6);
        }
    }
}

/// The batched product (SwinUNETR's attention) against burn's matmul and its autodiff
/// gradients, on an operand that is a transposed view (as `kᵀ` is).
#[test]
fn bmm_extension_matches_burn_matmul_and_its_gradients() {
    let device = cpu().autodiff();
    device.seed(5);
    let a = Tensor::<3>::random([6, 27, 8], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let b = Tensor::<3>::random([6, 27, 8], Distribution::Normal(0.0, 1.0), &device).require_grad();
    // Each side its own transposed view: burn's tape is consumed by one backward.
    let ours = repux_nn::ops::bmm(a.clone(), b.clone().swap_dims(1, 2));
    let theirs = a.clone().matmul(b.clone().swap_dims(1, 2));
    // Tolerance: f32 sums of 8 terms in another order.
    assert!(
        rel_l2(&values(ours.clone()), &values(theirs.clone())) < 1e-6,
        "forward"
    );
    let t = Tensor::<3>::random([6, 27, 27], Distribution::Normal(0.0, 1.0), &device);
    let g1 = (ours * t.clone()).sum().backward();
    let g2 = (theirs * t).sum().backward();
    for (name, x) in [("da", &a), ("db", &b)] {
        let (p, q) = (values(x.grad(&g1).unwrap()), values(x.grad(&g2).unwrap()));
        assert!(rel_l2(&p, &q) < 1e-6, "{name}: {}", rel_l2(&p, &q));
    }
}

/// The fused InstanceNorm + LeakyReLU and add + LeakyReLU passes (forward on Flex, backward
/// from the output on Autodiff<Flex>) against the composite of burn ops they replace.
#[test]
fn fused_norm_passes_match_burn_ops_and_their_gradients() {
    use burn::tensor::activation::leaky_relu;
    use repux_nn::layers::norm::instance_norm;
    let device = cpu().autodiff();
    device.seed(11);
    let shape = [2, 3, 4, 5, 6];
    let x = Tensor::<5>::random(shape, Distribution::Normal(0.5, 2.0), &device).require_grad();
    let y = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
    let t = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    for slope in [0.01, 1.0] {
        let ours = repux_nn::ops::instance_norm_act(x.clone(), 1e-5, slope);
        let theirs = leaky_relu(instance_norm(x.clone(), 1e-5), slope);
        // Tolerance: f32 element-wise arithmetic, statistics in another order: 1e-5 relative L2.
        assert!(
            rel_l2(&values(ours.clone()), &values(theirs.clone())) < 1e-5,
            "norm slope {slope} forward"
        );
        assert_same_gradients(
            ours,
            theirs,
            t.clone(),
            &[("dx", &x)],
            &[],
            1e-5,
            &format!("norm slope {slope}"),
        );
    }
    let ours = repux_nn::ops::add_leaky_relu(x.clone(), y.clone(), 0.01);
    let theirs = leaky_relu(x.clone() + y.clone(), 0.01);
    assert!(
        rel_l2(&values(ours.clone()), &values(theirs.clone())) < 1e-6,
        "add forward"
    );
    assert_same_gradients(ours, theirs, t, &[("da", &x), ("db", &y)], &[], 1e-6, "add");
}

/// GELU (one parallel pass each way) against burn's own GELU and its autodiff gradient, on a
/// tensor of several parallel chunks with values out in both tails.
#[test]
fn gelu_matches_burn_gelu_and_its_gradient() {
    let device = cpu().autodiff();
    device.seed(12);
    let shape = [2, 3, 40, 40, 20];
    let x = Tensor::<5>::random(shape, Distribution::Normal(0.0, 3.0), &device).require_grad();
    let t = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let ours = repux_nn::ops::gelu(x.clone());
    let theirs = burn::tensor::activation::gelu(x.clone());
    // Tolerance: two f32 erf evaluations (ours within 1e-6 relative of f64, burn's libm erff).
    let e = rel_l2(&values(ours.clone()), &values(theirs.clone()));
    assert!(e < 1e-6, "forward: {e}");
    assert_same_gradients(ours, theirs, t, &[("dx", &x)], &[], 1e-6, "gelu");
}

/// The fused window softmax (bias + shifted-window mask + softmax, backward from the output)
/// against burn's ops, with and without a mask, on a window size that is not a multiple of the
/// vector width; the mask's −100 entries push probabilities to 0 as in MONAI.
#[test]
fn window_softmax_matches_burn_ops_and_its_gradients() {
    use repux_nn::ops::{burn_window_softmax, window_softmax};
    let device = cpu().autodiff();
    device.seed(13);
    let (groups, windows, heads, n) = (2, 3, 2, 27);
    let scores = Tensor::<4>::random(
        [groups * windows, heads, n, n],
        Distribution::Normal(0.0, 3.0),
        &device,
    )
    .require_grad();
    let bias =
        Tensor::<3>::random([heads, n, n], Distribution::Normal(0.0, 0.5), &device).require_grad();
    let mask = Tensor::<3>::random([windows, n, n], Distribution::Bernoulli(0.3), &device) * -100.0;
    let t = Tensor::<4>::random(scores.dims(), Distribution::Normal(0.0, 1.0), &device);
    for m in [None, Some(mask)] {
        let what = if m.is_some() { "masked" } else { "unmasked" };
        let ours = window_softmax(scores.clone(), bias.clone(), m.clone());
        let theirs = burn_window_softmax(scores.clone(), bias.clone(), m);
        // Tolerance: a polynomial exponential (relative error < 2e-7) and f32 sums in another
        // order: 1e-6 relative L2.
        let e = rel_l2(&values(ours.clone()), &values(theirs.clone()));
        assert!(e < 1e-6, "{what} forward: {e}");
        let g1 = (ours * t.clone()).sum().backward();
        let g2 = (theirs * t.clone()).sum().backward();
        let e = rel_l2(
            &values(scores.grad(&g1).unwrap()),
            &values(scores.grad(&g2).unwrap()),
        );
        assert!(e < 1e-5, "{what} dscores: {e}");
        let e = rel_l2(
            &values(bias.grad(&g1).unwrap()),
            &values(bias.grad(&g2).unwrap()),
        );
        assert!(e < 1e-5, "{what} dbias: {e}");
    }
}

/// SwinUNETR against MONAI 1.5.1 itself (tools/monai_swinunetr_fixtures.py): the state dict
/// imports with MONAI's key names (float16 tensors, int64 relative_position_index buffers), and
/// the logits match MONAI's float64 forward.
#[test]
fn swinunetr_matches_monai() {
    let name = "swinunetr_w3";
    let cfg = ModelConfig::load(fx(&format!("{name}.json")).to_str().unwrap()).unwrap();
    let mut net = Net::new(&cfg, &cpu());
    load_into(&mut net, &fx(&format!("{name}.pth")), &cpu()).unwrap();
    let x = input(name);
    net.check_input(x.dims()).unwrap();
    let (shape, want) = npy(&format!("{name}_logits.npy"));
    let y = net.forward(x);
    assert_eq!(y.dims().to_vec(), shape);
    // Tolerance: relative L2 ≤ 1e-4 (f32 here vs float64 in MONAI on the same weights).
    let e = rel_l2(&values(y), &want);
    eprintln!("{name}: relative L2 vs MONAI {e:.2e}");
    assert!(e <= 1e-4, "{name}: relative L2 error {e}");
    // The exported state dict round-trips into a fresh network (index buffers included).
    let d = tempfile::tempdir().unwrap();
    repux_nn::save_model_dir(&net, d.path()).unwrap();
    let back = repux_nn::load_model_dir(d.path(), &cpu()).unwrap();
    assert_eq!(
        repux_nn::state_dict(&back).unwrap(),
        repux_nn::state_dict(&net).unwrap()
    );
}

/// Key names and shapes of a v2 SwinUNETR (residual blocks before each stage, v2 merging) equal
/// MONAI's `state_dict()` listing.
#[test]
fn swinunetr_v2_keys_match_monai() {
    let text = std::fs::read_to_string(fx("swinunetr_v2_keys.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cfg: ModelConfig = serde_json::from_value(v["config"].clone()).unwrap();
    cfg.validate().unwrap();
    let ours: std::collections::BTreeMap<String, Vec<usize>> =
        repux_nn::state_dict(&Net::new(&cfg, &cpu()))
            .unwrap()
            .0
            .into_iter()
            .map(|(k, (s, _))| (k, s))
            .collect();
    let theirs: std::collections::BTreeMap<String, Vec<usize>> =
        serde_json::from_value(v["keys"].clone()).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn swinunetr_parameter_counts_match_monai() {
    // Printed by tools/monai_swinunetr_fixtures.py (MONAI 1.5.1): SwinUNETR(in 1, out 14).
    for (preset, want) in [
        ("swinunetr", 62_187_296),
        ("swinunetr-small", 15_703_304),
        ("swinunetr-tiny", 4_078_220),
    ] {
        let cfg = ModelConfig {
            out_channels: 14,
            ..ModelConfig::preset(preset).unwrap()
        };
        let s = repux_nn::summary::summary(&Net::new(&cfg, &cpu())).unwrap();
        assert_eq!(s.parameters, want, "{preset}");
        assert_eq!(
            s.buffers,
            8 * 343 * 343,
            "{preset}: the relative_position_index buffers"
        );
    }
}

/// A SwinUNETR training step reaches every parameter (attention, position table, merging,
/// decoder), and a mis-sized input is refused with the multiple it needs.
#[test]
fn swinunetr_trains_and_checks_input() {
    let device = cpu().autodiff();
    let cfg = ModelConfig {
        arch: repux_nn::Arch::Swinunetr,
        feature_size: [12, 24, 48, 96],
        window_size: 3,
        out_channels: 2,
        ..ModelConfig::default()
    };
    cfg.validate().unwrap();
    let net = Net::new(&cfg, &device);
    assert!(net
        .check_input([1, 1, 32, 32, 48])
        .unwrap_err()
        .contains("multiple of 32"));
    let x = Tensor::<5>::random([1, 1, 32, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let loss = net.forward(x).powi_scalar(2).mean();
    let grads = loss.backward();
    let Net::Swin(s) = &net else {
        panic!("not a SwinUNETR")
    };
    let table = s.swin_vit.layers[0].blocks[1]
        .attn
        .relative_position_bias_table
        .val();
    assert!(values(
        table
            .grad(&grads)
            .expect("the position table gets a gradient")
    )
    .iter()
    .any(|v| *v != 0.0));
    let reduction = s.swin_vit.layers[2].downsample.reduction.weight.val();
    assert!(
        values(reduction.grad(&grads).expect("merging gets a gradient"))
            .iter()
            .any(|v| *v != 0.0)
    );
    let head = s.out.weight.val();
    assert!(values(head.grad(&grads).expect("the head gets a gradient"))
        .iter()
        .any(|v| *v != 0.0));
}
