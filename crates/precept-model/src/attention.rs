//! Grouped-query self-attention with rotary positions and an optional explicit KV cache.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor};

use crate::config::LlamaConfig;
use crate::fused::{training_kernels, Heads};
use crate::host::{from_host, host_values};
use crate::host_attention::{HostKv, HostShape};
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
    /// Attends over the cached keys followed by this call's keys.
    ///
    /// Query heads are grouped under their key/value head (`[batch, kv_heads, group·seq, head_dim]`)
    /// so grouped-query attention never copies keys or values per query head. Training with host
    /// kernels ([`crate::set_host_kernels`]) takes one fused operation instead, in the
    /// projections' own layout.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]` → `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>, shared: &LayerInputs<B>, cache: Option<&mut LayerKv<B>>) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (kv_heads, head_dim) = (self.num_kv_heads, self.head_dim);
        let group = self.num_heads / kv_heads;
        let [q, k, v] = project_many([&self.q_proj, &self.k_proj, &self.v_proj], x);
        let q = shared.q.apply(q);
        let k = shared.k.apply(k);
        if let (None, Some(kernels)) = (&cache, training_kernels::<B>()) {
            let heads = Heads { heads: self.num_heads, kv_heads, head_dim };
            let out = (kernels.attention)(q, k, v, heads, shared.host_mask.as_deref());
            return project(&self.o_proj, out);
        }
        let (k, v) = match cache {
            Some(cache) => match cache.host_mut() {
                Some(host) => return project(&self.o_proj, self.attend_on_host(q, k, v, host, shared)),
                None => cache.append(self.kv_heads(k), self.kv_heads(v)),
            },
            None => (self.kv_heads(k), self.kv_heads(v)),
        };
        let q = q.reshape([batch, seq, kv_heads, group, head_dim]).permute([0, 2, 3, 1, 4]).reshape([
            batch,
            kv_heads,
            group * seq,
            head_dim,
        ]);
        let mask = shared.mask.clone();
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let out = attention(q, k, v, mask, None, options)
            .reshape([batch, kv_heads, group, seq, head_dim])
            .permute([0, 3, 1, 2, 4])
            .reshape([batch, seq, self.num_heads * head_dim]);
        project(&self.o_proj, out)
    }

    /// Appends `k` and `v` to `cache` and attends over it in host memory.
    ///
    /// # Shapes
    /// - q: `[batch, seq, heads·head_dim]`, k and v: `[batch, seq, kv_heads·head_dim]`
    /// - output: `[batch, seq, heads·head_dim]`
    fn attend_on_host(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        cache: &mut HostKv,
        shared: &LayerInputs<B>,
    ) -> Tensor<B, 3> {
        let [batch, seq, width] = q.dims();
        let device = q.device();
        cache.append(&host_values(k), &host_values(v), [batch, seq]);
        let shape = HostShape { batch, seq, heads: self.num_heads };
        let out = cache.attend(&host_values(q), shape, shared.host_mask.as_deref());
        from_host(out, [batch, seq, width], &device)
    }

    /// `[batch, seq, kv_heads·head_dim] → [batch, kv_heads, seq, head_dim]`.
    fn kv_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [batch, seq, _] = x.dims();
        x.reshape([batch, seq, self.num_kv_heads, self.head_dim]).swap_dims(1, 2)
    }
}

/// What every layer of one forward pass shares: the rotations of queries and keys, and the
/// attention mask laid out for grouped query heads, built once per pass and stored contiguously
/// (a broadcast view would be copied by the attention kernel in every layer).
#[derive(Debug, Clone)]
pub struct LayerInputs<B: Backend> {
    /// Rotations for the query heads.
    pub q: RotaryAngles<B>,
    /// Rotations for the key heads.
    pub k: RotaryAngles<B>,
    /// `true` where a query must not see a key, `[batch, kv_heads, group·seq, cached + seq]`, rows
    /// in the grouped query layout `Attention::forward` uses; `None` when every query sees every
    /// key or the pass attends on the host.
    pub mask: Option<Tensor<B, 4, Bool>>,
    /// The same mask as `[batch, seq, cached + seq]` host values, for a pass that attends over a
    /// host cache ([`HostKv`]) or trains with host kernels; `None` when every query sees every
    /// key or the pass does neither.
    pub host_mask: Option<Vec<bool>>,
}

impl<B: Backend> LayerInputs<B> {
    /// The shared inputs of a pass with `inputs`, for attention with `heads` query heads over
    /// `kv_heads` key/value heads, over a host cache when `on_host`.
    pub fn new(
        rope: &RotaryEmbedding<B>,
        inputs: &AttentionInputs<B>,
        [heads, kv_heads]: [usize; 2],
        on_host: bool,
    ) -> Self {
        let (q, k) = (rope.angles(&inputs.positions, heads), rope.angles(&inputs.positions, kv_heads));
        let host_mask = || {
            inputs.mask.clone().map(|mask| {
                // A boolean tensor's data always reads back as booleans.
                mask.into_data().into_vec::<bool>().unwrap_or_else(|e| unreachable!("{e:?}"))
            })
        };
        if on_host {
            return Self { q, k, mask: None, host_mask: host_mask() };
        }
        let host_mask = training_kernels::<B>().and_then(|_| host_mask());
        let group = heads / kv_heads;
        let mask = inputs.mask.clone().map(|mask| {
            let [batch, _, seq, total] = mask.dims();
            let grouped = mask.unsqueeze_dim::<5>(2).expand([batch, 1, group, seq, total]).reshape([
                batch,
                1,
                group * seq,
                total,
            ]);
            Tensor::cat(vec![grouped; kv_heads], 1)
        });
        Self { q, k, mask, host_mask }
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
        let shared = LayerInputs::new(&rope, &inputs, [heads, kv_heads], false);
        let source: Vec<bool> = inputs.mask.clone().unwrap().into_data().to_vec().unwrap();
        let mask = shared.mask.unwrap();
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
