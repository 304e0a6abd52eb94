//! The model side of precept: a Llama-family decoder on burn and everything around it.
//!
//! - [`LlamaConfig`] reads a Hugging Face `config.json`; [`LlamaConfig::init`] builds a
//!   [`LlamaForCausalLM`], whose one `forward` maps token ids, [`AttentionInputs`] (positions and
//!   mask) and an optional explicit [`KvCache`] to full-sequence logits.
//! - [`checkpoint`] loads and saves Hugging Face folders (safetensors, sharded, f32/f16/bf16)
//!   and PEFT adapter folders; [`lora`] adds, freezes and merges the adapters.
//! - [`KernelBackend`] is the seam for faster kernels: its default methods (decoding-step
//!   products, SwiGLU, attention, the KV cache) use burn operations, and the CPU backend's
//!   implementation runs precept-kernels on host memory instead, with hand-written backward
//!   passes under autodiff.
//! - [`sampling`] and [`generate`] turn the model into a text generator, batched, which can
//!   start a prompt from the rows of the previous call it continues ([`ContinuationCache`]);
//!   [`LocalGenerator`] serves precept-data's `Generate` trait (conversations in, replies and
//!   option probabilities out) with it.

mod attention;
mod backend;
pub mod checkpoint;
mod config;
mod continuation;
mod error;
pub mod generate;
mod host;
mod inputs;
mod kv_cache;
mod local;
pub mod lora;
mod mlp;
mod model;
mod project;
mod projection;
mod rms_norm;
mod rope;
pub mod sampling;

pub use attention::{Attention, LayerInputs};
pub use backend::{Heads, KernelBackend};
pub use config::{Llama3RopeScaling, LlamaConfig};
pub use continuation::ContinuationCache;
pub use error::{ModelError, Result};
pub use host::{from_host, host_values};
pub use inputs::AttentionInputs;
pub use kv_cache::{KvCache, LayerKv, RowKv};
pub use local::LocalGenerator;
pub use mlp::Mlp;
pub use model::{DecoderLayer, LlamaForCausalLM, LlamaModel};
pub use projection::{Projection, ProjectionConfig};
pub use rms_norm::RmsNorm;
pub use rope::{RotaryAngles, RotaryEmbedding};

#[cfg(test)]
mod tests;

/// Holds the backend's global random generator for one test: a seeded draw (a tiny model's
/// weights) must not interleave with another test's draws, or the model depends on test timing.
#[cfg(test)]
pub(crate) fn lock_backend_rng() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
