//! Saving a [`LlamaForCausalLM`] as a Hugging Face folder that transformers loads.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use half::{bf16, f16};
use safetensors::Dtype;
use serde_json::{json, Value};

use super::names::TensorPath;
use super::safetensors_files::{INDEX_FILE, SINGLE_FILE};
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
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
    let mut collector = Collector { path: TensorPath::default(), dtype: options.dtype, tensors: Vec::new() };
    model.visit(&mut collector);
    write_weights(out_dir, collector.tensors, options.max_shard_bytes)?;
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

/// One tensor ready for serialisation: key, dtype, shape, little-endian bytes.
struct SavedTensor {
    key: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &SavedTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Visits every parameter and converts it to checkpoint layout and dtype.
struct Collector {
    path: TensorPath,
    dtype: SaveDtype,
    tensors: Vec<SavedTensor>,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        let tensor = if self.path.is_linear_weight() { tensor.transpose() } else { tensor };
        let shape = tensor.dims().to_vec();
        // f32 conversion of backend data cannot fail for a float tensor.
        let values: Vec<f32> = tensor.into_data().convert::<f32>().into_vec().unwrap_or_default();
        let (dtype, bytes) = match self.dtype {
            SaveDtype::F32 => (Dtype::F32, bytemuck::cast_slice(&values).to_vec()),
            SaveDtype::F16 => {
                let v: Vec<f16> = values.iter().map(|x| f16::from_f32(*x)).collect();
                (Dtype::F16, bytemuck::cast_slice(&v).to_vec())
            }
            SaveDtype::BF16 => {
                let v: Vec<bf16> = values.iter().map(|x| bf16::from_f32(*x)).collect();
                (Dtype::BF16, bytemuck::cast_slice(&v).to_vec())
            }
        };
        self.tensors.push(SavedTensor { key: self.path.key(), dtype, shape, bytes });
    }
}

fn write_weights(out_dir: &Path, tensors: Vec<SavedTensor>, max_shard_bytes: usize) -> Result<()> {
    let mut shards: Vec<Vec<SavedTensor>> = vec![Vec::new()];
    let mut current = 0usize;
    for tensor in tensors {
        if current > 0 && current + tensor.bytes.len() > max_shard_bytes {
            shards.push(Vec::new());
            current = 0;
        }
        current += tensor.bytes.len();
        if let Some(shard) = shards.last_mut() {
            shard.push(tensor);
        }
    }
    let metadata = Some(std::collections::HashMap::from([("format".to_string(), "pt".to_string())]));
    let count = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut total = 0usize;
    for (i, shard) in shards.iter().enumerate() {
        let name = if count == 1 { SINGLE_FILE.to_string() } else { format!("model-{:05}-of-{count:05}.safetensors", i + 1) };
        let path = out_dir.join(&name);
        let views = shard.iter().map(|t| (t.key.clone(), t));
        let bytes = safetensors::serialize(views, metadata.clone())
            .map_err(|e| ModelError::Safetensors { path: path.clone(), message: e.to_string() })?;
        write(&path, &bytes)?;
        for t in shard {
            total += t.bytes.len();
            weight_map.insert(t.key.clone(), name.clone());
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
