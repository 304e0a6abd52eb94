//! GGUF for precept: llama.cpp model files read, dequantised and imported into Hugging Face
//! folders. No burn: this crate sees tensors only as `f32` slices.
//!
//! - [`GgufFile::open`] memory-maps a file and parses its header, checking every count and offset
//!   against the file size before allocating; [`GgufMetadata`] gives typed access to the
//!   key/values and [`TensorInfo`] describes each tensor.
//! - [`dequantize`] decodes F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K
//!   blocks to `f32` exactly as ggml's reference code does.
//! - [`tokenizer_json`] rebuilds a Hugging Face `tokenizer.json` from the `tokenizer.ggml.*`
//!   metadata (byte-level BPE for `gpt2` vocabularies, byte-fallback BPE for SentencePiece
//!   `llama` ones); [`tokenizer_config_json`] and [`generation_config_json`] carry the special
//!   tokens, chat template and limits; [`config_json`] writes the model's `config.json`.
//! - [`import_gguf`] ties it together: tensors are renamed to Hugging Face keys, dequantised to
//!   `f32`, q/k rows un-permuted from llama.cpp's rotary layout, and streamed into
//!   `model.safetensors` beside the JSON files, every file written atomically.
//!
//! ```text
//! file.gguf ──GgufFile::open──> GgufMetadata + [TensorInfo] ──import_gguf──> config.json,
//!           tokenizer.json, tokenizer_config.json, generation_config.json, model.safetensors
//! ```
//!
//! Every failure is a [`GgufError`] naming the file and the metadata key or tensor involved.

mod dequant;
mod error;
mod file;
mod ggml_type;
mod hf_config;
mod import;
mod kquants;
mod reader;
mod spm;
#[cfg(test)]
mod testing;
mod tokenizer;
mod tokenizer_config;
mod value;

pub use dequant::dequantize;
pub use error::{GgufError, Result};
pub use file::GgufFile;
pub use ggml_type::GgmlType;
pub use hf_config::config_json;
pub use import::{hf_tensor_name, import_gguf, unpermute_rows, ImportSummary};
pub use reader::{TensorInfo, DEFAULT_ALIGNMENT};
pub use tokenizer::tokenizer_json;
pub use tokenizer_config::{generation_config_json, tokenizer_config_json};
pub use value::{GgufArray, GgufMetadata, GgufValue};
