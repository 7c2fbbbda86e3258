//! repux-train: the paper's loss (`loss`), PyTorch's AdamW with named state (`optim`), the
//! iteration-based trainer with exact resume (`trainer`) and its curves (`progress`).

pub mod loss;
pub mod optim;
pub mod progress;
pub mod trainer;

pub use trainer::{
    splits, train, Cases, Ending, Outcome, RunOptions, Schedule, TrainConfig, TrainError,
};
