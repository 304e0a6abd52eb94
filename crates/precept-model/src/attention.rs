//! Grouped-query self-attention with rotary positions and an optional explicit KV cache.

use std::cell::OnceCell;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use crate::backend::{Heads, KernelBackend};
use crate::config::LlamaConfig;
use crate::inputs::AttentionInputs;
use crate::kv_cache::LayerKv;
use crate::project::{project, project_many};
use crate::projection::{Projection, ProjectionConfig};
use crate::rope::{RotaryAngles, RotaryEmbedding};

/// Multi-head attention where `num_heads / num_kv_heads` query heads share each key/value head.
///
/// Fields are named like the checkpoint keys (`self_attn.q_proj`, …).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query projection, `d_model → heads·head_dim`.
    pub q_proj: Projection<B>,
    /// Key projection, `d_model → kv_heads·head_dim`.
    pub k_proj: Projection<B>,
    /// Value projection, `d_model → kv_heads·head_dim`.
    pub v_proj: Projection<B>,
    /// Output projection, `heads·head_dim → d_model`.
    pub o_proj: Projection<B>,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl LlamaConfig {
    /// Builds one attention block with `N(0, 0.02)` weights.
    pub fn init_attention<B: Backend>(&self, device: &B::Device) -> Attention<B> {
        let (d, hd) = (self.hidden_size, self.head_dim);
        let linear = |d_in, d_out, bias| ProjectionConfig::new(d_in, d_out).with_bias(bias).init(device);
        Attention {
            q_proj: linear(d, self.num_attention_heads * hd, self.qkv_bias),
            k_proj: linear(d, self.num_key_value_heads * hd, self.qkv_bias),
            v_proj: linear(d, self.num_key_value_heads * hd, self.qkv_bias),
            o_proj: linear(self.num_attention_heads * hd, d, self.o_bias),
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads,
            head_dim: hd,
        }
    }
}

impl<B: Backend> Attention<B> {
    /// The head layout.
    pub fn heads(&self) -> Heads {
        Heads { heads: self.num_heads, kv_heads: self.num_kv_heads, head_dim: self.head_dim }
    }
}

impl<B: KernelBackend> Attention<B> {
    /// Attends over the cached keys followed by this call's keys, or over this call's alone.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]` → `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>, shared: &LayerInputs<B>, cache: Option<&mut LayerKv<B>>) -> Tensor<B, 3> {
        let [q, k, v] = project_many([&self.q_proj, &self.k_proj, &self.v_proj], x);
        let (q, k) = (shared.q.apply(q), shared.k.apply(k));
        let out = match cache {
            Some(cache) => cache.attend(q, k, v, self.heads(), shared),
            None => <B as KernelBackend>::attention(q, k, v, self.heads(), shared),
        };
        project(&self.o_proj, out)
    }
}

/// What every layer of one forward pass shares: the rotations of queries and keys, and the
/// attention mask in the layouts attention asks for, each built once per pass on first use and
/// stored contiguously (a broadcast view would be copied by the attention kernel in every layer).
#[derive(Debug, Clone)]
pub struct LayerInputs<B: Backend> {
    /// Rotations for the query heads.
    pub q: RotaryAngles<B>,
    /// Rotations for the key heads.
    pub k: RotaryAngles<B>,
    /// `true` where a query must not see a key, `[batch, 1, seq, cached + seq]`; `None` when
    /// every query sees every key.
    mask: Option<Tensor<B, 4, Bool>>,
    /// Query and key/value heads.
    heads: Heads,
    /// [`Self::grouped_mask`], once built.
    grouped: OnceCell<Option<Tensor<B, 4, Bool>>>,
    /// [`Self::host_mask`], once read.
    host: OnceCell<Option<Vec<bool>>>,
}

impl<B: Backend> LayerInputs<B> {
    /// The shared inputs of a pass with `inputs`, for attention with `heads`.
    pub fn new(rope: &RotaryEmbedding<B>, inputs: &AttentionInputs<B>, heads: Heads) -> Self {
        Self {
            q: rope.angles(&inputs.positions, heads.heads),
            k: rope.angles(&inputs.positions, heads.kv_heads),
            mask: inputs.mask.clone(),
            heads,
            grouped: OnceCell::new(),
            host: OnceCell::new(),
        }
    }

    /// The mask with rows in the grouped query layout of burn's attention,
    /// `[batch, kv_heads, group·seq, cached + seq]`.
    pub fn grouped_mask(&self) -> Option<Tensor<B, 4, Bool>> {
        let build = || {
            let Heads { kv_heads, .. } = self.heads;
            let group = self.heads.group();
            self.mask.clone().map(|mask| {
                let [batch, _, seq, total] = mask.dims();
                let grouped = mask.unsqueeze_dim::<5>(2).expand([batch, 1, group, seq, total]).reshape([
                    batch,
                    1,
                    group * seq,
                    total,
                ]);
                Tensor::cat(vec![grouped; kv_heads], 1)
            })
        };
        self.grouped.get_or_init(build).clone()
    }

    /// The mask as `[batch, seq, cached + seq]` host values, for attention on host memory.
    pub fn host_mask(&self) -> Option<&[bool]> {
        let read = || {
            self.mask.clone().map(|mask| {
                // A boolean tensor's data always reads back as booleans.
                mask.into_data().into_vec::<bool>().unwrap_or_else(|e| unreachable!("{e:?}"))
            })
        };
        self.host.get_or_init(read).as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn the_shared_mask_repeats_each_query_row_for_every_head_of_its_group_and_every_kv_head() {
        let device = Default::default();
        let rope = RotaryEmbedding::<Flex>::new(&LlamaConfig::tiny(), &device);
        let inputs = AttentionInputs::left_padded(&[2, 0], 3, 1, &device);
        let [heads, kv_heads] = [6, 2];
        let shared = LayerInputs::new(&rope, &inputs, Heads { heads, kv_heads, head_dim: 4 });
        let source: Vec<bool> = inputs.mask.clone().unwrap().into_data().to_vec().unwrap();
        let mask = shared.grouped_mask().unwrap();
        let [batch, _, seq, total] = inputs.mask.unwrap().dims();
        let group = heads / kv_heads;
        assert_eq!(mask.dims(), [batch, kv_heads, group * seq, total]);
        let grouped: Vec<bool> = mask.into_data().to_vec().unwrap();
        for b in 0..batch {
            for h in 0..kv_heads {
                for g in 0..group {
                    for i in 0..seq {
                        let row = ((b * kv_heads + h) * group * seq + g * seq + i) * total;
                        let expected = (b * seq + i) * total;
                        assert_eq!(
                            grouped[row..row + total],
                            source[expected..expected + total],
                            "b {b} h {h} g {g} i {i}"
                        );
                    }
                }
            }
        }
    }
}
