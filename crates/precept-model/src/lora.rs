//! LoRA: low-rank adapters beside frozen projections (`y = x·W + (α/r)·(x·A)·B`), and the
//! transformations that add, freeze, and merge them.
//!
//! An adapter lives in [`Projection::lora`], so the model keeps one forward and its checkpoint
//! keys; PEFT's file layout is in [`crate::checkpoint::save_adapter`].

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint::TensorPath;
use crate::error::{ModelError, Result};
use crate::model::{DecoderLayer, LlamaForCausalLM};
use crate::projection::Projection;

/// The projections of a decoder layer that can carry adapters, by checkpoint name.
pub const PROJECTION_NAMES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// LoRA settings, named as PEFT's `LoraConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    pub r: usize,
    /// Scale numerator `α`: the update is multiplied by `α/r` (or `α/√r` with `use_rslora`).
    pub alpha: f64,
    /// Dropout on the adapter's input during training.
    pub dropout: f64,
    /// Rank-stabilised scaling `α/√r`.
    pub use_rslora: bool,
    /// Projections that get adapters (names from [`PROJECTION_NAMES`]).
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 16,
            alpha: 32.0,
            dropout: 0.0,
            use_rslora: false,
            target_modules: PROJECTION_NAMES.iter().map(|name| name.to_string()).collect(),
        }
    }
}

impl LoraConfig {
    /// The factor applied to `(x·A)·B`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Checks the settings against what a model offers.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &str, message: String| Err(ModelError::Lora { field: field.into(), message });
        if self.r == 0 {
            return invalid("r", "must be at least 1".into());
        }
        if !self.alpha.is_finite() {
            return invalid("alpha", format!("{} is not a finite number", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid("dropout", format!("{} is not in [0, 1)", self.dropout));
        }
        if self.target_modules.is_empty() {
            return invalid("target_modules", "is empty".into());
        }
        if let Some(unknown) = self.target_modules.iter().find(|name| !PROJECTION_NAMES.contains(&name.as_str())) {
            return invalid(
                "target_modules",
                format!("unknown module `{unknown}` (known: {})", PROJECTION_NAMES.join(", ")),
            );
        }
        Ok(())
    }

    /// A fresh adapter for a `[d_in, d_out]` projection: `A ~ U(±1/√d_in)` as PEFT's default
    /// Kaiming init, `B = 0`, so the adapted layer starts equal to the base.
    fn init<B: Backend>(&self, [d_in, d_out]: [usize; 2], device: &B::Device) -> Lora<B> {
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = Tensor::random([d_in, self.r], Distribution::Uniform(-bound, bound), device);
        Lora {
            a: Param::from_tensor(a),
            b: Param::from_tensor(Tensor::zeros([self.r, d_out], device)),
            scale: self.scale(),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

/// A low-rank update `scale·(dropout(x)·A)·B` added to a projection's output.
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    /// Down projection `A`, `[d_in, r]` (PEFT's `lora_A.weight` transposed).
    pub a: Param<Tensor<B, 2>>,
    /// Up projection `B`, `[r, d_out]` (PEFT's `lora_B.weight` transposed).
    pub b: Param<Tensor<B, 2>>,
    /// `α/r`, or `α/√r` with rsLoRA.
    pub scale: f64,
    /// Dropout on the adapter's input (active only while gradients are tracked).
    pub dropout: Dropout,
}

impl<B: Backend> Lora<B> {
    /// # Shapes
    /// - x: `[rows, d_in]` → `[rows, d_out]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.dropout.forward(x).matmul(self.a.val()).matmul(self.b.val()).mul_scalar(self.scale)
    }

    /// The dense update `scale·A·B`, `[d_in, d_out]`.
    fn delta(&self) -> Tensor<B, 2> {
        self.a.val().matmul(self.b.val()).mul_scalar(self.scale)
    }
}

/// Which parameters receive gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trainable {
    /// Every parameter (full fine-tuning).
    All,
    /// Only LoRA adapters; the base is frozen.
    Adapters,
}

impl<B: Backend> DecoderLayer<B> {
    /// The layer's projections with their checkpoint names.
    pub(crate) fn projections_mut(&mut self) -> [(&'static str, &mut Projection<B>); 7] {
        let attention = &mut self.self_attn;
        let mlp = &mut self.mlp;
        [
            ("q_proj", &mut attention.q_proj),
            ("k_proj", &mut attention.k_proj),
            ("v_proj", &mut attention.v_proj),
            ("o_proj", &mut attention.o_proj),
            ("gate_proj", &mut mlp.gate_proj),
            ("up_proj", &mut mlp.up_proj),
            ("down_proj", &mut mlp.down_proj),
        ]
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// Adds fresh adapters to the projections `config` targets and freezes everything else.
    ///
    /// The random `A` factors come from the backend's generator: seed it first for
    /// reproducible runs.
    pub fn with_lora(mut self, config: &LoraConfig) -> Result<Self> {
        config.validate()?;
        let device = self.model.embed_tokens.weight.device();
        for layer in &mut self.model.layers {
            for (name, projection) in layer.projections_mut() {
                if config.target_modules.iter().any(|target| target == name) {
                    projection.lora = Some(config.init(projection.dims(), &device));
                }
            }
        }
        Ok(self.set_trainable(Trainable::Adapters))
    }

    /// Whether any projection carries an adapter.
    pub fn has_adapters(&self) -> bool {
        self.model.layers.iter().any(|layer| {
            let (attention, mlp) = (&layer.self_attn, &layer.mlp);
            [&attention.q_proj, &attention.k_proj, &attention.v_proj, &attention.o_proj]
                .into_iter()
                .chain([&mlp.gate_proj, &mlp.up_proj, &mlp.down_proj])
                .any(|projection| projection.lora.is_some())
        })
    }

    /// Folds every adapter into its base weight (`W + scale·A·B`) and removes it.
    pub fn merge_lora(mut self) -> Self {
        for layer in &mut self.model.layers {
            for (_, projection) in layer.projections_mut() {
                if let Some(lora) = projection.lora.take() {
                    let merged = projection.weight.val() + lora.delta();
                    projection.weight = Param::initialized(projection.weight.id, merged);
                }
            }
        }
        self
    }

    /// The base model alone: every adapter removed, unmerged (what PEFT's `disable_adapter`
    /// computes). The base weights are shared, not copied.
    pub fn without_lora(mut self) -> Self {
        for layer in &mut self.model.layers {
            for (_, projection) in layer.projections_mut() {
                projection.lora = None;
            }
        }
        self
    }

    /// Sets which parameters track gradients (a no-op on backends without autodiff).
    pub fn set_trainable(self, trainable: Trainable) -> Self {
        self.map(&mut GradientSwitch { trainable, path: TensorPath::default() })
    }
}

/// Turns gradient tracking on or off per parameter.
struct GradientSwitch {
    trainable: Trainable,
    path: TensorPath,
}

impl<B: Backend> ModuleMapper<B> for GradientSwitch {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let trains = match self.trainable {
            Trainable::All => true,
            Trainable::Adapters => self.path.is_adapter(),
        };
        param.set_require_grad(trains)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Int, TensorData};

    use super::*;
    use crate::checkpoint::{load_adapter, read_adapter_config, save_adapter, ADAPTER_WEIGHTS_FILE};
    use crate::{AttentionInputs, LlamaConfig};

    type B = Flex;

    /// A tiny model with its lazy weights realised (by a forward pass), so clones are equal.
    fn tiny() -> LlamaForCausalLM<B> {
        B::seed(&Default::default(), 7);
        let model = LlamaConfig::tiny().init(&Default::default());
        logits(&model);
        model
    }

    fn logits(model: &LlamaForCausalLM<B>) -> Tensor<B, 3> {
        let ids =
            Tensor::<B, 2, Int>::from_data(TensorData::new(vec![3i64, 1, 4, 1, 5, 9], [1, 6]), &Default::default());
        model.forward(ids, &AttentionInputs::causal(1, 6, 0, &Default::default()), None)
    }

    fn max_diff(a: Tensor<B, 3>, b: Tensor<B, 3>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// Gives every adapter a random `B`, as training would.
    fn perturb(mut model: LlamaForCausalLM<B>) -> LlamaForCausalLM<B> {
        for layer in &mut model.model.layers {
            for (_, projection) in layer.projections_mut() {
                if let Some(lora) = projection.lora.as_mut() {
                    let shape = lora.b.lazy_shape().dims::<2>();
                    lora.b =
                        Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.1), &Default::default()));
                }
            }
        }
        model
    }

    #[test]
    fn lora_b_starts_at_zero_so_the_output_equals_the_base() {
        let _rng = crate::lock_backend_rng();
        let base = tiny();
        let expected = logits(&base);
        let adapted = base.with_lora(&LoraConfig::default()).unwrap();
        assert!(adapted.has_adapters());
        assert_eq!(max_diff(logits(&adapted), expected), 0.0);
    }

    #[test]
    fn merging_adapters_keeps_the_adapted_output() {
        let _rng = crate::lock_backend_rng();
        let config = LoraConfig { r: 4, alpha: 8.0, use_rslora: true, ..LoraConfig::default() };
        let base = tiny();
        let adapted = perturb(base.clone().with_lora(&config).unwrap());
        let expected = logits(&adapted);
        assert!(max_diff(expected.clone(), logits(&base)) > 1e-3, "the perturbation changes the output");
        let merged = adapted.merge_lora();
        assert!(!merged.has_adapters());
        assert!(max_diff(logits(&merged), expected) < 1e-5);
    }

    #[test]
    fn switching_adapters_off_gives_the_base_output_bit_for_bit() {
        let _rng = crate::lock_backend_rng();
        let base = tiny();
        let adapted = perturb(base.clone().with_lora(&LoraConfig::default()).unwrap());
        assert!(max_diff(logits(&adapted), logits(&base)) > 1e-3, "the perturbation changes the output");
        let switched_off = adapted.without_lora();
        assert!(!switched_off.has_adapters());
        assert_eq!(max_diff(logits(&switched_off), logits(&base)), 0.0);
    }

    #[test]
    fn only_targeted_projections_get_adapters() {
        let _rng = crate::lock_backend_rng();
        let config = LoraConfig { target_modules: vec!["q_proj".into(), "down_proj".into()], ..LoraConfig::default() };
        let model = tiny().with_lora(&config).unwrap();
        let layer = &model.model.layers[0];
        assert!(layer.self_attn.q_proj.lora.is_some() && layer.mlp.down_proj.lora.is_some());
        assert!(layer.self_attn.k_proj.lora.is_none() && layer.mlp.up_proj.lora.is_none());
    }

    #[test]
    fn adapters_round_trip_through_peft_files_bit_for_bit() {
        let _rng = crate::lock_backend_rng();
        let config = LoraConfig {
            r: 2,
            alpha: 4.0,
            target_modules: vec!["v_proj".into(), "up_proj".into()],
            ..LoraConfig::default()
        };
        let base = tiny();
        let adapted = perturb(base.clone().with_lora(&config).unwrap());
        let dir = tempfile::tempdir().unwrap();
        save_adapter(&adapted, &config, "base", dir.path()).unwrap();
        let (loaded, loaded_config) = load_adapter(base, dir.path()).unwrap();
        assert_eq!(loaded_config, config);
        assert_eq!(max_diff(logits(&loaded), logits(&adapted)), 0.0);

        let files = crate::checkpoint::SafetensorsFiles::open_file(&dir.path().join(ADAPTER_WEIGHTS_FILE)).unwrap();
        let keys: Vec<&str> = files.keys().collect();
        assert!(keys.contains(&"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"), "{keys:?}");
        assert!(keys.contains(&"base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"), "{keys:?}");
        assert_eq!(keys.len(), 2 * 2 * LlamaConfig::tiny().num_hidden_layers);
    }

    #[test]
    fn invalid_lora_settings_are_named() {
        let _rng = crate::lock_backend_rng();
        let cases = [
            (LoraConfig { r: 0, ..LoraConfig::default() }, "LoRA `r`: must be at least 1"),
            (LoraConfig { dropout: 1.0, ..LoraConfig::default() }, "LoRA `dropout`: 1 is not in [0, 1)"),
            (LoraConfig { target_modules: vec!["qproj".into()], ..LoraConfig::default() }, "unknown module `qproj`"),
        ];
        for (config, expected) in cases {
            let message = tiny().with_lora(&config).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn unsupported_adapter_configs_name_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adapter_config.json");
        let cases = [
            (r#"{"peft_type":"LORA","use_dora":true,"target_modules":["q_proj"]}"#, "field `use_dora`: DoRA"),
            (r#"{"peft_type":"IA3","target_modules":["q_proj"]}"#, "field `peft_type`"),
            (r#"{"peft_type":"LORA","r":8}"#, "field `target_modules`: is missing"),
            (r#"{"peft_type":"LORA","target_modules":["lm_head"]}"#, "unknown module `lm_head`"),
            (r#"{"peft_type":"LORA","#, "adapter_config.json: EOF"),
        ];
        for (text, expected) in cases {
            std::fs::write(&path, text).unwrap();
            let message = read_adapter_config(&path).unwrap_err().to_string();
            assert!(message.contains(expected) && message.contains("adapter_config.json"), "{message}");
        }
    }

    #[test]
    fn a_model_with_unmerged_adapters_is_not_saved_as_a_plain_model() {
        let _rng = crate::lock_backend_rng();
        let model = tiny().with_lora(&LoraConfig::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let error = crate::checkpoint::save_model(&model, &LlamaConfig::tiny(), dir.path(), &Default::default());
        assert!(error.unwrap_err().to_string().contains("unmerged LoRA adapters"));
    }
}
