//! [`ModelSize`]: what a Llama-family decoder of given sizes needs in memory, computed with
//! checked arithmetic before anything is allocated, so that a config claiming a million layers
//! or a context of 2^31 positions is an error naming the file rather than an aborted allocation.
//!
//! Configs come from `config.json` (precept-model) and from GGUF metadata (precept-gguf); both
//! check their sizes here.

use std::path::Path;

use crate::error::{DataError, Result};

/// The sizes of a Llama-family decoder that decide its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSize {
    /// Number of token ids.
    pub vocab_size: u64,
    /// Width of the residual stream.
    pub hidden_size: u64,
    /// Width of the MLP.
    pub intermediate_size: u64,
    /// Number of decoder layers.
    pub num_hidden_layers: u64,
    /// Number of query heads.
    pub num_attention_heads: u64,
    /// Number of key/value heads.
    pub num_key_value_heads: u64,
    /// Width of one attention head.
    pub head_dim: u64,
    /// Positions the rotary tables cover (`max_position_embeddings`).
    pub max_position_embeddings: u64,
    /// Whether the output projection reuses the embedding matrix.
    pub tie_word_embeddings: bool,
}

/// Bytes of one float32 value, the precision weights are held in.
const F32_BYTES: u64 = 4;

impl ModelSize {
    /// Number of weights, optional biases aside (a few per mille at most); `None` on overflow.
    pub fn parameters(&self) -> Option<u64> {
        let h = self.hidden_size;
        let q = self.num_attention_heads.checked_mul(self.head_dim)?;
        let kv = self.num_key_value_heads.checked_mul(self.head_dim)?;
        // q, k, v and o; gate, up and down; two norms.
        let attention = h.checked_mul(q.checked_add(kv.checked_mul(2)?)?)?.checked_add(q.checked_mul(h)?)?;
        let mlp = h.checked_mul(self.intermediate_size)?.checked_mul(3)?;
        let layer = attention.checked_add(mlp)?.checked_add(h.checked_mul(2)?)?;
        let embedding = self.vocab_size.checked_mul(h)?;
        let head = if self.tie_word_embeddings { 0 } else { embedding };
        layer.checked_mul(self.num_hidden_layers)?.checked_add(embedding)?.checked_add(head)?.checked_add(h)
    }

    /// Number of values in the rotary `cos` and `sin` tables; `None` on overflow.
    pub fn rotary_values(&self) -> Option<u64> {
        self.max_position_embeddings.checked_mul(self.head_dim)?.checked_mul(2)
    }

    /// Bytes the weights and rotary tables take in float32; `None` on overflow.
    pub fn f32_bytes(&self) -> Option<u64> {
        self.parameters()?.checked_add(self.rotary_values()?)?.checked_mul(F32_BYTES)
    }

    /// Checks that a model of these sizes fits in this machine's memory; `source` is the file
    /// the sizes came from. Returns the bytes it needs.
    pub fn check(&self, source: &Path) -> Result<u64> {
        self.check_against(source, host_memory())
    }

    /// [`ModelSize::check`] against `memory` bytes.
    pub fn check_against(&self, source: &Path, memory: u64) -> Result<u64> {
        let too_large = |needed| DataError::ModelTooLarge {
            path: source.to_path_buf(),
            sizes: self.describe(),
            needed,
            memory: gib(memory),
        };
        match self.f32_bytes() {
            None => Err(too_large("more than 2^64 bytes".into())),
            Some(bytes) if bytes > memory => Err(too_large(gib(bytes))),
            Some(bytes) => Ok(bytes),
        }
    }

    /// The sizes that dominate memory, as a config names them.
    fn describe(&self) -> String {
        format!(
            "num_hidden_layers = {}, hidden_size = {}, intermediate_size = {}, vocab_size = {}, \
             max_position_embeddings = {}",
            self.num_hidden_layers,
            self.hidden_size,
            self.intermediate_size,
            self.vocab_size,
            self.max_position_embeddings
        )
    }
}

/// Total memory of this machine in bytes (`u64::MAX` where the platform does not say).
pub fn host_memory() -> u64 {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    match system.total_memory() {
        0 => u64::MAX,
        bytes => bytes,
    }
}

/// `bytes` in GiB with one decimal, for messages.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> ModelSize {
        ModelSize {
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: 64,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
        }
    }

    #[test]
    fn smollm2_has_its_published_parameter_count() {
        // 134,515,008 parameters, as `sum(p.numel() for p in model.parameters())` reports.
        assert_eq!(smollm2().parameters(), Some(134_515_008));
        assert!(smollm2().check_against(Path::new("config.json"), 8 << 30).is_ok());
    }

    #[test]
    fn a_million_layers_is_an_error_naming_the_memory_it_would_need() {
        let size = ModelSize { num_hidden_layers: 1_000_000, ..smollm2() };
        let err = size.check_against(Path::new("m/config.json"), 128 << 30).unwrap_err().to_string();
        assert!(err.starts_with("m/config.json: this model (num_hidden_layers = 1000000,"), "{err}");
        assert!(err.ends_with("needs 13188.0 GiB in float32 but this machine has 128.0 GiB"), "{err}");
    }

    #[test]
    fn rotary_tables_for_two_to_the_31_positions_are_counted() {
        let size = ModelSize { max_position_embeddings: 1 << 31, ..smollm2() };
        let err = size.check_against(Path::new("config.json"), 128 << 30).unwrap_err().to_string();
        assert!(err.contains("max_position_embeddings = 2147483648) needs 1024.5 GiB"), "{err}");
    }

    #[test]
    fn sizes_that_overflow_are_an_error_not_a_wrapped_count() {
        let size = ModelSize { hidden_size: u64::MAX / 2, ..smollm2() };
        let err = size.check_against(Path::new("config.json"), u64::MAX).unwrap_err().to_string();
        assert!(err.ends_with("needs more than 2^64 bytes in float32 but this machine has 17179869184.0 GiB"), "{err}");
    }
}
