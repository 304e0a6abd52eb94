//! Root-mean-square layer normalisation, as Llama computes it.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

/// RMSNorm: `x / sqrt(mean(x²) + eps) * weight`, the statistics taken in float32.
///
/// The field is named `weight` like the checkpoint key (`input_layernorm.weight`).
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Per-channel scale, shape `[d_model]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square before the square root.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// A norm with unit scale.
    pub fn new(d_model: usize, eps: f64, device: &B::Device) -> Self {
        Self { weight: Param::from_tensor(Tensor::ones([d_model], device)), eps }
    }

    /// Normalises over the last dimension.
    ///
    /// # Shapes
    /// - x: `[..., d_model]` → `[..., d_model]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let shape = x.shape();
        let d_model = shape[D - 1];
        // As `[rows, d_model]`, both products hit the backend's row-broadcast fast paths.
        let rows: Tensor<B, 2> = x.reshape([shape.num_elements() / d_model, d_model]);
        let dtype = rows.dtype();
        let rows = rows.cast(DType::F32);
        let inv_rms = (rows.clone().square().mean_dim(1) + self.eps).sqrt().recip();
        let normed = (rows * inv_rms).cast(dtype) * self.weight.val().unsqueeze::<2>();
        normed.reshape(shape)
    }
}
