//! repux-train: the paper's loss (`loss`), PyTorch's AdamW with named state (`optim`), the
//! iteration-based trainer with exact resume (`trainer`), data-parallel over MPI with the `mpi`
//! feature (`mpi`); its curves are drawn by repux-plot.

pub mod loss;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod optim;
pub mod trainer;

pub use trainer::{
    splits, train, Cases, Ending, Outcome, Precision, RunOptions, Schedule, TrainConfig, TrainError,
};
