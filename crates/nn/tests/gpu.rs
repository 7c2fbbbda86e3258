//! The GPU path (`gpu` feature) against the CPU path: every op of the `ConvBackend` extension
//! on the GPU — repux's CubeCL depthwise, norm and softmax kernels, burn's CubeCL convs, the linear layer
//! and products on burn's matmul — forward and every gradient, and whole networks on the parity
//! fixtures. Runs on Mesa's software Vulkan (lavapipe) where no GPU is present: the device is
//! `gpu:software` when there is one, else the first hardware GPU.
#![cfg(feature = "gpu")]

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use repux_nn::device::{resolve, DeviceRequest};
use repux_nn::{cpu, load_into, ModelConfig, Net};
mod common;

use common::{fx, npy, rel_l2};

/// The GPU device the tests run on.
fn gpu() -> Device {
    for request in [DeviceRequest::GpuSoftware, DeviceRequest::Gpu(0)] {
        if let Ok(d) = resolve(&request) {
            eprintln!("GPU tests on {}", d.description);
            return d.device;
        }
    }
    panic!(
        "the gpu build's tests need a Vulkan adapter: install Mesa's software driver \
         (apt-get install mesa-vulkan-drivers) or run on a machine with a GPU"
    );
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// `t`'s values as a new leaf on `device`.
fn on<const D: usize>(t: &Tensor<D>, device: &Device) -> Tensor<D> {
    Tensor::from_data(t.to_data(), device).require_grad()
}

/// Runs `op` on CPU copies and GPU copies of `inputs` under autodiff, back-propagates
/// `Σ op(inputs)·t` on both, and checks the outputs and every input's gradient to relative L2
/// `tol`.
fn same_on_both<const D: usize, const R: usize>(
    what: &str,
    inputs: &[Tensor<D>],
    op: impl Fn(&[Tensor<D>]) -> Tensor<R>,
    tol: f64,
) {
    let run = |device: &Device| {
        let xs: Vec<Tensor<D>> = inputs.iter().map(|t| on(t, device)).collect();
        let y = op(&xs);
        // A fixed cotangent, not a random one: other tests draw from the same process-wide RNG.
        let dims = y.dims();
        let n: usize = dims.iter().product();
        let t: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 113) as f32 / 56.0 - 1.0)
            .collect();
        let t = Tensor::<R>::from_data(TensorData::new(t, dims), device);
        let out = values(y.clone());
        let grads = (y * t).sum().backward();
        let gs: Vec<Vec<f32>> = xs.iter().map(|x| values(x.grad(&grads).unwrap())).collect();
        (out, gs)
    };
    let (want, want_grads) = run(&cpu().autodiff());
    let (got, got_grads) = run(&gpu().autodiff());
    let e = rel_l2(&got, &want);
    assert!(e < tol, "{what} forward: relative L2 {e}");
    for (i, (g, w)) in got_grads.iter().zip(&want_grads).enumerate() {
        let e = rel_l2(g, w);
        assert!(e < tol, "{what}: gradient of input {i}, relative L2 {e}");
    }
}

fn random<const D: usize>(shape: [usize; D], std: f64) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, std), &cpu())
}

/// repux's CubeCL depthwise kernels (forward, dx, dw, db) against the CPU kernels, on shapes
/// that cut the 16×16 tiles and 4-deep blocks unevenly, and kernels wider than the volume.
#[test]
fn depthwise_kernels_match_the_cpu_kernels() {
    cpu().seed(3);
    for (k, shape) in [
        (3usize, [2usize, 3, 5, 6, 7]),
        (5, [1, 2, 9, 17, 18]),
        (7, [1, 3, 8, 8, 8]),
        (21, [1, 2, 6, 10, 12]),
        (21, [2, 2, 11, 19, 23]),
    ] {
        let c = shape[1];
        let x = random(shape, 1.0);
        let w = random([c, 1, k, k, k], 0.2);
        let b = random([1, 1, 1, 1, c], 1.0);
        // Tolerance: f32 sums of K³ terms in another order (the CPU's k21 runs an FFT): 1e-5.
        same_on_both(
            &format!("depthwise k{k} {shape:?}"),
            &[x, w, b],
            |t| {
                let bias = t[2].clone().reshape([c]);
                repux_nn::ops::depthwise_conv3d(t[0].clone(), t[1].clone(), Some(bias))
            },
            1e-5,
        );
    }
}

/// The dense, grouped and transposed convs (burn's CubeCL convs on the GPU) against repux's CPU
/// kernels, with their gradients.
#[test]
fn dense_and_transposed_convs_match_the_cpu() {
    cpu().seed(4);
    for (i, &(cin, cout, k, stride, pad, groups, shape)) in [
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
        (6, 12, 1, 1, 0, 3, [2, 6, 3, 4, 5]),
        (32, 33, 3, 1, 1, 1, [1, 32, 8, 8, 9]),
    ]
    .iter()
    .enumerate()
    {
        let x = random(shape, 1.0);
        let w = random([cout, cin / groups, k, k, k], 0.2);
        // Tolerance: f32 sums of Cin·k³ terms in another order: 1e-5 relative L2.
        same_on_both(
            &format!("conv case {i}"),
            &[x, w],
            |t| repux_nn::ops::conv3d_dense(t[0].clone(), t[1].clone(), None, stride, pad, groups),
            1e-5,
        );
    }
    same_on_both(
        "transposed k2 s2",
        &[random([2, 5, 3, 4, 2], 1.0), random([5, 3, 2, 2, 2], 0.3)],
        |t| repux_nn::ops::conv_transpose3d_k2s2(t[0].clone(), t[1].clone()),
        1e-5,
    );
}

/// Linear and the batched product (burn's matmul on the GPU) against repux's CPU kernels, with
/// their gradients.
#[test]
fn linear_and_products_match_the_cpu() {
    cpu().seed(5);
    same_on_both(
        "linear",
        &[
            random([37, 12], 1.0),
            random([9, 12], 0.3),
            random([1, 9], 1.0),
        ],
        |t| repux_nn::ops::linear(t[0].clone(), t[1].clone(), Some(t[2].clone().reshape([9]))),
        1e-5,
    );
    same_on_both(
        "bmm",
        &[random([6, 27, 8], 1.0), random([6, 8, 27], 1.0)],
        |t| repux_nn::ops::bmm(t[0].clone(), t[1].clone()),
        1e-5,
    );
}

/// repux's CubeCL norm passes (InstanceNorm + LeakyReLU, add + LeakyReLU, and their backward
/// from the output) against the CPU kernels: rows shorter than a cube's 256 units and rows
/// several times longer, an offset mean, and plain InstanceNorm (slope 1).
#[test]
fn norm_kernels_match_the_cpu_kernels() {
    cpu().seed(6);
    for shape in [[2usize, 3, 4, 5, 6], [1, 2, 9, 10, 11]] {
        for slope in [0.01, 1.0] {
            // Tolerance: f32 statistics summed in another order (the CPU sums in f64): 1e-5.
            same_on_both(
                &format!("instance norm {shape:?}, slope {slope}"),
                &[Tensor::<5>::random(
                    shape,
                    Distribution::Normal(0.5, 2.0),
                    &cpu(),
                )],
                |t| repux_nn::ops::instance_norm_act(t[0].clone(), 1e-5, slope),
                1e-5,
            );
        }
        // Element-wise, the same f32 operations on both: 1e-6.
        same_on_both(
            &format!("add + leaky relu {shape:?}"),
            &[random(shape, 1.0), random(shape, 1.0)],
            |t| repux_nn::ops::add_leaky_relu(t[0].clone(), t[1].clone(), 0.01),
            1e-6,
        );
    }
}

/// GELU on the GPU (burn's forward, repux's exact backward from burn's ops) against the CPU
/// pass: the gradient is exact GELU's, where burn's own GELU backward there is the derivative of
/// the tanh approximation (5e-4 apart in relative L2 on such data, 50 times the tolerance).
#[test]
fn gelu_and_its_exact_gradient_match_the_cpu() {
    cpu().seed(8);
    // Tolerance: two f32 erf evaluations and exps, each within ~1e-6 relative: 1e-5.
    same_on_both(
        "gelu",
        &[random([2, 3, 9, 10, 11], 2.0)],
        |t| repux_nn::ops::gelu(t[0].clone()),
        1e-5,
    );
}

/// The window-attention softmax kernels (forward, dS and the bias gradient) against the CPU
/// kernel: with and without the shifted-window mask, rows shorter and longer than one cube, and
/// more rows than one grid axis holds (65535 cubes), so the kernels' y layers run.
#[test]
fn window_softmax_kernels_match_the_cpu_kernel() {
    cpu().seed(9);
    for (groups, windows, heads, n) in [
        (2usize, 3usize, 2usize, 27usize),
        (1, 2, 1, 100),
        (16384, 2, 1, 2),
    ] {
        let batch = groups * windows;
        let scores = random([batch, heads, n, n], 3.0);
        let bias = random([heads, n, n], 0.5);
        let mask =
            Tensor::<3>::random([windows, n, n], Distribution::Bernoulli(0.3), &cpu()) * -100.0;
        for masked in [false, true] {
            let run = |device: &Device| {
                let (s, b) = (on(&scores, device), on(&bias, device));
                let m = masked.then(|| Tensor::<3>::from_data(mask.to_data(), device));
                let p = repux_nn::ops::window_softmax(s.clone(), b.clone(), m);
                let count = batch * heads * n * n;
                let t: Vec<f32> = (0..count)
                    .map(|i| ((i * 7919) % 113) as f32 / 56.0 - 1.0)
                    .collect();
                let t = Tensor::<4>::from_data(TensorData::new(t, p.dims()), device);
                let out = values(p.clone());
                let grads = (p * t).sum().backward();
                (
                    out,
                    values(s.grad(&grads).unwrap()),
                    values(b.grad(&grads).unwrap()),
                )
            };
            let want = run(&cpu().autodiff());
            let got = run(&gpu().autodiff());
            let what = format!("window softmax [{batch}, {heads}, {n}, {n}], masked {masked}");
            // Tolerance: the GPU's exp against the CPU's polynomial (both ≲ 2e-7 relative) and
            // sums in another order: 1e-5 relative L2.
            for (name, g, w) in [
                ("forward", &got.0, &want.0),
                ("dscores", &got.1, &want.1),
                ("dbias", &got.2, &want.2),
            ] {
                let e = rel_l2(g, w);
                assert!(e < 1e-5, "{what} {name}: relative L2 {e}");
            }
        }
    }
}

/// A tensor above the adapter's buffer limit (lavapipe's 128 MiB): the device reports the failed
/// kernel only when a result is read back, and `values` turns that into an error naming the
/// tensor, not a panic. On a GPU whose limit is above 1 GiB the tensor is not made.
#[test]
fn a_tensor_above_the_buffer_limit_reads_back_as_an_error() {
    let found = [DeviceRequest::GpuSoftware, DeviceRequest::Gpu(0)]
        .iter()
        .find_map(|r| resolve(r).ok())
        .expect("a Vulkan adapter");
    let limit = found
        .max_buffer_bytes
        .expect("a GPU adapter reports its buffer limit");
    assert!(limit >= 1 << 20, "buffer limit {limit} bytes");
    if limit > 1 << 30 {
        eprintln!(
            "{}: buffer limit {} MiB, not exercised",
            found.description,
            limit >> 20
        );
        return;
    }
    let n = (limit / 4) as usize + 1024;
    let big = Tensor::<1>::ones([n], &found.device) * 2.0;
    let err = repux_nn::values(big, "the big tensor")
        .expect_err("a tensor above the buffer limit read back");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        msg.starts_with("the big tensor: the device failed to compute it"),
        "{msg}"
    );
    // The device still works for tensors within the limit.
    let small = Tensor::<1>::ones([1000], &found.device) * 2.0;
    assert_eq!(repux_nn::values(small, "small").unwrap(), vec![2.0; 1000]);
}

/// Whole networks on the GPU path: the PyTorch / MONAI parity fixtures give the same logits as
/// the CPU path, and as the references, to relative L2 ≤ 1e-4.
#[test]
fn networks_on_the_gpu_match_the_cpu_and_the_references() {
    let device = gpu();
    for (name, config, weights) in [
        ("repux_k21", "repux_k21.json", "repux_k21.pth"),
        ("uxnet_k7", "uxnet_k7.json", "uxnet_k7.pth"),
        ("swinunetr_w3", "swinunetr_w3.json", "swinunetr_w3.pth"),
    ] {
        let cfg = ModelConfig::load(fx(config).to_str().unwrap()).unwrap();
        let (shape, data) = npy(&format!("{name}_input.npy"));
        let s: [usize; 5] = shape.try_into().unwrap();
        let logits = |dev: &Device| {
            let mut net = Net::new(&cfg, dev);
            load_into(&mut net, &fx(weights), dev).unwrap();
            values(net.forward(Tensor::from_data(TensorData::new(data.clone(), s), dev)))
        };
        let on_cpu = logits(&cpu());
        let on_gpu = logits(&device);
        let (_, want) = npy(&format!("{name}_logits.npy"));
        let (e_cpu, e_ref) = (rel_l2(&on_gpu, &on_cpu), rel_l2(&on_gpu, &want));
        eprintln!("{name}: GPU vs CPU {e_cpu:.2e}, GPU vs reference {e_ref:.2e}");
        assert!(e_cpu <= 1e-4, "{name}: GPU vs CPU relative L2 {e_cpu}");
        assert!(
            e_ref <= 1e-4,
            "{name}: GPU vs reference relative L2 {e_ref}"
        );
    }
}
