//! Model hyper-parameters, read from a Hugging Face `config.json`.

use std::path::Path;

use burn::config::Config;
use precept_data::ModelSize;
use serde_json::{json, Map, Value};

use crate::error::{ModelError, Result};

/// The Llama-3 frequency rescaling of rotary embeddings (`rope_scaling.rope_type = "llama3"`).
#[derive(Config, Debug, PartialEq)]
pub struct Llama3RopeScaling {
    /// Ratio between the extended and the original context length.
    pub factor: f64,
    /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are scaled.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// Context length the model was pre-trained with.
    pub original_max_position_embeddings: usize,
}

/// Shape and numerics of a Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM).
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Number of token ids.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention when below `num_attention_heads`).
    pub num_key_value_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Epsilon of every RMSNorm.
    #[config(default = 1e-5)]
    pub rms_norm_eps: f64,
    /// Base of the rotary embedding frequencies.
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// Optional Llama-3 rotary rescaling.
    #[config(default = "None")]
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Longest sequence the rotary tables cover.
    #[config(default = 2048)]
    pub max_position_embeddings: usize,
    /// Whether the output projection reuses the token embedding matrix.
    #[config(default = false)]
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections have a bias (Qwen2).
    #[config(default = false)]
    pub qkv_bias: bool,
    /// Whether the attention output projection has a bias (Llama's `attention_bias`).
    #[config(default = false)]
    pub o_bias: bool,
    /// Whether the MLP projections have biases (`mlp_bias`).
    #[config(default = false)]
    pub mlp_bias: bool,
}

impl LlamaConfig {
    /// A tiny configuration for tests: 2 layers, GQA with 4 query and 2 key/value heads.
    pub fn tiny() -> Self {
        Self::new(97, 32, 48, 2, 4, 2, 8).with_max_position_embeddings(128)
    }

    /// The sizes that decide this model's memory ([`ModelSize::check`] bounds them).
    pub fn size(&self) -> ModelSize {
        let n = |x: usize| x as u64;
        ModelSize {
            vocab_size: n(self.vocab_size),
            hidden_size: n(self.hidden_size),
            intermediate_size: n(self.intermediate_size),
            num_hidden_layers: n(self.num_hidden_layers),
            num_attention_heads: n(self.num_attention_heads),
            num_key_value_heads: n(self.num_key_value_heads),
            head_dim: n(self.head_dim),
            max_position_embeddings: n(self.max_position_embeddings),
            tie_word_embeddings: self.tie_word_embeddings,
        }
    }

    /// Number of query heads sharing one key/value head.
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// The fields of a Hugging Face `config.json` describing this model, `torch_dtype` as given.
    pub fn to_hf_json(&self, torch_dtype: &str) -> Value {
        let (model_type, architecture) =
            if self.qkv_bias && !self.o_bias { ("qwen2", "Qwen2ForCausalLM") } else { ("llama", "LlamaForCausalLM") };
        let rope_scaling = self.rope_scaling.as_ref().map(|s| {
            json!({
                "rope_type": "llama3",
                "factor": s.factor,
                "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings,
            })
        });
        json!({
            "architectures": [architecture],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.o_bias,
            "mlp_bias": self.mlp_bias,
            "torch_dtype": torch_dtype,
        })
    }

    /// Reads and validates a Hugging Face `config.json`, refusing sizes whose weights and
    /// rotary tables would not fit in this machine's memory before anything is allocated.
    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Json { path: path.to_path_buf(), message: e.to_string() })?;
        let Value::Object(map) = value else {
            return Err(ModelError::Json { path: path.to_path_buf(), message: "not a JSON object".into() });
        };
        let config = HfFields { path, map: &map }.to_config()?;
        config.size().check(path)?;
        Ok(config)
    }
}

/// Typed access to the fields of a parsed config.json, with errors naming the field.
struct HfFields<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl HfFields<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> ModelError {
        ModelError::Config { path: self.path.to_path_buf(), field: field.into(), message: message.into() }
    }

    fn usize_opt(&self, field: &str) -> Result<Option<usize>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 && n < (1 << 32) => Ok(Some(n as usize)),
                _ => Err(self.error(field, format!("expected a positive integer, found {v}"))),
            },
        }
    }

    fn usize(&self, field: &str) -> Result<usize> {
        self.usize_opt(field)?.ok_or_else(|| self.error(field, "is missing"))
    }

    fn f64_opt(&self, field: &str) -> Result<Option<f64>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(Some)
                .ok_or_else(|| self.error(field, format!("expected a positive number, found {v}"))),
        }
    }

    fn bool_opt(&self, field: &str) -> Result<Option<bool>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.error(field, format!("expected true or false, found {v}"))),
        }
    }

    fn to_config(&self) -> Result<LlamaConfig> {
        let model_type = self.map.get("model_type").and_then(Value::as_str).unwrap_or("llama");
        if !matches!(model_type, "llama" | "mistral" | "qwen2") {
            return Err(self.error("model_type", format!("`{model_type}` is not a Llama-family model")));
        }
        if let Some(act) = self.map.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(self.error("hidden_act", format!("`{act}` is unsupported (only silu)")));
            }
        }
        let hidden_size = self.usize("hidden_size")?;
        let heads = self.usize("num_attention_heads")?;
        let kv_heads = self.usize_opt("num_key_value_heads")?.unwrap_or(heads);
        if heads % kv_heads != 0 {
            return Err(
                self.error("num_key_value_heads", format!("{kv_heads} does not divide num_attention_heads = {heads}"))
            );
        }
        let head_dim = match self.usize_opt("head_dim")? {
            Some(d) => d,
            None if hidden_size % heads == 0 => hidden_size / heads,
            None => return Err(self.error("head_dim", "missing and hidden_size is not divisible by heads")),
        };
        if head_dim % 2 != 0 {
            return Err(self.error("head_dim", format!("{head_dim} is odd; rotary embeddings need pairs")));
        }
        // transformers 5 nests rope settings under `rope_parameters`; 4.x keeps them at the top.
        let rope_params = self.map.get("rope_parameters").and_then(Value::as_object);
        let rope_theta = match rope_params.and_then(|p| p.get("rope_theta")).and_then(Value::as_f64) {
            Some(theta) => theta,
            None => self.f64_opt("rope_theta")?.unwrap_or(10000.0),
        };
        let scaling = match self.map.get("rope_scaling") {
            Some(Value::Object(s)) => Some(s),
            _ => rope_params,
        };
        let attention_bias = self.bool_opt("attention_bias")?.unwrap_or(false);
        let sliding = self.bool_opt("use_sliding_window")?.unwrap_or(true);
        if let (true, Some(window)) = (sliding, self.usize_opt("sliding_window")?) {
            // Full attention equals sliding-window attention while sequences fit in the window.
            tracing::warn!(
                "{}: sliding_window = {window} is not applied; sequences longer than it differ from the reference",
                self.path.display()
            );
        }
        let config = LlamaConfig::new(
            self.usize("vocab_size")?,
            hidden_size,
            self.usize("intermediate_size")?,
            self.usize("num_hidden_layers")?,
            heads,
            kv_heads,
            head_dim,
        )
        .with_rms_norm_eps(self.f64_opt("rms_norm_eps")?.unwrap_or(1e-6))
        .with_rope_theta(rope_theta)
        .with_rope_scaling(self.rope_scaling(scaling)?)
        .with_max_position_embeddings(self.usize_opt("max_position_embeddings")?.unwrap_or(2048))
        .with_tie_word_embeddings(self.bool_opt("tie_word_embeddings")?.unwrap_or(false))
        .with_qkv_bias(model_type == "qwen2" || attention_bias)
        .with_o_bias(attention_bias)
        .with_mlp_bias(self.bool_opt("mlp_bias")?.unwrap_or(false));
        Ok(config)
    }

    fn rope_scaling(&self, scaling: Option<&Map<String, Value>>) -> Result<Option<Llama3RopeScaling>> {
        let Some(s) = scaling else { return Ok(None) };
        let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Value::as_str).unwrap_or("default");
        match kind {
            "default" => Ok(None),
            "llama3" => {
                let sub = HfFields { path: self.path, map: s };
                let get =
                    |f: &str| sub.f64_opt(f)?.ok_or_else(|| self.error(&format!("rope_scaling.{f}"), "is missing"));
                Ok(Some(Llama3RopeScaling::new(
                    get("factor")?,
                    get("low_freq_factor")?,
                    get("high_freq_factor")?,
                    sub.usize("original_max_position_embeddings")
                        .map_err(|_| self.error("rope_scaling.original_max_position_embeddings", "is missing"))?,
                )))
            }
            other => Err(self.error("rope_scaling", format!("rope type `{other}` is unsupported (default, llama3)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<LlamaConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        LlamaConfig::from_hf_file(&path)
    }

    const SMOLLM2: &str = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":576,
        "intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,
        "rms_norm_eps":1e-05,"rope_theta":100000.0,"rope_scaling":null,"max_position_embeddings":8192,
        "tie_word_embeddings":true,"vocab_size":49152,"hidden_act":"silu"}"#;

    #[test]
    fn smollm2_config_parses_with_derived_head_dim() {
        let c = parse(SMOLLM2).unwrap();
        assert_eq!((c.head_dim, c.group_size(), c.rope_theta), (64, 3, 100000.0));
        assert!(c.tie_word_embeddings && !c.qkv_bias && c.rope_scaling.is_none());
    }

    #[test]
    fn llama3_rope_scaling_and_qwen2_biases_are_read() {
        let llama3 = SMOLLM2.replace(
            r#""rope_scaling":null"#,
            r#""rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,
               "high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        );
        let c = parse(&llama3).unwrap();
        assert_eq!(c.rope_scaling.unwrap().factor, 32.0);
        let qwen = SMOLLM2.replace(r#""model_type":"llama""#, r#""model_type":"qwen2""#);
        assert!(parse(&qwen).unwrap().qkv_bias);
    }

    #[test]
    fn bad_fields_are_named_in_the_error() {
        let err = parse(&SMOLLM2.replace(r#""num_key_value_heads":3"#, r#""num_key_value_heads":4"#)).unwrap_err();
        assert!(err.to_string().contains("field `num_key_value_heads`: 4 does not divide"), "{err}");
        let err = parse(&SMOLLM2.replace(r#""hidden_size":576,"#, "")).unwrap_err();
        assert!(err.to_string().contains("field `hidden_size`: is missing"), "{err}");
        let err = parse(&SMOLLM2.replace(r#""model_type":"llama""#, r#""model_type":"gpt2""#)).unwrap_err();
        assert!(err.to_string().contains("`gpt2` is not a Llama-family model"), "{err}");
        let err = parse("[1,2]").unwrap_err();
        assert!(err.to_string().contains("not a JSON object"), "{err}");
        let err = parse(&SMOLLM2.replace(r#""num_hidden_layers":30"#, r#""num_hidden_layers":1000000"#)).unwrap_err();
        assert!(err.to_string().contains("config.json: this model (num_hidden_layers = 1000000,"), "{err}");
        let err = parse("{").unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
