//! The SwiGLU feed-forward block.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::config::LlamaConfig;
use crate::project::{project, project_many};

/// `down_proj(silu(gate_proj(x)) * up_proj(x))`, fields named like the checkpoint keys.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Gate projection, `d_model → intermediate`.
    pub gate_proj: Linear<B>,
    /// Up projection, `d_model → intermediate`.
    pub up_proj: Linear<B>,
    /// Down projection, `intermediate → d_model`.
    pub down_proj: Linear<B>,
}

impl LlamaConfig {
    /// Builds one MLP block with `N(0, 0.02)` weights.
    pub fn init_mlp<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        let (d, i, bias) = (self.hidden_size, self.intermediate_size, self.mlp_bias);
        Mlp {
            gate_proj: self.linear_config(d, i, bias).init(device),
            up_proj: self.linear_config(d, i, bias).init(device),
            down_proj: self.linear_config(i, d, bias).init(device),
        }
    }
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// - x: `[batch, seq, d_model]` → `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [gate, up] = project_many([&self.gate_proj, &self.up_proj], x);
        project(&self.down_proj, silu(gate) * up)
    }
}
