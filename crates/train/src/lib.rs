//! repux-train: the paper's loss (`loss`) and the iteration-based trainer (`trainer`).

pub mod loss;
pub mod trainer;

pub use trainer::{splits, train, TrainConfig, TrainError};
