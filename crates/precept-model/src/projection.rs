//! [`Projection`]: the decoder's linear layers, `y = x·W + b`, with an optional LoRA adapter
//! beside the weight.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::lora::Lora;

/// Shape and initialisation of a [`Projection`].
#[derive(Config, Debug)]
pub struct ProjectionConfig {
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
    /// Whether the layer adds a bias.
    #[config(default = false)]
    pub bias: bool,
}

impl ProjectionConfig {
    /// A layer initialised like transformers' Llama: `N(0, 0.02)` weight, zero bias.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Projection<B> {
        let weight = Initializer::Normal { mean: 0.0, std: 0.02 }.init([self.d_in, self.d_out], device);
        let bias = self.bias.then(|| Initializer::Zeros.init([self.d_out], device));
        Projection { weight, bias, lora: None, decode_copy: None }
    }
}

/// A linear layer whose weight is stored `[d_in, d_out]` (checkpoints store its transpose), plus
/// an optional LoRA adapter added to its output.
///
/// The field names are the checkpoint keys' last parts (`q_proj.weight`, `q_proj.bias`).
#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    /// Weight, `[d_in, d_out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// Bias, `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Low-rank adapter trained beside the frozen weight.
    pub lora: Option<Lora<B>>,
    /// A lower-precision copy of the weight that decoding steps read instead (not saved; see
    /// [`crate::LlamaForCausalLM::with_decode_dtype`]).
    pub decode_copy: Option<Tensor<B, 2>>,
}

impl<B: Backend> Projection<B> {
    /// `x·W + b`, plus the adapter's `(α/r)·(x·A)·B` when present.
    ///
    /// # Shapes
    /// - x: `[rows, d_in]` → `[rows, d_out]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let product = x.clone().matmul(self.weight.val());
        self.finish(x, product)
    }

    /// `x·W + b + adapter(x)` from the product `x·W` computed elsewhere.
    ///
    /// # Shapes
    /// - x: `[rows, d_in]`, product: `[rows, d_out]` → `[rows, d_out]`
    pub(crate) fn finish(&self, x: Tensor<B, 2>, product: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = self.add_bias(product);
        match &self.lora {
            Some(lora) => y + lora.forward(x),
            None => y,
        }
    }

    /// The weight decoding steps read: the decoding copy when there is one.
    pub(crate) fn decode_weight(&self) -> Tensor<B, 2> {
        self.decode_copy.clone().unwrap_or_else(|| self.weight.val())
    }

    /// `y + b` when the layer has a bias.
    pub(crate) fn add_bias(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze(),
            None => y,
        }
    }

    /// `[d_in, d_out]`.
    pub fn dims(&self) -> [usize; 2] {
        self.weight.lazy_shape().dims()
    }
}
