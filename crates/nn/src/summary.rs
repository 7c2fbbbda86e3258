//! `repux model summary`: every named tensor with its shape, and the parameter count as PyTorch
//! counts it (`sum(p.numel() for p in model.parameters())`: BatchNorm running statistics are
//! buffers, not parameters, as are SwinUNETR's relative_position_index tables — burn's `num_params` counts them, so it is not used here).

use crate::net::Net;
use crate::weights::state_dict;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub numel: usize,
    /// `false` for buffers (BatchNorm running statistics, relative position indices).
    pub parameter: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub parameters: usize,
    pub buffers: usize,
    pub tensors: Vec<TensorEntry>,
}

fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("relative_position_index")
}

pub fn summary(net: &Net) -> Result<Summary, crate::WeightError> {
    let tensors: Vec<TensorEntry> = state_dict(net)?
        .0
        .into_iter()
        .map(|(name, (shape, _))| TensorEntry {
            parameter: !is_buffer(&name),
            numel: shape.iter().product(),
            name,
            shape,
        })
        .collect();
    let parameters = tensors
        .iter()
        .filter(|t| t.parameter)
        .map(|t| t.numel)
        .sum();
    let buffers = tensors
        .iter()
        .filter(|t| !t.parameter)
        .map(|t| t.numel)
        .sum();
    Ok(Summary {
        parameters,
        buffers,
        tensors,
    })
}
