//! Grouped-query self-attention with rotary positions and an optional explicit KV cache.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::Tensor;

use crate::config::LlamaConfig;
use crate::inputs::AttentionInputs;
use crate::kv_cache::LayerKv;
use crate::rope::RotaryEmbedding;

/// Multi-head attention where `num_heads / num_kv_heads` query heads share each key/value head.
///
/// Fields are named like the checkpoint keys (`self_attn.q_proj`, …).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query projection, `d_model → heads·head_dim`.
    pub q_proj: Linear<B>,
    /// Key projection, `d_model → kv_heads·head_dim`.
    pub k_proj: Linear<B>,
    /// Value projection, `d_model → kv_heads·head_dim`.
    pub v_proj: Linear<B>,
    /// Output projection, `heads·head_dim → d_model`.
    pub o_proj: Linear<B>,
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
        let linear = |d_in, d_out, bias| self.linear_config(d_in, d_out, bias).init(device);
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

    /// A linear layer initialised like transformers' Llama (`N(0, 0.02)`, zero bias).
    pub(crate) fn linear_config(&self, d_in: usize, d_out: usize, bias: bool) -> LinearConfig {
        LinearConfig::new(d_in, d_out)
            .with_bias(bias)
            .with_initializer(burn::nn::Initializer::Normal { mean: 0.0, std: 0.02 })
    }
}

impl<B: Backend> Attention<B> {
    /// Attends over the cached keys followed by this call's keys.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]` → `[batch, seq, d_model]`
    /// - `inputs.mask`: `[batch, 1, seq, cached + seq]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RotaryEmbedding<B>,
        inputs: &AttentionInputs<B>,
        cache: Option<&mut LayerKv<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let q = rope.apply(self.heads(self.q_proj.forward(x.clone()), self.num_heads), &inputs.positions);
        let k = rope.apply(self.heads(self.k_proj.forward(x.clone()), self.num_kv_heads), &inputs.positions);
        let v = self.heads(self.v_proj.forward(x), self.num_kv_heads);
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let total = k.dims()[2];
        let mask = inputs.mask.clone().expand([batch, self.num_heads, seq, total]);
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let out = attention(q, self.share_kv(k), self.share_kv(v), Some(mask), None, options);
        self.o_proj.forward(out.swap_dims(1, 2).reshape([batch, seq, self.num_heads * self.head_dim]))
    }

    /// `[batch, seq, heads·head_dim] → [batch, heads, seq, head_dim]`.
    fn heads(&self, x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
        let [batch, seq, _] = x.dims();
        x.reshape([batch, seq, heads, self.head_dim]).swap_dims(1, 2)
    }

    /// Repeats each key/value head for the query heads of its group (GQA).
    fn share_kv(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let group = self.num_heads / self.num_kv_heads;
        if group == 1 {
            return x;
        }
        let [batch, kv_heads, seq, head_dim] = x.dims();
        x.unsqueeze_dim::<5>(2)
            .expand([batch, kv_heads, group, seq, head_dim])
            .reshape([batch, kv_heads * group, seq, head_dim])
    }
}
