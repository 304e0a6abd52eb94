//! [`KernelBackend`] for the CPU backend, [`Flex`]: its tensors live in host memory, so the
//! kernels of precept-kernels work on them in place or after one copy.
//!
//! - Decoding steps' products read the weights where they lie, f32 or bf16 ([`products`]).
//! - SwiGLU runs with a vectorised `exp`, and the KV cache grows in host memory, where attention
//!   reads it ([`precept_kernels::host_attention::HostKv`]).
//! - Under autodiff, SwiGLU and attention are single graph nodes with hand-written backward
//!   passes ([`fused_swiglu`], [`fused_attention`]); the composed versions walk their tensors
//!   a dozen times, and every step allocates, records a node and has its own backward pass.

mod fused_attention;
mod fused_swiglu;
mod products;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{FloatDType, Tensor};
use precept_kernels::host_math::swiglu_in_place;

use super::{Heads, KernelBackend};
use crate::attention::LayerInputs;
use crate::host::{from_host, host_values};
use crate::kv_cache::KvCache;

impl KernelBackend for Flex {
    fn decode_products(x: &Tensor<Self, 2>, weights: &[Tensor<Self, 2>]) -> Vec<Tensor<Self, 2>> {
        products::decode_products(x, weights)
    }

    fn decode_copy(weight: &Tensor<Self, 2>, dtype: FloatDType) -> Tensor<Self, 2> {
        products::decode_copy(weight, dtype)
    }

    fn swiglu(gate: Tensor<Self, 3>, up: Tensor<Self, 3>) -> Tensor<Self, 3> {
        let (shape, device) = (gate.dims(), gate.device());
        let mut values = host_values(gate);
        swiglu_in_place(&mut values, &host_values(up));
        from_host(values, shape, &device)
    }

    fn new_kv_cache(layers: usize, heads: Heads) -> KvCache<Self> {
        KvCache::on_host(layers, heads.kv_heads, heads.head_dim)
    }

    fn autodiff_swiglu<C: CheckpointStrategy>(
        gate: Tensor<Autodiff<Self, C>, 3>,
        up: Tensor<Autodiff<Self, C>, 3>,
    ) -> Tensor<Autodiff<Self, C>, 3> {
        fused_swiglu::swiglu(gate, up)
    }

    fn autodiff_attention<C: CheckpointStrategy>(
        q: Tensor<Autodiff<Self, C>, 3>,
        k: Tensor<Autodiff<Self, C>, 3>,
        v: Tensor<Autodiff<Self, C>, 3>,
        heads: Heads,
        shared: &LayerInputs<Autodiff<Self, C>>,
    ) -> Tensor<Autodiff<Self, C>, 3> {
        fused_attention::attention(q, k, v, heads, shared.host_mask())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::silu;
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn swiglu_on_host_equals_the_backends_silu_times_up() {
        let _rng = crate::lock_backend_rng();
        let device = Default::default();
        let gate = Tensor::<Flex, 3>::random([2, 5, 96], Distribution::Normal(0.0, 4.0), &device);
        let up = Tensor::<Flex, 3>::random([2, 5, 96], Distribution::Normal(0.0, 1.0), &device);
        let expected = silu(gate.clone()) * up.clone();
        let difference = (Flex::swiglu(gate, up) - expected).abs().max().into_scalar();
        assert!(difference < 1e-5, "{difference}");
    }
}
