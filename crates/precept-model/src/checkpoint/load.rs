//! Loading a Hugging Face folder into a [`LlamaForCausalLM`].

use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::names::{KeyOf, TensorPath};
use super::safetensors_files::SafetensorsFiles;
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::model::LlamaForCausalLM;

/// Loads `dir/config.json` and the folder's safetensors weights onto `device`.
pub fn load_model<B: Backend>(dir: &Path, device: &B::Device) -> Result<(LlamaConfig, LlamaForCausalLM<B>)> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(ModelError::MissingFile { dir: dir.to_path_buf(), file: "config.json".into() });
    }
    let config = LlamaConfig::from_hf_file(&config_path)?;
    let files = SafetensorsFiles::open(dir)?;
    check_layers(&config, &files, &config_path)?;
    let model = load_weights(config.init(device), &files)?;
    Ok((config, model))
}

/// Refuses a config whose layer count differs from the checkpoint's before the model is built.
fn check_layers(config: &LlamaConfig, files: &SafetensorsFiles, config_path: &Path) -> Result<()> {
    let held = files.layer_count();
    if config.num_hidden_layers == held {
        return Ok(());
    }
    Err(ModelError::Config {
        path: config_path.to_path_buf(),
        field: "num_hidden_layers".into(),
        message: format!("{} but {} holds {held} layers", config.num_hidden_layers, files.describe()),
    })
}

/// Replaces every parameter of `model` (adapters aside) with the checkpoint tensor of the same key.
///
/// The model's random initialisation is lazy and never runs for replaced parameters.
pub fn load_weights<B: Backend>(model: LlamaForCausalLM<B>, files: &SafetensorsFiles) -> Result<LlamaForCausalLM<B>> {
    load_selected(model, files, TensorPath::base_key)
}

/// Replaces the parameters that `key_of` names with the checkpoint tensors of those keys.
pub(crate) fn load_selected<B: Backend>(
    model: LlamaForCausalLM<B>,
    files: &SafetensorsFiles,
    key_of: KeyOf,
) -> Result<LlamaForCausalLM<B>> {
    let mut loader = Loader { files, key_of, path: TensorPath::default(), error: None };
    let model = model.map(&mut loader);
    match loader.error {
        Some(error) => Err(error),
        None => Ok(model),
    }
}

/// A module mapper that swaps each parameter for its checkpoint tensor; the first error stops
/// further reads and is reported after the walk.
struct Loader<'a> {
    files: &'a SafetensorsFiles,
    key_of: KeyOf,
    path: TensorPath,
    error: Option<ModelError>,
}

impl<B: Backend> ModuleMapper<B> for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.error.is_some() {
            return param;
        }
        let Some(key) = (self.key_of)(&self.path) else {
            return param;
        };
        let mut shape = param.lazy_shape().dims::<D>().to_vec();
        let transpose = self.path.is_transposed();
        if transpose {
            shape.reverse();
        }
        match self.files.read_f32(&key, &shape) {
            Ok(mut values) => {
                if transpose {
                    // Projections multiply by a `[d_in, d_out]` weight; stored contiguous in
                    // that order, decoding steps run the backend's fastest one-row kernel and
                    // the forward pass makes no per-call copies.
                    values = transpose_2d(&values, shape[0], shape[1]);
                    shape.reverse();
                }
                let tensor = Tensor::<B, D>::from_data(TensorData::new(values, shape), &param.lazy_device());
                Param::initialized(param.id, tensor)
            }
            Err(error) => {
                self.error = Some(error);
                param
            }
        }
    }
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
fn transpose_2d(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (r, row) in values.chunks_exact(cols).enumerate() {
        for (c, &x) in row.iter().enumerate() {
            out[c * rows + r] = x;
        }
    }
    out
}
