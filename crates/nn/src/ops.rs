//! The convolutions the networks use, behind one burn backend extension, [`ConvBackend`]. Every
//! hot convolution (the depthwise large kernel, the dense 3³/2³/1³/7³ convs, the k2 s2 transposed
//! conv) goes through it, so fast CPU kernels replace the two impls below — `Flex` (inference)
//! and `Autodiff<Flex>` (training, with a custom backward) — without touching network code.
//!
//! Every conv runs repux-kernels: the depthwise conv by FFT or direct loops (cost model), the
//! wide stride-1 3³ convs by Winograd (forward and dx), the other dense/grouped convs and the k2
//! s2 transposed conv by GEMM (columns-free or im2col). Each has one custom autodiff step
//! computing all its gradients together (dx only when the input needs one — the network's input
//! does not). The UNETR blocks' InstanceNorm + LeakyReLU and add + LeakyReLU go through the same
//! extension as fused passes whose backward reads only their output, and so does SwinUNETR's
//! attention softmax (relative position bias + shifted-window mask + softmax); every block's
//! exact GELU is one more pass (its backward reads its input). Burn's own ops stay available as
//! the reference ([`burn_depthwise`], [`burn_conv3d`], [`burn_window_softmax`], burn's `gelu`)
//! that tests and `repux bench` compare against.
//!
//! Shapes: x [N, C, D, H, W]; depthwise weight [C, 1, K, K, K]; dense weight [O, I/g, k, k, k];
//! transposed weight [I, O, 2, 2, 2] (PyTorch's layout).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::TensorMetadata;
use burn::backend::{backend_extension, Autodiff, Dispatch, Flex};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Shape, Tensor, TensorData};
use repux_kernels::dense::{self, ConvShape, UpShape};
use repux_kernels::depthwise::{self, DwAlgo, DwSaved, DwShape};
use repux_kernels::gelu;
use repux_kernels::norm;
use repux_kernels::softmax::{self, AttnShape};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// When set, every conv runs burn's generic module op instead of repux's kernels (the peer
/// `repux bench model` times against, in the same process). Off by default.
static BURN_OPS: AtomicBool = AtomicBool::new(false);

/// Routes all convolutions, and linear layers and batched products, to burn's generic ops
/// (`true`) or repux's kernels (`false`); on the GPU also the fused norm passes (on the CPU they
/// stay repux's: the CPU tables in docs/performance.md were measured that way).
pub fn use_burn_ops(on: bool) {
    BURN_OPS.store(on, Ordering::SeqCst);
}

pub(crate) fn burn_ops() -> bool {
    BURN_OPS.load(Ordering::Relaxed)
}

/// The extension point for repux's convolutions.
#[backend_extension(Autodiff, Flex, Cube: cfg(feature = "gpu"))]
pub trait ConvBackend: burn::backend::Backend {
    /// Depthwise conv, stride 1, 'same' zero padding (K odd), with bias.
    fn depthwise_conv3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// Dense or grouped conv with a cubic kernel and a bias (zeros for a conv without one).
    fn conv3d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> FloatTensor<Self>;
    /// Transposed conv, kernel 2, stride 2, no bias.
    fn conv_transpose3d_k2s2(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `nn.Linear`: x `[rows, in]`, weight `[out, in]`, bias `[out]` (zeros for none).
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// Batched product: a `[batch, m, k]` · b `[batch, k, n]` → `[batch, m, n]` (attention).
    fn bmm(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
    /// InstanceNorm (no affine, instance statistics) then LeakyReLU(`slope`) on `[N, C, …]`;
    /// slope 1 is plain InstanceNorm. One fused pass; the backward keeps only the output.
    fn instance_norm_act(x: FloatTensor<Self>, eps: f64, slope: f64) -> FloatTensor<Self>;
    /// `LeakyReLU(a + b, slope)`; the backward keeps only the output.
    fn add_leaky_relu(a: FloatTensor<Self>, b: FloatTensor<Self>, slope: f64) -> FloatTensor<Self>;
    /// Window attention's `softmax(scores + bias)` over the last axis: scores
    /// `[batch, heads, n, n]`, the relative position bias `[heads, n, n]`. One fused pass; the
    /// backward keeps only the output.
    fn window_softmax(scores: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
    /// [`ConvBackend::window_softmax`] of `scores + bias + mask`, the shifted windows' mask
    /// `[windows, n, n]` added to batch entry `b` as window `b % windows`. The mask is a
    /// constant: no gradient reaches it.
    fn window_softmax_masked(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// Element-wise sum over the ranks of the installed [`crate::collective`] group (identity
    /// without one); its backward sums the gradient over ranks the same way.
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Exact GELU, `x · Φ(x)` (PyTorch's `approximate='none'`); the backward keeps the input.
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Sums `x` over the installed group's ranks (a copy of `x` without a group).
fn flex_all_reduce(x: &FloatTensor<Flex>) -> FloatTensor<Flex> {
    let mut v = flex_slice(x).into_owned();
    if let Some(g) = crate::collective::group() {
        g.all_reduce_sum(&mut v);
    }
    flex_tensor(v, x.shape())
}

/// The all-reduce's backward: the gradient summed over ranks (on any backend with the extension).
#[derive(Debug)]
pub(crate) struct AllReduceBackward;

impl<B: ConvBackend> Backward<B, 1> for AllReduceBackward {
    type State = ();

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::all_reduce_sum(dy));
        }
    }
}

fn dw_options(weight_dims: &[usize]) -> ConvOptions<3> {
    let p = weight_dims[2] / 2;
    ConvOptions::new([1, 1, 1], [p, p, p], [1, 1, 1], weight_dims[0])
}

fn up_options() -> ConvTransposeOptions<3> {
    ConvTransposeOptions::new([2, 2, 2], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1)
}

/// Burn's generic depthwise conv (the reference the fast kernel is checked against).
pub fn burn_depthwise<B: burn::backend::Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let opts = dw_options(&weight.shape().dims::<5>());
    <B as ModuleOps<B>>::conv3d(x, weight, Some(bias), opts)
}

/// Burn's generic dense/grouped conv (the reference the fast kernel is checked against).
pub fn burn_conv3d<B: burn::backend::Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> FloatTensor<B> {
    <B as ModuleOps<B>>::conv3d(
        x,
        weight,
        Some(bias),
        ConvOptions::new([stride; 3], [padding; 3], [1, 1, 1], groups),
    )
}

/// Burn's generic transposed conv, kernel 2, stride 2 (the reference).
pub fn burn_conv_transpose3d_k2s2<B: burn::backend::Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
) -> FloatTensor<B> {
    <B as ModuleOps<B>>::conv_transpose3d(x, weight, None, up_options())
}

fn flex_vec(t: FloatTensor<Flex>) -> Vec<f32> {
    let data = t.into_data();
    // f32 moves the buffer out when the tensor owns it (no copy); other float dtypes convert.
    // Either way the dtype matches, so the conversion cannot fail; if it ever did, the kernels
    // must not run on an empty or garbled buffer.
    let data = if data.dtype() == burn::tensor::DType::F32 {
        data
    } else {
        data.convert::<f32>()
    };
    data.try_into_vec::<f32>().unwrap_or_else(|e| {
        panic!("repux kernels: a tensor converted to f32 could not be read as f32 ({e:?})")
    })
}

/// The tensor's f32 values, borrowed where its storage is a contiguous f32 buffer (every tensor
/// the networks pass here), copied otherwise — a shared input (the autodiff graph keeps one) is
/// not copied.
fn flex_slice(t: &FloatTensor<Flex>) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(v) => Cow::Borrowed(v),
        None => Cow::Owned(flex_vec(t.clone())),
    }
}

/// Values per (sample, channel) row of `[N, C, …]`.
fn row_len(x: &FloatTensor<Flex>) -> usize {
    x.shape().iter().skip(2).product()
}

fn flex_tensor(v: Vec<f32>, shape: impl Into<Shape>) -> FloatTensor<Flex> {
    FlexTensor::from_data(TensorData::new(v, shape))
}

fn dw_shape(x: &FloatTensor<Flex>, weight: &FloatTensor<Flex>) -> DwShape {
    let [n, c, d, h, w] = x.shape().dims::<5>();
    DwShape {
        n,
        c,
        d,
        h,
        w,
        k: weight.shape().dims::<5>()[2],
    }
}

/// Stride, padding and groups of a dense conv (the autodiff state carries them).
#[derive(Clone, Copy, Debug)]
struct ConvParams {
    stride: usize,
    padding: usize,
    groups: usize,
}

fn conv_shape(x: &FloatTensor<Flex>, weight: &FloatTensor<Flex>, p: ConvParams) -> ConvShape {
    let [n, cin, d, h, w] = x.shape().dims::<5>();
    let [cout, _, k, _, _] = weight.shape().dims::<5>();
    ConvShape {
        n,
        cin,
        cout,
        d,
        h,
        w,
        k,
        stride: p.stride,
        pad: p.padding,
        groups: p.groups,
    }
}

fn up_shape(x: &FloatTensor<Flex>, weight: &FloatTensor<Flex>) -> UpShape {
    let [n, cin, d, h, w] = x.shape().dims::<5>();
    UpShape {
        n,
        cin,
        cout: weight.shape().dims::<5>()[1],
        d,
        h,
        w,
    }
}

fn flex_conv3d(
    x: FloatTensor<Flex>,
    weight: FloatTensor<Flex>,
    bias: FloatTensor<Flex>,
    p: ConvParams,
) -> FloatTensor<Flex> {
    let s = conv_shape(&x, &weight, p);
    let y = dense::conv3d_forward(
        &s,
        &flex_slice(&x),
        &flex_slice(&weight),
        Some(&flex_slice(&bias)),
    );
    let [od, oh, ow] = s.out();
    flex_tensor(y, [s.n, s.cout, od, oh, ow])
}

/// The depthwise conv on Flex; with `keep`, also what the FFT path's backward reuses (the
/// kernel and input spectra; `None` on the direct path).
fn flex_depthwise(
    x: FloatTensor<Flex>,
    weight: FloatTensor<Flex>,
    bias: FloatTensor<Flex>,
    keep: bool,
) -> (FloatTensor<Flex>, Option<DwSaved>) {
    let s = dw_shape(&x, &weight);
    let (x, w, b) = (flex_slice(&x), flex_slice(&weight), flex_slice(&bias));
    let (y, saved) = if keep {
        depthwise::forward_saving(&s, &x, &w, Some(&b), DwAlgo::Auto)
    } else {
        (depthwise::forward(&s, &x, &w, Some(&b), DwAlgo::Auto), None)
    };
    (flex_tensor(y, [s.n, s.c, s.d, s.h, s.w]), saved)
}

/// The product sizes of a batched matmul's operands (`[batch, m, k]`, `[batch, k, n]`).
fn bmm_shape(a: &FloatTensor<Flex>, b: &FloatTensor<Flex>) -> repux_kernels::bmm::BmmShape {
    let [batch, m, k] = a.shape().dims::<3>();
    let [bb, kb, n] = b.shape().dims::<3>();
    assert!(
        bb == batch && kb == k,
        "bmm: [{batch}, {m}, {k}] · [{bb}, {kb}, {n}] do not chain"
    );
    repux_kernels::bmm::BmmShape { batch, m, k, n }
}

fn flex_bmm(a: &FloatTensor<Flex>, b: &FloatTensor<Flex>) -> FloatTensor<Flex> {
    let s = bmm_shape(a, b);
    let c = repux_kernels::bmm::bmm_forward(s, &flex_slice(a), &flex_slice(b));
    flex_tensor(c, [s.batch, s.m, s.n])
}

/// `[rows, in]` and `[out, in]` of a linear layer's input and weight.
fn linear_dims(x: &FloatTensor<Flex>, weight: &FloatTensor<Flex>) -> (usize, usize, usize) {
    let [rows, cin] = x.shape().dims::<2>();
    let [cout, _] = weight.shape().dims::<2>();
    (rows, cin, cout)
}

fn flex_linear(
    x: FloatTensor<Flex>,
    weight: FloatTensor<Flex>,
    bias: FloatTensor<Flex>,
) -> FloatTensor<Flex> {
    let (rows, cin, cout) = linear_dims(&x, &weight);
    let y = repux_kernels::linear::linear_forward(
        rows,
        cin,
        cout,
        &flex_slice(&x),
        &flex_slice(&weight),
        Some(&flex_slice(&bias)),
    );
    flex_tensor(y, [rows, cout])
}

fn flex_up(x: FloatTensor<Flex>, weight: FloatTensor<Flex>) -> FloatTensor<Flex> {
    let s = up_shape(&x, &weight);
    let y = dense::conv_transpose_k2s2_forward(&s, &flex_slice(&x), &flex_slice(&weight));
    flex_tensor(y, [s.n, s.cout, 2 * s.d, 2 * s.h, 2 * s.w])
}

/// The sizes of a window softmax's operands (`mask`: its `[windows, n, n]` dims, if any).
fn attn_shape(scores: &FloatTensor<Flex>, mask: Option<&FloatTensor<Flex>>) -> AttnShape {
    let [batch, heads, n, _] = scores.shape().dims::<4>();
    AttnShape {
        batch,
        heads,
        n,
        windows: mask.map_or(1, |m| m.shape().dims::<3>()[0]),
    }
}

impl ConvBackend for Flex {
    fn depthwise_conv3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if burn_ops() {
            return burn_depthwise::<Self>(x, weight, bias);
        }
        flex_depthwise(x, weight, bias, false).0
    }
    fn conv3d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        // (Until the columns-free path for stride-1 3³ convs, wide convs went to burn's forward
        // here; ours is now about twice as fast on them, `repux bench kernels`.)
        if burn_ops() {
            return burn_conv3d::<Self>(x, weight, bias, stride, padding, groups);
        }
        flex_conv3d(
            x,
            weight,
            bias,
            ConvParams {
                stride,
                padding,
                groups,
            },
        )
    }
    fn conv_transpose3d_k2s2(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        if burn_ops() {
            return burn_conv_transpose3d_k2s2::<Self>(x, weight);
        }
        flex_up(x, weight)
    }
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        flex_linear(x, weight, bias)
    }
    fn bmm(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_bmm(&a, &b)
    }
    fn instance_norm_act(x: FloatTensor<Self>, eps: f64, slope: f64) -> FloatTensor<Self> {
        Self::norm_act_forward(x, eps, slope).0
    }
    fn add_leaky_relu(a: FloatTensor<Self>, b: FloatTensor<Self>, slope: f64) -> FloatTensor<Self> {
        Self::add_act_forward(a, b, slope)
    }
    fn window_softmax(scores: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::window_softmax_forward(scores, &bias, None)
    }
    fn window_softmax_masked(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::window_softmax_forward(scores, &bias, Some(&mask))
    }
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_all_reduce(&x)
    }
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if burn_ops() {
            return <Self as ActivationOps<Self>>::gelu(x);
        }
        Self::exact_gelu(x)
    }
}

/// The fused passes' kernels on an inner backend (`Flex`; `Cube` with the `gpu` feature): each
/// forward, and a backward that reads only that forward's output (GELU's: its input). One
/// autodiff recording and one backward step per pass ([`autodiff_instance_norm_act`],
/// [`autodiff_add_leaky_relu`], [`autodiff_window_softmax`], [`autodiff_gelu`]) serve every
/// backend.
pub(crate) trait FusedPassKernels: burn::backend::Backend {
    /// What the norm's backward needs beside its output: each row's 1/σ.
    type RowScale: Clone + Send + Sync + std::fmt::Debug + 'static;
    /// InstanceNorm + LeakyReLU: the output and each row's 1/σ.
    fn norm_act_forward(
        x: FloatTensor<Self>,
        eps: f64,
        slope: f64,
    ) -> (FloatTensor<Self>, Self::RowScale);
    /// dx of the norm from its output, the rows' 1/σ and dy.
    fn norm_act_backward(
        y: FloatTensor<Self>,
        rstd: Self::RowScale,
        dy: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self>;
    /// `LeakyReLU(a + b, slope)`.
    fn add_act_forward(a: FloatTensor<Self>, b: FloatTensor<Self>, slope: f64)
        -> FloatTensor<Self>;
    /// The gradient of both inputs of [`FusedPassKernels::add_act_forward`], from its output.
    fn add_act_backward(
        y: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self>;
    /// `softmax(scores + bias (+ mask))` over the last axis.
    fn window_softmax_forward(
        scores: FloatTensor<Self>,
        bias: &FloatTensor<Self>,
        mask: Option<&FloatTensor<Self>>,
    ) -> FloatTensor<Self>;
    /// dS for the scores and `Σ_batch dS` (`[heads, n, n]`) for the bias, from the output `p`.
    fn window_softmax_backward(
        p: FloatTensor<Self>,
        dp: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Exact GELU, `x · Φ(x)`.
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// dx of [`FusedPassKernels::exact_gelu`] from its input: `dy · (Φ(x) + x · φ(x))`.
    fn exact_gelu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl FusedPassKernels for Flex {
    type RowScale = Vec<f32>;

    fn norm_act_forward(
        x: FloatTensor<Self>,
        eps: f64,
        slope: f64,
    ) -> (FloatTensor<Self>, Vec<f32>) {
        let (y, rstd) =
            norm::instance_norm_act(&flex_slice(&x), row_len(&x), eps as f32, slope as f32);
        (flex_tensor(y, x.shape()), rstd)
    }
    fn norm_act_backward(
        y: FloatTensor<Self>,
        rstd: Vec<f32>,
        dy: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self> {
        let dx = norm::instance_norm_act_backward(
            &flex_slice(&y),
            &flex_slice(&dy),
            &rstd,
            row_len(&y),
            slope as f32,
        );
        flex_tensor(dx, y.shape())
    }
    fn add_act_forward(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self> {
        let shape = a.shape();
        assert_eq!(shape, b.shape(), "add_leaky_relu: shapes differ");
        flex_tensor(
            norm::add_act(&flex_slice(&a), &flex_slice(&b), slope as f32),
            shape,
        )
    }
    fn add_act_backward(
        y: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self> {
        flex_tensor(
            norm::act_backward(&flex_slice(&y), &flex_slice(&dy), slope as f32),
            y.shape(),
        )
    }
    fn window_softmax_forward(
        scores: FloatTensor<Self>,
        bias: &FloatTensor<Self>,
        mask: Option<&FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let s = attn_shape(&scores, mask);
        let shape = scores.shape();
        // In the scores' buffer where they own it.
        let mut p = flex_vec(scores);
        let mask = mask.map(flex_slice);
        softmax::window_softmax(s, &mut p, &flex_slice(bias), mask.as_deref());
        flex_tensor(p, shape)
    }
    fn window_softmax_backward(
        p: FloatTensor<Self>,
        dp: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let s = attn_shape(&p, None);
        let shape = p.shape();
        let mut ds = flex_vec(dp);
        let dbias = softmax::window_softmax_backward(s, &flex_slice(&p), &mut ds);
        (
            flex_tensor(ds, shape),
            flex_tensor(dbias, [s.heads, s.n, s.n]),
        )
    }
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_tensor(gelu::gelu(&flex_slice(&x)), x.shape())
    }
    fn exact_gelu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        let dx = gelu::gelu_backward(&flex_slice(&x), &flex_slice(&dy));
        flex_tensor(dx, x.shape())
    }
}

/// InstanceNorm + LeakyReLU's backward, from the output and the rows' 1/σ.
#[derive(Debug)]
struct NormActBackward;

impl<B: FusedPassKernels> Backward<B, 1> for NormActBackward {
    /// The output, each row's 1/σ and the slope.
    type State = (FloatTensor<B>, B::RowScale, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (y, rstd, slope) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::norm_act_backward(y, rstd, dy, slope));
        }
    }
}

/// `LeakyReLU(a + b)`'s backward, from the output: the same gradient reaches both inputs.
#[derive(Debug)]
struct AddActBackward;

impl<B: FusedPassKernels> Backward<B, 2> for AddActBackward {
    /// The output and the slope.
    type State = (FloatTensor<B>, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let parents = ops.parents.map(|n| n.map(|n| n.id));
        let dy = grads.consume::<B>(&ops.node);
        let (y, slope) = ops.state;
        register_to_each::<B>(grads, parents, B::add_act_backward(y, dy, slope));
    }
}

/// The window softmax's backward from its output.
#[derive(Debug)]
struct WindowSoftmaxBackward;

impl<B: FusedPassKernels> Backward<B, 2> for WindowSoftmaxBackward {
    /// The output.
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_scores, node_bias] = ops.parents;
        let dp = grads.consume::<B>(&ops.node);
        let (ds, dbias) = B::window_softmax_backward(ops.state, dp);
        if let Some(node) = node_scores {
            grads.register::<B>(node.id, ds);
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, dbias);
        }
    }
}

/// Records InstanceNorm + LeakyReLU on the autodiff graph over `B`; the backward keeps only the
/// output and the rows' 1/σ.
pub(crate) fn autodiff_instance_norm_act<B: FusedPassKernels, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    eps: f64,
    slope: f64,
) -> FloatTensor<Autodiff<B, C>> {
    let (y, rstd) = B::norm_act_forward(x.primitive().clone(), eps, slope);
    match NormActBackward
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((y.clone(), rstd, slope), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// Records `LeakyReLU(a + b)` on the autodiff graph over `B`; the backward keeps only the output.
pub(crate) fn autodiff_add_leaky_relu<B: FusedPassKernels, C: CheckpointStrategy>(
    a: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
    slope: f64,
) -> FloatTensor<Autodiff<B, C>> {
    let y = B::add_act_forward(a.primitive().clone(), b.primitive().clone(), slope);
    match AddActBackward
        .prepare::<C>([a.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((y.clone(), slope), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// Records the window softmax on the autodiff graph over `B`; the backward keeps only its output.
pub(crate) fn autodiff_window_softmax<B: FusedPassKernels, C: CheckpointStrategy>(
    scores: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    mask: Option<&FloatTensor<B>>,
) -> FloatTensor<Autodiff<B, C>> {
    let (scores, node) = scores.into_parts();
    let p = B::window_softmax_forward(scores, bias.primitive(), mask);
    match WindowSoftmaxBackward
        .prepare::<C>([node, bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(p.clone(), p),
        OpsKind::UnTracked(prep) => prep.finish(p),
    }
}

/// GELU's backward, from its input.
#[derive(Debug)]
struct GeluBackward;

impl<B: FusedPassKernels> Backward<B, 1> for GeluBackward {
    /// The input.
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::exact_gelu_backward(ops.state, dy));
        }
    }
}

/// Records exact GELU on the autodiff graph over `B`; the backward keeps the input.
pub(crate) fn autodiff_gelu<B: FusedPassKernels, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let y = B::exact_gelu(x.primitive().clone());
    match GeluBackward
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(x.primitive().clone(), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// Registers `g` as the gradient of each of the two parents that wants one (a sum's inputs).
pub(crate) fn register_to_each<B: burn::backend::Backend>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; 2],
    g: FloatTensor<B>,
) {
    match parents {
        [Some(a), Some(b)] => {
            grads.register::<B>(a, g.clone());
            grads.register::<B>(b, g);
        }
        [Some(n), None] | [None, Some(n)] => grads.register::<B>(n, g),
        [None, None] => {}
    }
}

/// The depthwise conv's backward: one kernel call gives dx, dw and db.
#[derive(Debug)]
struct DepthwiseBackward;

/// What the depthwise backward reads.
#[derive(Clone, Debug)]
enum DwState {
    /// The FFT forward's kernel and input spectra: the backward transforms only `dy` (three
    /// transforms per channel and sample fewer than from the input and weight).
    Spectra(Arc<DwSaved>),
    /// The checkpointed input and weight (the direct path).
    Nodes(NodeId, NodeId),
}

impl Backward<Flex, 3> for DepthwiseBackward {
    type State = DwState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (s, (dx, dw, db)) = match ops.state {
            DwState::Spectra(saved) => (
                saved.shape(),
                depthwise::backward_saved(&saved, &flex_slice(&dy)),
            ),
            DwState::Nodes(xs, ws) => {
                let x: FloatTensor<Flex> = checkpointer.retrieve_node_output(xs);
                let w: FloatTensor<Flex> = checkpointer.retrieve_node_output(ws);
                let s = dw_shape(&x, &w);
                (
                    s,
                    depthwise::backward(
                        &s,
                        &flex_slice(&x),
                        &flex_slice(&w),
                        &flex_slice(&dy),
                        DwAlgo::Auto,
                    ),
                )
            }
        };
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(dx, [s.n, s.c, s.d, s.h, s.w]));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, flex_tensor(dw, [s.c, 1, s.k, s.k, s.k]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, flex_tensor(db, [s.c]));
        }
    }
}

/// The dense conv's backward: one im2col pass gives dw and db, a second (only when the input
/// needs it) dx.
#[derive(Debug)]
struct DenseBackward;

impl Backward<Flex, 3> for DenseBackward {
    /// Checkpointed input and weight, and the conv's parameters.
    type State = (NodeId, NodeId, ConvParams);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (xs, ws, p) = ops.state;
        let x: FloatTensor<Flex> = checkpointer.retrieve_node_output(xs);
        let w: FloatTensor<Flex> = checkpointer.retrieve_node_output(ws);
        let s = conv_shape(&x, &w, p);
        let wdims = w.shape().dims::<5>();
        let (dx, dw, db) = dense::conv3d_backward(
            &s,
            &flex_slice(&x),
            &flex_slice(&w),
            &flex_slice(&dy),
            node_x.is_some(),
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(dx, [s.n, s.cin, s.d, s.h, s.w]));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, flex_tensor(dw, wdims));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, flex_tensor(db, [s.cout]));
        }
    }
}

/// The body of a backward whose two inputs were checkpointed: retrieves them, computes both
/// gradients at once with `grads_of(first, second, dy, first_needs_grad)` (the first one's
/// gradient may be left out when it is not needed) and registers those their nodes want.
fn two_input_backward(
    ops: Ops<(NodeId, NodeId), 2>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
    grads_of: impl FnOnce(
        &FloatTensor<Flex>,
        &FloatTensor<Flex>,
        &FloatTensor<Flex>,
        bool,
    ) -> (Option<FloatTensor<Flex>>, FloatTensor<Flex>),
) {
    let [node_a, node_b] = ops.parents;
    let dy = grads.consume::<Flex>(&ops.node);
    let (a_id, b_id) = ops.state;
    let a: FloatTensor<Flex> = checkpointer.retrieve_node_output(a_id);
    let b: FloatTensor<Flex> = checkpointer.retrieve_node_output(b_id);
    let (da, db) = grads_of(&a, &b, &dy, node_a.is_some());
    if let (Some(node), Some(da)) = (node_a, da) {
        grads.register::<Flex>(node.id, da);
    }
    if let Some(node) = node_b {
        grads.register::<Flex>(node.id, db);
    }
}

/// The k2 s2 transposed conv's backward: dx and dw from one pass.
#[derive(Debug)]
struct UpBackward;

impl Backward<Flex, 2> for UpBackward {
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        two_input_backward(ops, grads, checkpointer, |x, w, dy, _| {
            let s = up_shape(x, w);
            let (dx, dw) = dense::conv_transpose_k2s2_backward(
                &s,
                &flex_slice(x),
                &flex_slice(w),
                &flex_slice(dy),
            );
            (
                Some(flex_tensor(dx, [s.n, s.cin, s.d, s.h, s.w])),
                flex_tensor(dw, [s.cin, s.cout, 2, 2, 2]),
            )
        });
    }
}

/// The linear layer's backward: dx (when the input needs it), dw and db together.
#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    /// Checkpointed input and weight.
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (xs, ws) = ops.state;
        let x: FloatTensor<Flex> = checkpointer.retrieve_node_output(xs);
        let w: FloatTensor<Flex> = checkpointer.retrieve_node_output(ws);
        let (rows, cin, cout) = linear_dims(&x, &w);
        let (dx, dw, db) = repux_kernels::linear::linear_backward(
            rows,
            cin,
            cout,
            &flex_slice(&x),
            &flex_slice(&w),
            &flex_slice(&dy),
            node_x.is_some(),
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(dx, [rows, cin]));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, flex_tensor(dw, [cout, cin]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, flex_tensor(db, [cout]));
        }
    }
}

/// The batched product's backward: da (when `a` needs it) and db together.
#[derive(Debug)]
struct BmmBackward;

impl Backward<Flex, 2> for BmmBackward {
    /// Checkpointed operands.
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        two_input_backward(ops, grads, checkpointer, |a, b, dc, need_da| {
            let s = bmm_shape(a, b);
            let (da, db) = repux_kernels::bmm::bmm_backward(
                s,
                &flex_slice(a),
                &flex_slice(b),
                &flex_slice(dc),
                need_da,
            );
            (
                need_da.then(|| flex_tensor(da, [s.batch, s.m, s.k])),
                flex_tensor(db, [s.batch, s.k, s.n]),
            )
        });
    }
}

/// Records `op` on the autodiff graph for an op whose backward needs only its first two inputs
/// (the parents' first two): runs `forward` on the inner backend's tensors and, when the graph
/// tracks the op, checkpoints those two inputs and keeps `state(first, second)` for the
/// backward step.
pub(crate) fn record_with_two_checkpoints<B, C, K, const N: usize>(
    op: K,
    parents: [&FloatTensor<Autodiff<B, C>>; N],
    state: impl FnOnce(NodeId, NodeId) -> K::State,
    forward: impl FnOnce() -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: burn::backend::Backend,
    C: CheckpointStrategy,
    K: Backward<B, N>,
{
    match op
        .prepare::<C>(parents.map(|t| t.node()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let first = prep.checkpoint(parents[0]);
            let second = prep.checkpoint(parents[1]);
            prep.finish(state(first, second), forward())
        }
        OpsKind::UnTracked(prep) => prep.finish(forward()),
    }
}

impl<C: CheckpointStrategy> ConvBackend for Autodiff<Flex, C> {
    fn depthwise_conv3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if burn_ops() {
            return burn_depthwise::<Self>(x, weight, bias);
        }
        let out =
            |x: &FloatTensor<Self>, w: &FloatTensor<Self>, b: &FloatTensor<Self>, keep: bool| {
                flex_depthwise(
                    x.primitive().clone(),
                    w.primitive().clone(),
                    b.primitive().clone(),
                    keep,
                )
            };
        match DepthwiseBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => match out(&x, &weight, &bias, true) {
                // The FFT path: its spectra replace the input and weight.
                (y, Some(saved)) => prep.finish(DwState::Spectra(Arc::new(saved)), y),
                (y, None) => {
                    let xs = prep.checkpoint(&x);
                    let ws = prep.checkpoint(&weight);
                    prep.finish(DwState::Nodes(xs, ws), y)
                }
            },
            OpsKind::UnTracked(prep) => prep.finish(out(&x, &weight, &bias, false).0),
        }
    }
    fn conv3d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        if burn_ops() {
            return burn_conv3d::<Self>(x, weight, bias, stride, padding, groups);
        }
        let p = ConvParams {
            stride,
            padding,
            groups,
        };
        record_with_two_checkpoints::<Flex, C, _, _>(
            DenseBackward,
            [&x, &weight, &bias],
            |xs, ws| (xs, ws, p),
            || {
                flex_conv3d(
                    x.primitive().clone(),
                    weight.primitive().clone(),
                    bias.primitive().clone(),
                    p,
                )
            },
        )
    }
    fn conv_transpose3d_k2s2(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        if burn_ops() {
            return burn_conv_transpose3d_k2s2::<Self>(x, weight);
        }
        record_with_two_checkpoints::<Flex, C, _, _>(
            UpBackward,
            [&x, &weight],
            |xs, ws| (xs, ws),
            || flex_up(x.primitive().clone(), weight.primitive().clone()),
        )
    }
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        record_with_two_checkpoints::<Flex, C, _, _>(
            LinearBackward,
            [&x, &weight, &bias],
            |xs, ws| (xs, ws),
            || {
                flex_linear(
                    x.primitive().clone(),
                    weight.primitive().clone(),
                    bias.primitive().clone(),
                )
            },
        )
    }
    fn bmm(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        record_with_two_checkpoints::<Flex, C, _, _>(
            BmmBackward,
            [&a, &b],
            |a_id, b_id| (a_id, b_id),
            || flex_bmm(a.primitive(), b.primitive()),
        )
    }
    fn instance_norm_act(x: FloatTensor<Self>, eps: f64, slope: f64) -> FloatTensor<Self> {
        autodiff_instance_norm_act::<Flex, C>(x, eps, slope)
    }
    fn add_leaky_relu(a: FloatTensor<Self>, b: FloatTensor<Self>, slope: f64) -> FloatTensor<Self> {
        autodiff_add_leaky_relu::<Flex, C>(a, b, slope)
    }
    fn window_softmax(scores: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        autodiff_window_softmax::<Flex, C>(scores, bias, None)
    }
    fn window_softmax_masked(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        autodiff_window_softmax::<Flex, C>(scores, bias, Some(mask.primitive()))
    }
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let y = flex_all_reduce(x.primitive());
        AllReduceBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateless(y)
    }
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if burn_ops() {
            return <Self as ActivationOps<Self>>::gelu(x);
        }
        autodiff_gelu::<Flex, C>(x)
    }
}

/// Exact GELU (`x · Φ(x)`, PyTorch's default), and its exact gradient: one parallel pass each
/// way on the CPU; on the GPU burn's forward and an exact backward composed of burn's ops (burn's
/// own GELU backward there is the tanh approximation's derivative); burn's own op under
/// [`use_burn_ops`].
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as ConvBackend>::gelu(x.into_dispatch()))
}

/// Sum over the installed group's ranks, differentiable (see [`ConvBackend::all_reduce_sum`]).
pub fn all_reduce_sum<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as ConvBackend>::all_reduce_sum(x.into_dispatch()))
}

/// Depthwise conv, stride 1, 'same' zero padding (K odd).
pub fn depthwise_conv3d(x: Tensor<5>, weight: Tensor<5>, bias: Option<Tensor<1>>) -> Tensor<5> {
    let c = weight.dims()[0];
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c], &weight.device()));
    Tensor::from_dispatch(<Dispatch as ConvBackend>::depthwise_conv3d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// Dense (or grouped) conv with cubic kernel, given stride and padding.
pub fn conv3d_dense(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Tensor<5> {
    let c = weight.dims()[0];
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c], &weight.device()));
    Tensor::from_dispatch(<Dispatch as ConvBackend>::conv3d_bias(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
        groups,
    ))
}

/// InstanceNorm (no affine, instance statistics, biased variance) then LeakyReLU(`slope`) on
/// `[N, C, …]`, fused (slope 1: InstanceNorm alone).
pub fn instance_norm_act<const D: usize>(x: Tensor<D>, eps: f64, slope: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as ConvBackend>::instance_norm_act(
        x.into_dispatch(),
        eps,
        slope,
    ))
}

/// `LeakyReLU(a + b, slope)`, fused.
pub fn add_leaky_relu<const D: usize>(a: Tensor<D>, b: Tensor<D>, slope: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as ConvBackend>::add_leaky_relu(
        a.into_dispatch(),
        b.into_dispatch(),
        slope,
    ))
}

/// Window attention's `softmax(scores + bias (+ mask))` over the last axis, fused: scores
/// `[batch, heads, n, n]`, bias `[heads, n, n]`, mask `[windows, n, n]` (batch entry `b` is
/// window `b % windows`; a constant, no gradient). Burn's ops when [`use_burn_ops`] is on.
pub fn window_softmax(scores: Tensor<4>, bias: Tensor<3>, mask: Option<Tensor<3>>) -> Tensor<4> {
    if burn_ops() {
        return burn_window_softmax(scores, bias, mask);
    }
    let (scores, bias) = (scores.into_dispatch(), bias.into_dispatch());
    Tensor::from_dispatch(match mask {
        Some(m) => {
            <Dispatch as ConvBackend>::window_softmax_masked(scores, bias, m.into_dispatch())
        }
        None => <Dispatch as ConvBackend>::window_softmax(scores, bias),
    })
}

/// [`window_softmax`] as burn's tensor ops (the reference, and the peer `repux bench` times).
pub fn burn_window_softmax(
    scores: Tensor<4>,
    bias: Tensor<3>,
    mask: Option<Tensor<3>>,
) -> Tensor<4> {
    let [b, h, n, _] = scores.dims();
    let mut s = scores + bias.unsqueeze::<4>();
    if let Some(m) = mask {
        let nw = m.dims()[0];
        s = (s.reshape([b / nw, nw, h, n, n]) + m.unsqueeze_dim::<4>(1).unsqueeze::<5>())
            .reshape([b, h, n, n]);
    }
    burn::tensor::activation::softmax(s, 3)
}

/// Transposed conv, kernel 2, stride 2, no bias (the decoder's upsampling).
pub fn conv_transpose3d_k2s2(x: Tensor<5>, weight: Tensor<5>) -> Tensor<5> {
    Tensor::from_dispatch(<Dispatch as ConvBackend>::conv_transpose3d_k2s2(
        x.into_dispatch(),
        weight.into_dispatch(),
    ))
}

/// `a [batch, m, k] · b [batch, k, n]` (repux's GEMM, so bf16 reaches it; burn's matmul when
/// [`use_burn_ops`] is on).
pub fn bmm(a: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
    if burn_ops() {
        return a.matmul(b);
    }
    Tensor::from_dispatch(<Dispatch as ConvBackend>::bmm(
        a.into_dispatch(),
        b.into_dispatch(),
    ))
}

/// `nn.Linear` on `[rows, in]` with weight `[out, in]` (repux's kernels; burn's matmul when
/// [`use_burn_ops`] is on).
pub fn linear(x: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    if burn_ops() {
        let y = x.matmul(weight.transpose());
        return match bias {
            Some(b) => y + b.unsqueeze::<2>(),
            None => y,
        };
    }
    let c = weight.dims()[0];
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c], &weight.device()));
    Tensor::from_dispatch(<Dispatch as ConvBackend>::linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}
