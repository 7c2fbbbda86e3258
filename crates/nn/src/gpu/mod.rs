//! The GPU path (`gpu` feature): [`ConvBackend`](crate::ops::ConvBackend) on burn's CubeCL
//! backend (wgpu: Vulkan, Metal, DX12 — shaders go WGSL → naga → the API's own form), and the
//! adapters `--device` chooses from.
//!
//! What runs where on the GPU:
//! - the depthwise large-kernel conv: repux's own CubeCL kernels ([`depthwise`]), forward and a
//!   custom backward (dx, dw, db) like the CPU extension's;
//! - dense, grouped and transposed convs: burn's CubeCL convs (implicit GEMM on the matmul
//!   units where the device has them); their backward is burn's autodiff;
//! - the fused InstanceNorm + LeakyReLU and add + LeakyReLU passes: repux's own CubeCL kernels
//!   ([`norm`]) with a backward that reads only the output, like the CPU extension's;
//! - SwinUNETR's attention softmax (bias + mask + softmax): repux's own CubeCL kernels
//!   ([`softmax`]) with a backward that reads only the probabilities;
//! - linear layers and attention products: burn's matmul ([`composite`]), differentiated by burn.
//!
//! [`crate::ops::use_burn_ops`] routes the depthwise conv, the norm passes and the softmax to
//! burn's own ops (the peer `repux bench` times them against).

pub(crate) mod composite;
pub mod depthwise;
pub mod norm;
mod reduce;
pub mod softmax;

use crate::ops::{
    burn_conv3d, burn_conv_transpose3d_k2s2, burn_depthwise, record_with_two_checkpoints,
    ConvBackend,
};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::autodiff::NodeId;
use burn::backend::ops::{ActivationOps, FloatTensorOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::TensorMetadata;
use burn::backend::{Autodiff, Cube};
use burn::tensor::TensorData;
use cubecl::wgpu::wgpu;

/// The methods the GPU path leaves to burn (its CubeCL convs and matmul, and compositions of its
/// tensor ops): the same bodies on `Cube` and on `Autodiff<Cube>`, where burn differentiates them.
macro_rules! burn_composed_methods {
    () => {
        fn conv3d_bias(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            stride: usize,
            padding: usize,
            groups: usize,
        ) -> FloatTensor<Self> {
            burn_conv3d::<Self>(x, weight, bias, stride, padding, groups)
        }
        fn conv_transpose3d_k2s2(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            burn_conv_transpose3d_k2s2::<Self>(x, weight)
        }
        fn linear(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            composite::linear::<Self>(x, weight, bias)
        }
        fn bmm(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
            Self::float_matmul(a, b)
        }
    };
}

impl ConvBackend for Cube {
    fn depthwise_conv3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if crate::ops::burn_ops() {
            return burn_depthwise::<Self>(x, weight, bias);
        }
        depthwise::forward(x, weight, bias)
    }
    burn_composed_methods!();
    fn instance_norm_act(x: FloatTensor<Self>, eps: f64, slope: f64) -> FloatTensor<Self> {
        if crate::ops::burn_ops() {
            return composite::instance_norm_act::<Self>(x, eps, slope);
        }
        norm::instance_norm_act(x, eps, slope).0
    }
    fn add_leaky_relu(a: FloatTensor<Self>, b: FloatTensor<Self>, slope: f64) -> FloatTensor<Self> {
        if crate::ops::burn_ops() {
            return composite::add_leaky_relu::<Self>(a, b, slope);
        }
        norm::add_leaky_relu(a, b, slope)
    }
    fn window_softmax(scores: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        softmax::window_softmax(scores, bias, None)
    }
    fn window_softmax_masked(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        softmax::window_softmax(scores, bias, Some(mask))
    }
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        cube_all_reduce(x)
    }
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::gelu(x)
    }
}

/// Sums `x` over the installed group's ranks through host memory (`x` itself without a group).
fn cube_all_reduce(x: FloatTensor<Cube>) -> FloatTensor<Cube> {
    let Some(group) = crate::collective::group() else {
        return x;
    };
    let device = x.device.clone();
    let shape = x.shape();
    let data = cubecl::future::block_on(Cube::float_into_data(x))
        .unwrap_or_else(|e| panic!("all-reduce: reading a GPU tensor back failed: {e:?}"));
    let mut values = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_else(|e| panic!("all-reduce: a GPU tensor is not f32: {e:?}"));
    group.all_reduce_sum(&mut values);
    Cube::float_from_data(TensorData::new(values, shape), &device)
}

/// A new contiguous f32 tensor of `shape` on `like`'s device (the kernels' outputs).
pub(crate) fn empty_like(
    like: &burn_cubecl::tensor::CubeTensor,
    shape: burn::tensor::Shape,
) -> burn_cubecl::tensor::CubeTensor {
    burn_cubecl::ops::numeric::empty_device_dtype(
        like.client.clone(),
        like.device.clone(),
        shape,
        burn::tensor::DType::F32,
    )
}

/// `t`'s buffer as a kernel argument.
pub(crate) fn buffer(t: &burn_cubecl::tensor::CubeTensor) -> cubecl::prelude::BufferArg {
    t.clone().into_buffer_arg()
}

/// The depthwise conv's backward on the GPU: dx, dw and db from the checkpointed input and
/// weight, each only when its node wants it.
#[derive(Debug)]
struct DepthwiseBackward;

impl Backward<Cube, 3> for DepthwiseBackward {
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<Cube>(&ops.node);
        let (xs, ws) = ops.state;
        let x: FloatTensor<Cube> = checkpointer.retrieve_node_output(xs);
        let w: FloatTensor<Cube> = checkpointer.retrieve_node_output(ws);
        let k = w.shape().dims::<5>()[2];
        if let Some(node) = node_b {
            grads.register::<Cube>(node.id, depthwise::backward_bias(dy.clone()));
        }
        if let Some(node) = node_w {
            grads.register::<Cube>(node.id, depthwise::backward_weight(x, dy.clone(), k));
        }
        if let Some(node) = node_x {
            grads.register::<Cube>(node.id, depthwise::backward_input(dy, w));
        }
    }
}

impl crate::ops::FusedPassKernels for Cube {
    type RowScale = FloatTensor<Cube>;

    fn norm_act_forward(
        x: FloatTensor<Self>,
        eps: f64,
        slope: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        norm::instance_norm_act(x, eps, slope)
    }
    fn norm_act_backward(
        y: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self> {
        norm::instance_norm_act_backward(y, rstd, dy, slope)
    }
    fn add_act_forward(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self> {
        norm::add_leaky_relu(a, b, slope)
    }
    fn add_act_backward(
        y: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self> {
        norm::add_leaky_relu_backward(y, dy, slope)
    }
    fn window_softmax_forward(
        scores: FloatTensor<Self>,
        bias: &FloatTensor<Self>,
        mask: Option<&FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        softmax::window_softmax(scores, bias.clone(), mask.cloned())
    }
    fn window_softmax_backward(
        p: FloatTensor<Self>,
        dp: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        softmax::window_softmax_backward(p, dp)
    }
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // burn's forward is exact (erf).
        <Self as ActivationOps<Self>>::gelu(x)
    }
    fn exact_gelu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        composite::gelu_backward::<Self>(x, dy)
    }
}

impl<C: CheckpointStrategy> ConvBackend for Autodiff<Cube, C> {
    fn depthwise_conv3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if crate::ops::burn_ops() {
            return burn_depthwise::<Self>(x, weight, bias);
        }
        record_with_two_checkpoints::<Cube, C, _, _>(
            DepthwiseBackward,
            [&x, &weight, &bias],
            |xs, ws| (xs, ws),
            || {
                depthwise::forward(
                    x.primitive().clone(),
                    weight.primitive().clone(),
                    bias.primitive().clone(),
                )
            },
        )
    }
    burn_composed_methods!();
    fn instance_norm_act(x: FloatTensor<Self>, eps: f64, slope: f64) -> FloatTensor<Self> {
        if crate::ops::burn_ops() {
            return composite::instance_norm_act::<Self>(x, eps, slope);
        }
        crate::ops::autodiff_instance_norm_act::<Cube, C>(x, eps, slope)
    }
    fn add_leaky_relu(a: FloatTensor<Self>, b: FloatTensor<Self>, slope: f64) -> FloatTensor<Self> {
        if crate::ops::burn_ops() {
            return composite::add_leaky_relu::<Self>(a, b, slope);
        }
        crate::ops::autodiff_add_leaky_relu::<Cube, C>(a, b, slope)
    }
    fn window_softmax(scores: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        crate::ops::autodiff_window_softmax::<Cube, C>(scores, bias, None)
    }
    fn window_softmax_masked(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        crate::ops::autodiff_window_softmax::<Cube, C>(scores, bias, Some(mask.primitive()))
    }
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let y = cube_all_reduce(x.primitive().clone());
        crate::ops::AllReduceBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateless(y)
    }
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if crate::ops::burn_ops() {
            return <Self as ActivationOps<Self>>::gelu(x);
        }
        crate::ops::autodiff_gelu::<Cube, C>(x)
    }
}

/// One graphics adapter wgpu reports.
#[derive(Clone, Debug)]
pub struct Adapter {
    /// What the device calls itself.
    pub name: String,
    /// The graphics API it was found on (the one the compute device runs on).
    pub api: String,
    /// Driver name and version, as the driver reports them.
    pub driver: String,
    /// A software rasterizer on the CPU (Mesa's lavapipe/llvmpipe, SwiftShader, WARP).
    pub software: bool,
    /// The largest buffer a kernel can bind, so the largest tensor (cubecl's page size too).
    pub max_buffer_bytes: u64,
    /// The device cubecl opens for this adapter.
    pub(crate) kind: burn::backend::WgpuDeviceKind,
}

/// The adapters of the graphics API the GPU path runs on — the first API in wgpu's order
/// (Vulkan, then Metal, DX12, OpenGL) with a hardware adapter, else the first with any — as
/// cubecl settles it for an unpinned device, in enumeration order.
///
/// Enumerated once per process: the Vulkan loader does not survive instances created on several
/// threads at once.
pub fn adapters() -> Vec<Adapter> {
    static ADAPTERS: std::sync::OnceLock<Vec<Adapter>> = std::sync::OnceLock::new();
    ADAPTERS.get_or_init(enumerate_adapters).clone()
}

fn enumerate_adapters() -> Vec<Adapter> {
    use burn::backend::WgpuDeviceKind;
    let mut software_only = None;
    for api in cubecl::wgpu::AutoGraphicsApi::chain() {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: api.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let infos: Vec<(wgpu::AdapterInfo, u64)> =
            cubecl::future::block_on(instance.enumerate_adapters(api.into()))
                .iter()
                .map(|a| {
                    let limits = a.limits();
                    let bytes = limits
                        .max_storage_buffer_binding_size
                        .min(limits.max_buffer_size);
                    (a.get_info(), bytes)
                })
                .collect();
        // cubecl counts each device type from zero on its own.
        let mut next = [0usize; 4];
        let list: Vec<Adapter> = infos
            .into_iter()
            .map(|(info, max_buffer_bytes)| {
                let mut take = |slot: usize| {
                    let i = next[slot];
                    next[slot] += 1;
                    i
                };
                let kind = match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => WgpuDeviceKind::DiscreteGpu(take(0)),
                    wgpu::DeviceType::IntegratedGpu => WgpuDeviceKind::IntegratedGpu(take(1)),
                    wgpu::DeviceType::VirtualGpu => WgpuDeviceKind::VirtualGpu(take(2)),
                    wgpu::DeviceType::Other => WgpuDeviceKind::Other(take(3)),
                    wgpu::DeviceType::Cpu => WgpuDeviceKind::Cpu,
                };
                Adapter {
                    name: info.name,
                    api: format!("{:?}", info.backend),
                    driver: format!("{} {}", info.driver, info.driver_info)
                        .trim()
                        .to_string(),
                    software: info.device_type == wgpu::DeviceType::Cpu,
                    max_buffer_bytes,
                    kind,
                }
            })
            .collect();
        if list.iter().any(|a| !a.software) {
            return list;
        }
        if software_only.is_none() && !list.is_empty() {
            software_only = Some(list);
        }
    }
    software_only.unwrap_or_default()
}

impl Adapter {
    /// The burn device on this adapter.
    pub fn device(&self) -> burn::tensor::Device {
        burn::tensor::Device::new(burn::backend::WgpuDevice::new(self.kind.clone()))
    }
}
