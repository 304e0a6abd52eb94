//! The Llama-family decoder: embeddings, decoder layers, final norm and output projection.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Int, Tensor};

use crate::attention::{Attention, LayerInputs};
use crate::backend::KernelBackend;
use crate::config::LlamaConfig;
use crate::inputs::AttentionInputs;
use crate::kv_cache::{KvCache, LayerKv};
use crate::mlp::Mlp;
use crate::project::{project, DECODE_MAX_ROWS};
use crate::projection::{Projection, ProjectionConfig};
use crate::rms_norm::RmsNorm;
use crate::rope::RotaryEmbedding;

/// One pre-norm decoder layer: attention then MLP, each added to the residual stream.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Norm before attention.
    pub input_layernorm: RmsNorm<B>,
    /// Self-attention.
    pub self_attn: Attention<B>,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm<B>,
    /// Feed-forward block.
    pub mlp: Mlp<B>,
}

impl<B: KernelBackend> DecoderLayer<B> {
    /// # Shapes
    /// - x: `[batch, seq, d_model]` → `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>, shared: &LayerInputs<B>, cache: Option<&mut LayerKv<B>>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.input_layernorm.forward(x), shared, cache);
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }
}

/// The decoder stack (`model.*` keys in a checkpoint).
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    /// Token embeddings, `[vocab, d_model]`.
    pub embed_tokens: Embedding<B>,
    /// Decoder layers.
    pub layers: Vec<DecoderLayer<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// Rotary tables (constant tensors, not saved).
    pub rope: RotaryEmbedding<B>,
}

/// A causal language model: [`LlamaModel`] plus the output projection (`lm_head`).
#[derive(Module, Debug)]
pub struct LlamaForCausalLM<B: Backend> {
    /// The decoder stack.
    pub model: LlamaModel<B>,
    /// Output projection; `None` when tied to `model.embed_tokens`.
    pub lm_head: Option<Projection<B>>,
    /// The tied output projection's decoding copy, `[d_model, vocab]` (not saved; see
    /// [`LlamaForCausalLM::with_decode_dtype`]).
    pub tied_head_decode_copy: Option<Tensor<B, 2>>,
}

impl LlamaConfig {
    /// Builds a randomly initialised model (weights are lazy: loading replaces them unrealised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> LlamaForCausalLM<B> {
        let norm = || RmsNorm::new(self.hidden_size, self.rms_norm_eps, device);
        let layers = (0..self.num_hidden_layers)
            .map(|_| DecoderLayer {
                input_layernorm: norm(),
                self_attn: self.init_attention(device),
                post_attention_layernorm: norm(),
                mlp: self.init_mlp(device),
            })
            .collect();
        let embed_tokens = EmbeddingConfig::new(self.vocab_size, self.hidden_size)
            .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
            .init(device);
        let lm_head =
            (!self.tie_word_embeddings).then(|| ProjectionConfig::new(self.hidden_size, self.vocab_size).init(device));
        LlamaForCausalLM {
            model: LlamaModel { embed_tokens, layers, norm: norm(), rope: RotaryEmbedding::new(self, device) },
            lm_head,
            tied_head_decode_copy: None,
        }
    }
}

impl<B: KernelBackend> LlamaModel<B> {
    /// Final-norm hidden states for `tokens`, appending to `cache` when given.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` → `[batch, seq, d_model]`
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        inputs: &AttentionInputs<B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let mut x = self.embed_tokens.forward(tokens);
        let shared = match self.layers.first() {
            Some(layer) => LayerInputs::new(&self.rope, inputs, layer.self_attn.heads()),
            None => return self.norm.forward(x),
        };
        for (index, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[index]);
            x = layer.forward(x, &shared, layer_cache);
        }
        self.norm.forward(x)
    }
}

impl<B: KernelBackend> LlamaForCausalLM<B> {
    /// Logits for every position.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` → `[batch, seq, vocab]`
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        inputs: &AttentionInputs<B>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.logits(self.model.forward(tokens, inputs, cache))
    }

    /// Projects hidden states to vocabulary logits (through the embedding matrix when tied).
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, d_model]` → `[batch, seq, vocab]`
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => project(head, hidden),
            None => {
                let [batch, seq, d_model] = hidden.dims();
                // The embedding matrix through transposed strides, in 2-D products: the batched
                // `linear` path would copy all of it on every call.
                let embedding = self.model.embed_tokens.weight.val().transpose();
                let vocab = embedding.dims()[1];
                let rows = hidden.reshape([batch * seq, d_model]);
                let logits = match (batch * seq <= DECODE_MAX_ROWS, &self.tied_head_decode_copy) {
                    (true, Some(copy)) => B::decode_products(&rows, std::slice::from_ref(copy)).remove(0),
                    (true, None) => B::decode_products(&rows, std::slice::from_ref(&embedding)).remove(0),
                    (false, _) => rows.matmul(embedding),
                };
                logits.reshape([batch, seq, vocab])
            }
        }
    }

    /// The same model with decoding steps reading copies of its weights in `dtype` (`None`: the
    /// weights themselves). Prefill and training keep the full-precision weights.
    ///
    /// bf16 halves the bytes a CPU decoding step streams from memory, which bounds its speed;
    /// the products still sum in f32, but the weights keep 8 of their 24 significant bits, so
    /// logits shift slightly.
    pub fn with_decode_dtype(mut self, dtype: Option<FloatDType>) -> Self {
        let copy = |weight: &Tensor<B, 2>| dtype.map(|dtype| B::decode_copy(weight, dtype));
        for projection in self.all_projections_mut() {
            projection.decode_copy = copy(&projection.weight.val());
        }
        self.tied_head_decode_copy = match self.lm_head {
            Some(_) => None,
            None => copy(&self.model.embed_tokens.weight.val().transpose()),
        };
        self
    }

    /// An empty KV cache for this model, in the backend's choice of memory
    /// ([`KernelBackend::new_kv_cache`]).
    pub fn new_cache(&self) -> KvCache<B> {
        match self.model.layers.first() {
            Some(layer) => B::new_kv_cache(self.num_layers(), layer.self_attn.heads()),
            None => KvCache::new(0),
        }
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// Number of decoder layers (the length of a matching [`KvCache`]).
    pub fn num_layers(&self) -> usize {
        self.model.layers.len()
    }

    /// Every projection of the model: each layer's seven, then the output projection if untied.
    fn all_projections_mut(&mut self) -> impl Iterator<Item = &mut Projection<B>> {
        let layers = self.model.layers.iter_mut().flat_map(|layer| layer.projections_mut().map(|(_, p)| p));
        layers.chain(self.lm_head.as_mut())
    }

    /// Longest position the rotary tables cover.
    pub fn max_positions(&self) -> usize {
        self.model.rope.max_positions()
    }
}
