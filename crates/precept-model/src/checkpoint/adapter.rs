//! PEFT adapter folders: `adapter_config.json` plus `adapter_model.safetensors` with PEFT's keys
//! (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, …), so PEFT, vLLM and
//! mistral.rs load what precept trains, and precept loads theirs.

use std::path::Path;

use burn::tensor::backend::Backend;
use safetensors::Dtype;
use serde_json::{json, Value};

use super::load::load_selected;
use super::names::TensorPath;
use super::safetensors_files::SafetensorsFiles;
use super::save::{collect, write_single};
use crate::error::{ModelError, Result};
use crate::lora::{LoraConfig, Trainable};
use crate::model::LlamaForCausalLM;

/// The adapter's settings file.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's weights file.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Writes the adapters of `model` to `out_dir` in PEFT's layout, in float32. `base_model` is
/// recorded as `base_model_name_or_path`.
pub fn save_adapter<B: Backend>(
    model: &LlamaForCausalLM<B>,
    config: &LoraConfig,
    base_model: &str,
    out_dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::io(out_dir, e))?;
    let tensors = collect(model, TensorPath::peft_key, Dtype::F32);
    write_single(&out_dir.join(ADAPTER_WEIGHTS_FILE), &tensors)?;
    let settings = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "use_rslora": config.use_rslora,
        "target_modules": config.target_modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
    });
    let path = out_dir.join(ADAPTER_CONFIG_FILE);
    let text = serde_json::to_string_pretty(&settings).unwrap_or_default();
    precept_data::write_atomic(&path, text.as_bytes()).map_err(|e| ModelError::io(&path, e))
}

/// Adds the adapters saved in `dir` to `model` (which must not have any yet); only the adapters
/// track gradients afterwards.
pub fn load_adapter<B: Backend>(model: LlamaForCausalLM<B>, dir: &Path) -> Result<(LlamaForCausalLM<B>, LoraConfig)> {
    let config = read_adapter_config(&dir.join(ADAPTER_CONFIG_FILE))?;
    let weights = dir.join(ADAPTER_WEIGHTS_FILE);
    if !weights.is_file() {
        return Err(ModelError::MissingFile { dir: dir.to_path_buf(), file: ADAPTER_WEIGHTS_FILE.into() });
    }
    let files = SafetensorsFiles::open_file(&weights)?;
    let model = load_selected(model.with_lora(&config)?, &files, TensorPath::peft_key)?;
    Ok((model.set_trainable(Trainable::Adapters), config))
}

/// Reads PEFT's `adapter_config.json`, refusing the variants precept does not implement.
pub fn read_adapter_config(path: &Path) -> Result<LoraConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| ModelError::Json { path: path.into(), message: e.to_string() })?;
    let field_error = |field: &str, message: &str| ModelError::Config {
        path: path.into(),
        field: field.into(),
        message: message.into(),
    };
    let require = |field: &str, ok: fn(&Value) -> bool, message: &str| match value.get(field) {
        Some(found) if !ok(found) => Err(field_error(field, message)),
        _ => Ok(()),
    };
    require("peft_type", |v| v == "LORA", "only LORA adapters are supported")?;
    require("use_dora", |v| v == false, "DoRA adapters are not supported")?;
    require("fan_in_fan_out", |v| v == false, "fan_in_fan_out adapters are not supported")?;
    require("bias", |v| v == "none", "adapters with trained biases are not supported")?;
    require("layers_to_transform", Value::is_null, "adapters on a subset of layers are not supported")?;
    let defaults = LoraConfig::default();
    let number = |field: &str| value.get(field).and_then(Value::as_f64);
    let r = match value.get("r") {
        None => defaults.r,
        Some(r) => r.as_u64().map(|r| r as usize).ok_or_else(|| field_error("r", "must be a positive integer"))?,
    };
    let target_modules = match value.get("target_modules") {
        None => return Err(field_error("target_modules", "is missing")),
        Some(Value::String(all)) if all == "all-linear" => defaults.target_modules.clone(),
        Some(Value::Array(names)) => names
            .iter()
            .map(|name| name.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| field_error("target_modules", "must be a list of module names"))?,
        Some(_) => return Err(field_error("target_modules", "must be a list of module names or \"all-linear\"")),
    };
    let config = LoraConfig {
        r,
        alpha: number("lora_alpha").unwrap_or(8.0),
        dropout: number("lora_dropout").unwrap_or(0.0),
        use_rslora: value.get("use_rslora").and_then(Value::as_bool).unwrap_or(false),
        target_modules,
    };
    config.validate().map_err(|error| match error {
        ModelError::Lora { field, message } => ModelError::Config { path: path.into(), field, message },
        other => other,
    })?;
    Ok(config)
}
