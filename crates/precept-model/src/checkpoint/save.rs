//! Saving a [`LlamaForCausalLM`] as a Hugging Face folder that transformers loads.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use half::{bf16, f16};
use precept_data::{write_le, write_safetensors, TensorEntry};
use safetensors::Dtype;
use serde_json::{json, Value};

use super::names::{KeyOf, TensorPath};
use super::safetensors_files::{INDEX_FILE, SINGLE_FILE};
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::host::host_values;
use crate::model::LlamaForCausalLM;

/// Element type of saved weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveDtype {
    /// 32-bit floats (lossless for models computed in f32).
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

/// How to write a model folder.
#[derive(Debug, Clone)]
pub struct SaveOptions<'a> {
    /// Element type of the weights.
    pub dtype: SaveDtype,
    /// Largest shard in bytes; bigger models are split with a `model.safetensors.index.json`.
    pub max_shard_bytes: usize,
    /// A model folder whose tokenizer and generation files are copied, and whose config.json
    /// fields we do not model are kept.
    pub copy_from: Option<&'a Path>,
}

impl Default for SaveOptions<'_> {
    fn default() -> Self {
        Self { dtype: SaveDtype::F32, max_shard_bytes: 5 << 30, copy_from: None }
    }
}

/// Files copied from the source folder when present.
const COPIED_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

/// Writes `config.json`, the weights (sharded above `max_shard_bytes`) and the copied files.
/// Every file is written atomically.
pub fn save_model<B: Backend>(
    model: &LlamaForCausalLM<B>,
    config: &LlamaConfig,
    out_dir: &Path,
    options: &SaveOptions,
) -> Result<()> {
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::io(out_dir, e))?;
    let dtype = match options.dtype {
        SaveDtype::F32 => Dtype::F32,
        SaveDtype::F16 => Dtype::F16,
        SaveDtype::BF16 => Dtype::BF16,
    };
    if model.has_adapters() {
        return Err(ModelError::UnmergedAdapters { dir: out_dir.to_path_buf() });
    }
    write_weights(out_dir, collect(model, TensorPath::base_key, dtype), options.max_shard_bytes)?;
    write_config(config, out_dir, options)?;
    if let Some(source) = options.copy_from {
        for name in COPIED_FILES {
            let from = source.join(name);
            if from.is_file() {
                let bytes = std::fs::read(&from).map_err(|e| ModelError::io(&from, e))?;
                write(&out_dir.join(name), &bytes)?;
            }
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    precept_data::write_atomic(path, bytes).map_err(|e| ModelError::io(path, e))
}

/// A parameter in checkpoint layout (projection weights transposed back to `[d_out, d_in]`), as a
/// 2-D view whose data is read only while it is written.
pub(crate) struct SavedTensor<B: Backend> {
    entry: TensorEntry,
    tensor: Tensor<B, 2>,
}

/// The parameters of `model` that `key_of` names, under those keys, to be written as `dtype`.
pub(crate) fn collect<B: Backend>(model: &LlamaForCausalLM<B>, key_of: KeyOf, dtype: Dtype) -> Vec<SavedTensor<B>> {
    let mut collector = Collector { path: TensorPath::default(), key_of, dtype, tensors: Vec::new() };
    model.visit(&mut collector);
    collector.tensors
}

/// Writes `tensors` as one safetensors file, atomically.
pub(crate) fn write_single<B: Backend>(path: &Path, tensors: &[SavedTensor<B>]) -> Result<()> {
    let entries: Vec<TensorEntry> = tensors.iter().map(|t| t.entry.clone()).collect();
    write_safetensors(path, &entries, |index, out| write_tensor(&tensors[index], path, out))
}

/// Visits every parameter and records those `key_of` names.
struct Collector<B: Backend> {
    path: TensorPath,
    key_of: KeyOf,
    dtype: Dtype,
    tensors: Vec<SavedTensor<B>>,
}

impl<B: Backend> ModuleVisitor<B> for Collector<B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(name) = (self.key_of)(&self.path) else {
            return;
        };
        let tensor = param.val();
        let tensor = if self.path.is_transposed() { tensor.transpose() } else { tensor };
        let shape = tensor.dims().to_vec();
        let as_2d: Tensor<B, 2> = match D {
            2 => tensor.reshape([shape[0], shape[1]]),
            _ => tensor.reshape([1, shape.iter().product::<usize>()]),
        };
        let entry = TensorEntry { name, dtype: self.dtype, shape };
        self.tensors.push(SavedTensor { entry, tensor: as_2d });
    }
}

/// Writes one tensor's data in the entry's dtype.
fn write_tensor<B: Backend>(saved: &SavedTensor<B>, path: &Path, out: &mut dyn std::io::Write) -> Result<()> {
    // f32 conversion of backend data cannot fail for a float tensor.
    let values: Vec<f32> = host_values(saved.tensor.clone());
    let written = match saved.entry.dtype {
        Dtype::F16 => write_le(out, &values.iter().map(|x| f16::from_f32(*x)).collect::<Vec<_>>()),
        Dtype::BF16 => write_le(out, &values.iter().map(|x| bf16::from_f32(*x)).collect::<Vec<_>>()),
        _ => write_le(out, &values),
    };
    written.map_err(|e| ModelError::io(path, e))
}

fn write_weights<B: Backend>(out_dir: &Path, tensors: Vec<SavedTensor<B>>, max_shard_bytes: usize) -> Result<()> {
    let mut shards: Vec<Vec<SavedTensor<B>>> = vec![Vec::new()];
    let mut current = 0usize;
    for tensor in tensors {
        let len = tensor.entry.byte_len();
        if current > 0 && current + len > max_shard_bytes {
            shards.push(Vec::new());
            current = 0;
        }
        current += len;
        if let Some(shard) = shards.last_mut() {
            shard.push(tensor);
        }
    }
    let count = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut total = 0usize;
    for (i, shard) in shards.iter().enumerate() {
        let name =
            if count == 1 { SINGLE_FILE.to_string() } else { format!("model-{:05}-of-{count:05}.safetensors", i + 1) };
        write_single(&out_dir.join(&name), shard)?;
        for t in shard {
            total += t.entry.byte_len();
            weight_map.insert(t.entry.name.clone(), name.clone());
        }
    }
    if count > 1 {
        let index = json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
        write(&out_dir.join(INDEX_FILE), index.to_string().as_bytes())?;
    }
    Ok(())
}

/// config.json: the source's fields we do not model are kept, ours overwrite.
fn write_config(config: &LlamaConfig, out_dir: &Path, options: &SaveOptions) -> Result<()> {
    let mut fields = match options.copy_from.map(|dir| dir.join("config.json")) {
        Some(path) if path.is_file() => {
            let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
            serde_json::from_str::<serde_json::Map<String, Value>>(&text)
                .map_err(|e| ModelError::Json { path: path.clone(), message: e.to_string() })?
        }
        _ => serde_json::Map::new(),
    };
    let dtype = match options.dtype {
        SaveDtype::F32 => "float32",
        SaveDtype::F16 => "float16",
        SaveDtype::BF16 => "bfloat16",
    };
    if let Value::Object(ours) = config.to_hf_json(dtype) {
        fields.extend(ours);
    }
    let text = serde_json::to_string_pretty(&Value::Object(fields)).unwrap_or_default();
    write(&out_dir.join("config.json"), text.as_bytes())
}
