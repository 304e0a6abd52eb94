//! Hugging Face checkpoint folders: load and save `model.safetensors` (single or sharded).
//!
//! Module fields are named like checkpoint keys, so the mapping is the module path itself
//! (`names::TensorPath`); the only transformation is that projections store `[d_in, d_out]` where
//! checkpoints store `[d_out, d_in]`. LoRA adapters are saved apart, in PEFT's layout.

mod adapter;
mod load;
mod names;
mod safetensors_files;
mod save;

pub use adapter::{load_adapter, read_adapter_config, save_adapter, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
pub use load::{load_model, load_weights};
pub(crate) use names::TensorPath;
pub use names::{parameter_keys, ParameterKey};
pub use safetensors_files::SafetensorsFiles;
pub use save::{save_model, SaveDtype, SaveOptions};
