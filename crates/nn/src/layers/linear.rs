//! `nn.Linear` with PyTorch's layout and initialisation: weight `[out, in]`, bias `[out]`, both
//! U(±1/√in). Applies to the last axis of a tensor of any rank, through [`crate::ops::linear`]
//! (repux's GEMM, so `--precision bf16` reaches it).

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

#[derive(Module, Debug)]
pub struct Linear {
    /// `[out, in]`, as PyTorch stores it (so checkpoints import without transposes).
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    pub fn new(cin: usize, cout: usize, bias: bool, device: &Device) -> Self {
        let b = 1.0 / (cin as f64).sqrt();
        Linear {
            weight: Param::from_tensor(Tensor::random(
                [cout, cin],
                Distribution::Uniform(-b, b),
                device,
            )),
            bias: bias.then(|| {
                Param::from_tensor(Tensor::random([cout], Distribution::Uniform(-b, b), device))
            }),
        }
    }

    /// `[…, in] → […, out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut dims = x.dims();
        let [cout, cin] = self.weight.dims();
        let rows = dims[..D - 1].iter().product::<usize>();
        let y = crate::ops::linear(
            x.reshape([rows, cin]),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        dims[D - 1] = cout;
        y.reshape(dims)
    }
}
