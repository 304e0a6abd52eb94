//! The SwiGLU feed-forward block.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::backend::KernelBackend;
use crate::config::LlamaConfig;
use crate::project::{project, project_many};
use crate::projection::{Projection, ProjectionConfig};

/// `down_proj(silu(gate_proj(x)) * up_proj(x))`, fields named like the checkpoint keys.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Gate projection, `d_model → intermediate`.
    pub gate_proj: Projection<B>,
    /// Up projection, `d_model → intermediate`.
    pub up_proj: Projection<B>,
    /// Down projection, `intermediate → d_model`.
    pub down_proj: Projection<B>,
}

impl LlamaConfig {
    /// Builds one MLP block with `N(0, 0.02)` weights.
    pub fn init_mlp<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        let (d, i, bias) = (self.hidden_size, self.intermediate_size, self.mlp_bias);
        Mlp {
            gate_proj: ProjectionConfig::new(d, i).with_bias(bias).init(device),
            up_proj: ProjectionConfig::new(d, i).with_bias(bias).init(device),
            down_proj: ProjectionConfig::new(i, d).with_bias(bias).init(device),
        }
    }
}

impl<B: KernelBackend> Mlp<B> {
    /// # Shapes
    /// - x: `[batch, seq, d_model]` → `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [gate, up] = project_many([&self.gate_proj, &self.up_proj], x);
        project(&self.down_proj, B::swiglu(gate, up))
    }
}
