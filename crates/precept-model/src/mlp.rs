//! The SwiGLU feed-forward block.

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::config::LlamaConfig;
use crate::fused::training_kernels;
use crate::host::{from_host, host_kernels, host_values};
use crate::host_math::swiglu_in_place;
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

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// - x: `[batch, seq, d_model]` → `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [gate, up] = project_many([&self.gate_proj, &self.up_proj], x);
        let hidden = match training_kernels::<B>() {
            _ if host_kernels::<B>() => swiglu_on_host(gate, up),
            Some(kernels) => (kernels.swiglu)(gate, up),
            None => silu(gate) * up,
        };
        project(&self.down_proj, hidden)
    }
}

/// `silu(gate) * up` computed in host memory ([`crate::set_host_kernels`]).
fn swiglu_on_host<B: Backend>(gate: Tensor<B, 3>, up: Tensor<B, 3>) -> Tensor<B, 3> {
    let (shape, device) = (gate.dims(), gate.device());
    let mut values = host_values(gate);
    swiglu_in_place(&mut values, &host_values(up));
    from_host(values, shape, &device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    #[test]
    fn swiglu_on_host_equals_the_backends_silu_times_up() {
        let _rng = crate::lock_backend_rng();
        let device = Default::default();
        let gate = Tensor::<Flex, 3>::random([2, 5, 96], Distribution::Normal(0.0, 4.0), &device);
        let up = Tensor::<Flex, 3>::random([2, 5, 96], Distribution::Normal(0.0, 1.0), &device);
        let expected = silu(gate.clone()) * up.clone();
        let difference = (swiglu_on_host(gate, up) - expected).abs().max().into_scalar();
        assert!(difference < 1e-5, "{difference}");
    }
}
