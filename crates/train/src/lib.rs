//! repux-train: the paper's loss (`loss`), PyTorch's AdamW with named state (`optim`), the
//! iteration-based trainer with exact resume (`trainer`); its curves are drawn by repux-plot.

pub mod loss;
pub mod optim;
pub mod trainer;

pub use trainer::{
    splits, train, Cases, Ending, Outcome, RunOptions, Schedule, TrainConfig, TrainError,
};
