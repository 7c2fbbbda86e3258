//! repux-infer: what users run most. `window` is the Gaussian sliding window with test-time
//! mirroring, `predictor` loads a model directory once and predicts cases onto their native
//! grid, `postprocess` keeps the largest component per class.

pub mod postprocess;
pub mod predictor;
pub mod window;

pub use predictor::{
    input_cases, resolve_models, Checkpoint, InferError, PredictOptions, Prediction, Predictor,
};
