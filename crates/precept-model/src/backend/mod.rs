//! [`KernelBackend`]: the decoder's compute-heavy operations as a backend extension trait.
//!
//! Each method's default is written in burn operations and runs on every backend (CUDA, wgpu,
//! and `Autodiff` over them). A backend with faster kernels overrides them: the CPU backend
//! ([`burn::backend::Flex`], module `flex`) computes decoding-step products, SwiGLU and attention
//! over a host KV cache with precept-kernels, and gives `Autodiff<Flex>` SwiGLU and attention as
//! single graph nodes with hand-written backward passes. Which code runs is decided by the
//! backend type alone, at compile time.

mod flex;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::Autodiff;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, FloatDType, Tensor};

use crate::attention::LayerInputs;
use crate::kv_cache::KvCache;

/// The head layout of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (dividing `heads`).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl Heads {
    /// Query heads per key/value head.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// Backends with the decoder's kernels; the defaults use burn operations.
pub trait KernelBackend: Backend {
    /// `x·Wᵢ` for the few rows of a decoding step and each weight, with no gradients tracked.
    ///
    /// Each `Wᵢ` is `[d_in, d_outᵢ]`, stored so or a transposed view of `[d_outᵢ, d_in]`
    /// storage, in the model's float type or a lower-precision decoding copy
    /// ([`Self::decode_copy`]).
    ///
    /// # Shapes
    /// - x: `[rows, d_in]` → `[rows, d_outᵢ]` each
    fn decode_products(x: &Tensor<Self, 2>, weights: &[Tensor<Self, 2>]) -> Vec<Tensor<Self, 2>> {
        weights.iter().map(|weight| product(x, weight)).collect()
    }

    /// A copy of `weight` in `dtype` for [`Self::decode_products`] to read.
    fn decode_copy(weight: &Tensor<Self, 2>, dtype: FloatDType) -> Tensor<Self, 2> {
        weight.clone().cast(dtype)
    }

    /// `silu(gate) · up`.
    ///
    /// # Shapes
    /// - gate, up: `[batch, seq, width]` → `[batch, seq, width]`
    fn swiglu(gate: Tensor<Self, 3>, up: Tensor<Self, 3>) -> Tensor<Self, 3> {
        silu(gate) * up
    }

    /// Grouped-query attention over a whole sequence (no KV cache), in the projections' layout.
    ///
    /// # Shapes
    /// - q: `[batch, seq, heads·head_dim]`; k, v: `[batch, seq, kv_heads·head_dim]`
    /// - output: `[batch, seq, heads·head_dim]`
    fn attention(
        q: Tensor<Self, 3>,
        k: Tensor<Self, 3>,
        v: Tensor<Self, 3>,
        heads: Heads,
        shared: &LayerInputs<Self>,
    ) -> Tensor<Self, 3> {
        grouped_attention(q, split_heads(k, heads), split_heads(v, heads), heads, shared.grouped_mask())
    }

    /// An empty KV cache of `layers` layers for attention with `heads`.
    fn new_kv_cache(layers: usize, _heads: Heads) -> KvCache<Self> {
        KvCache::new(layers)
    }

    /// [`Self::swiglu`] of `Autodiff<Self, C>`.
    fn autodiff_swiglu<C: CheckpointStrategy>(
        gate: Tensor<Autodiff<Self, C>, 3>,
        up: Tensor<Autodiff<Self, C>, 3>,
    ) -> Tensor<Autodiff<Self, C>, 3> {
        silu(gate) * up
    }

    /// [`Self::attention`] of `Autodiff<Self, C>`.
    fn autodiff_attention<C: CheckpointStrategy>(
        q: Tensor<Autodiff<Self, C>, 3>,
        k: Tensor<Autodiff<Self, C>, 3>,
        v: Tensor<Autodiff<Self, C>, 3>,
        heads: Heads,
        shared: &LayerInputs<Autodiff<Self, C>>,
    ) -> Tensor<Autodiff<Self, C>, 3> {
        grouped_attention(q, split_heads(k, heads), split_heads(v, heads), heads, shared.grouped_mask())
    }
}

/// Training, and inference under autodiff, take the inner backend's kernels.
impl<B: KernelBackend, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {
    fn swiglu(gate: Tensor<Self, 3>, up: Tensor<Self, 3>) -> Tensor<Self, 3> {
        B::autodiff_swiglu(gate, up)
    }

    fn attention(
        q: Tensor<Self, 3>,
        k: Tensor<Self, 3>,
        v: Tensor<Self, 3>,
        heads: Heads,
        shared: &LayerInputs<Self>,
    ) -> Tensor<Self, 3> {
        B::autodiff_attention(q, k, v, heads, shared)
    }
}

#[cfg(feature = "cuda")]
impl KernelBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl KernelBackend for burn::backend::Wgpu {}

/// burn's `x·w`, in `x`'s float type (`w` may be a decoding copy in another).
pub(crate) fn product<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Tensor<B, 2> {
    match w.dtype() == x.dtype() {
        true => x.clone().matmul(w.clone()),
        false => x.clone().matmul(w.clone().cast(x.dtype())),
    }
}

/// `[batch, seq, kv_heads·head_dim] → [batch, kv_heads, seq, head_dim]`.
pub(crate) fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: Heads) -> Tensor<B, 4> {
    let [batch, seq, _] = x.dims();
    x.reshape([batch, seq, heads.kv_heads, heads.head_dim]).swap_dims(1, 2)
}

/// burn's attention with query heads grouped under their key/value head
/// (`[batch, kv_heads, group·seq, head_dim]`), so keys and values are never copied per query head.
///
/// # Shapes
/// - q: `[batch, seq, heads·head_dim]`; k, v: `[batch, kv_heads, total, head_dim]`
/// - mask: `[batch, kv_heads, group·seq, total]`, `true` where a query must not see a key
/// - output: `[batch, seq, heads·head_dim]`
pub(crate) fn grouped_attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    heads: Heads,
    mask: Option<Tensor<B, 4, Bool>>,
) -> Tensor<B, 3> {
    let [batch, seq, _] = q.dims();
    let (group, Heads { heads, kv_heads, head_dim }) = (heads.group(), heads);
    let q = q.reshape([batch, seq, kv_heads, group, head_dim]).permute([0, 2, 3, 1, 4]).reshape([
        batch,
        kv_heads,
        group * seq,
        head_dim,
    ]);
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
    attention(q, k, v, mask, None, options)
        .reshape([batch, kv_heads, group, seq, head_dim])
        .permute([0, 3, 1, 2, 4])
        .reshape([batch, seq, heads * head_dim])
}
