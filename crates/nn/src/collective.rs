//! Data-parallel training hooks: the process group the networks synchronise over, and
//! SyncBatchNorm on it.
//!
//! The networks do not know MPI: a trainer installs a [`Collective`] (repux-train's MPI one, or a
//! test's) and every BatchNorm in training mode then normalises with the statistics of the
//! global batch — sums all-reduced across ranks through a differentiable all-reduce whose
//! backward all-reduces the gradient, so each rank's gradient is that of the sum of all ranks'
//! losses, as one process with the global batch computes it (PyTorch's SyncBatchNorm). Without
//! a collective, or with one rank, BatchNorm is burn's own.

use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use std::sync::{Arc, RwLock};

/// A group of processes that sum buffers together. Calls are collective: every rank makes the
/// same calls in the same order. In training, every rank runs a batch of the same shape
/// (SyncBatchNorm relies on it for the global count).
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Element-wise sum over ranks, in place.
    fn all_reduce_sum(&self, values: &mut [f32]);
    /// The same in f64 (counts that f32 would round).
    fn all_reduce_sum_f64(&self, values: &mut [f64]);
    /// Rank 0's values to every rank, in place.
    fn broadcast(&self, values: &mut [f32]);
    /// Seconds this rank has spent inside collective calls so far, waiting for the other ranks
    /// included (0 where a group does not keep count).
    fn busy_seconds(&self) -> f64 {
        0.0
    }
}

static CURRENT: RwLock<Option<Arc<dyn Collective>>> = RwLock::new(None);

/// Installs the process group (or removes it with `None`).
pub fn install(c: Option<Arc<dyn Collective>>) {
    match CURRENT.write() {
        Ok(mut g) => *g = c,
        Err(p) => *p.into_inner() = c,
    }
}

/// The installed process group, if any.
pub fn current() -> Option<Arc<dyn Collective>> {
    match CURRENT.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// The installed group when it has more than one rank.
pub fn group() -> Option<Arc<dyn Collective>> {
    current().filter(|c| c.size() > 1)
}

/// Sum over ranks (identity without a group); differentiable: the gradient is summed too.
pub fn all_reduce_sum<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    crate::ops::all_reduce_sum(x)
}

/// BatchNorm `n` on `x` `[N, C, …]`: burn's own, except in training with a group of several
/// ranks, where mean and (biased) variance are those of the global batch and the running
/// statistics are updated with them, as burn updates them (momentum, biased variance).
pub fn batch_norm<const D: usize>(n: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let Some(g) = group() else {
        return n.forward(x);
    };
    if !(x.device().is_autodiff() && n.training.is_enabled()) {
        return n.forward(x);
    }
    let dims = x.dims();
    let c = dims[1];
    let per_rank = x.shape().num_elements() / c;
    // Data-parallel ranks run equal batches of equal shape (the trainer's contract), so the
    // global count needs no collective of its own.
    let count = (per_rank * g.size()) as f64;
    let mut bshape = [1usize; D];
    bshape[1] = c;
    let rows = |t: Tensor<D>| {
        t.swap_dims(0, 1)
            .reshape([c, per_rank])
            .sum_dim(1)
            .reshape([c])
    };
    let mean = all_reduce_sum(rows(x.clone())).div_scalar(count);
    let centered = x - mean.clone().reshape(bshape);
    let var = all_reduce_sum(rows(centered.clone() * centered.clone())).div_scalar(count);
    let std = var.clone().add_scalar(n.epsilon).sqrt();
    let y = centered / std.reshape(bshape) * n.gamma.val().reshape(bshape)
        + n.beta.val().reshape(bshape);
    let device = y.device();
    let m = n.momentum;
    let rm = n.running_mean.value_sync().to_device(&device);
    let rv = n.running_var.value_sync().to_device(&device);
    n.running_mean
        .update((rm.mul_scalar(1.0 - m) + mean.detach().mul_scalar(m)).detach());
    n.running_var
        .update((rv.mul_scalar(1.0 - m) + var.detach().mul_scalar(m)).detach());
    y
}
