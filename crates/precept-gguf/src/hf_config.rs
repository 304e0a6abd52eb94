//! A Hugging Face `config.json` from the `<arch>.*` metadata of a GGUF file.
//!
//! Supported architectures: `llama` (also Mistral and SmolLM, which llama.cpp files as `llama`)
//! and `qwen2`. Floats stored as `f32` (`layer_norm_rms_epsilon`, `rope.freq_base`) are written as
//! their shortest decimal (`1e-5`, not `9.999999747378752e-6`), which is what the original
//! `config.json` said. Llama 3's rotary rescaling, which llama.cpp stores only as the
//! `rope_freqs.weight` factors, is recognised and written back as `rope_scaling`.

use precept_data::ModelSize;
use serde_json::{json, Value};

use crate::error::Result;
use crate::file::GgufFile;
use crate::reader::TensorInfo;
use crate::value::{GgufMetadata, GgufValue};

/// The `config.json` for the model in `file`.
pub fn config_json(file: &GgufFile) -> Result<Value> {
    let rope_freqs = match file.tensor("rope_freqs.weight") {
        Some(t) => Some(file.tensor_f32(t)?),
        None => None,
    };
    build(file.metadata(), file.tensors(), rope_freqs.as_deref())
}

fn build(meta: &GgufMetadata, tensors: &[TensorInfo], rope_freqs: Option<&[f32]>) -> Result<Value> {
    let arch = meta.str("general.architecture")?;
    let (model_type, class) = match arch {
        "llama" => ("llama", "LlamaForCausalLM"),
        "qwen2" => ("qwen2", "Qwen2ForCausalLM"),
        other => return Err(meta.error("general.architecture", format!("`{other}` is not supported (llama, qwen2)"))),
    };
    let key = |name: &str| format!("{arch}.{name}");
    let has = |name: &str| tensors.iter().any(|t| t.name == name);
    let hidden = meta.count(&key("embedding_length"))?;
    let heads = meta.count(&key("attention.head_count"))?;
    let kv_heads = meta.count_opt(&key("attention.head_count_kv"))?.unwrap_or(heads);
    let head_dim = match meta.count_opt(&key("attention.key_length"))? {
        Some(d) => d,
        None if hidden % heads == 0 => hidden / heads,
        None => {
            return Err(meta
                .error(&key("attention.head_count"), format!("{heads} does not divide the embedding length {hidden}")))
        }
    };
    let rope_theta = shortest_float(meta, &key("rope.freq_base"))?.unwrap_or(10_000.0);
    let rope_scaling = match rope_freqs {
        Some(factors) => llama3_rope_scaling(factors, rope_theta, head_dim).ok_or_else(|| {
            meta.error(
                &key("rope.freq_base"),
                "rope_freqs.weight does not match Llama 3 rope scaling, which is the only kind supported",
            )
        })?,
        None => Value::Null,
    };
    let vocab_size = match tensors.iter().find(|t| t.name == "token_embd.weight") {
        Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
        _ => meta.strings("tokenizer.ggml.tokens")?.len(),
    };
    let layers = meta.count(&key("block_count"))?;
    let held = block_count(tensors);
    if layers != held {
        return Err(meta.error(&key("block_count"), format!("{layers} but the file holds {held} blocks (blk.N.*)")));
    }
    let context = meta.count_opt(&key("context_length"))?.unwrap_or(2048);
    let intermediate = meta.count(&key("feed_forward_length"))?;
    let n = |x: usize| x as u64;
    let size = ModelSize {
        vocab_size: n(vocab_size),
        hidden_size: n(hidden),
        intermediate_size: n(intermediate),
        num_hidden_layers: n(layers),
        num_attention_heads: n(heads),
        num_key_value_heads: n(kv_heads),
        head_dim: n(head_dim),
        max_position_embeddings: n(context),
        tie_word_embeddings: !has("output.weight"),
    };
    size.check(meta.path())?;
    let mut config = json!({
        "architectures": [class],
        "model_type": model_type,
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": context,
        "rms_norm_eps": shortest_float(meta, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        "rope_theta": rope_theta,
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": !has("output.weight"),
        "mlp_bias": has("blk.0.ffn_up.bias"),
        "torch_dtype": "float32",
        "initializer_range": 0.02,
        "use_cache": true,
        "bos_token_id": meta.u64_opt("tokenizer.ggml.bos_token_id")?,
        "eos_token_id": meta.u64_opt("tokenizer.ggml.eos_token_id")?,
    });
    if arch == "llama" {
        // Qwen2 always has q/k/v biases and no `attention_bias` field.
        config["attention_bias"] = json!(has("blk.0.attn_q.bias"));
    }
    Ok(config)
}

/// Number of transformer blocks the file holds tensors for: one more than the largest `N` of
/// its `blk.N.*` tensors.
fn block_count(tensors: &[TensorInfo]) -> usize {
    let block = |name: &str| name.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok();
    tensors.iter().filter_map(|t| block(&t.name)).max().map_or(0, |n| n.saturating_add(1))
}

/// A float entry; an `f32` is widened through its shortest decimal so `1e-5f32` reads `1e-5`.
fn shortest_float(meta: &GgufMetadata, key: &str) -> Result<Option<f64>> {
    match meta.get(key) {
        // Display prints the shortest decimal that round-trips the f32; parsing it as f64
        // cannot fail for a finite value, and the fallback keeps the widened value otherwise.
        Some(GgufValue::F32(x)) if x.is_finite() => Ok(Some(x.to_string().parse().unwrap_or(f64::from(*x)))),
        _ => meta.f64_opt(key),
    }
}

/// Llama 3 `rope_scaling` whose per-frequency factors (computed as llama.cpp's converter does)
/// match `factors`, trying Meta's published settings with the largest factor as `factor`.
/// `Null` when every factor is 1; `None` when nothing matches.
fn llama3_rope_scaling(factors: &[f32], theta: f64, head_dim: usize) -> Option<Value> {
    if factors.iter().all(|&f| f == 1.0) {
        return Some(Value::Null);
    }
    let factor = f64::from(factors.iter().copied().fold(f32::MIN, f32::max));
    let (low, high, original) = (1.0, 4.0, 8192.0);
    if factors.len() * 2 != head_dim {
        return None;
    }
    let matches = factors.iter().enumerate().all(|(i, &got)| {
        let freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        let expected = if wavelen < original / high {
            1.0
        } else if wavelen > original / low {
            factor
        } else {
            let smooth = (original / wavelen - low) / (high - low);
            1.0 / ((1.0 - smooth) / factor + smooth)
        };
        (f64::from(got) - expected).abs() <= 1e-3 * expected
    });
    matches.then(|| {
        json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
               "high_freq_factor": high, "original_max_position_embeddings": original as u64})
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ggml_type::GgmlType;

    fn smollm_meta(arch: &str) -> GgufMetadata {
        let per_arch = [
            ("block_count", GgufValue::U32(30)),
            ("context_length", GgufValue::U32(8192)),
            ("embedding_length", GgufValue::U32(576)),
            ("feed_forward_length", GgufValue::U32(1536)),
            ("attention.head_count", GgufValue::U32(9)),
            ("attention.head_count_kv", GgufValue::U32(3)),
            ("rope.freq_base", GgufValue::F32(100_000.0)),
            ("attention.layer_norm_rms_epsilon", GgufValue::F32(1e-5)),
        ];
        let mut entries: BTreeMap<String, GgufValue> =
            per_arch.into_iter().map(|(k, v)| (format!("{arch}.{k}"), v)).collect();
        entries.insert("general.architecture".into(), GgufValue::String(arch.into()));
        entries.insert("tokenizer.ggml.bos_token_id".into(), GgufValue::U32(1));
        entries.insert("tokenizer.ggml.eos_token_id".into(), GgufValue::U32(2));
        GgufMetadata::new("m.gguf", entries)
    }

    fn tensor(name: &str, dims: &[u64]) -> TensorInfo {
        let n: u64 = dims.iter().product();
        TensorInfo {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type: GgmlType::F32,
            offset: 0,
            n_elements: n,
            n_bytes: 4 * n,
        }
    }

    /// `token_embd.weight` of `vocab` ids and one tensor for each of SmolLM2's 30 blocks.
    fn smollm_tensors(vocab: u64) -> Vec<TensorInfo> {
        let blocks = (0..30).map(|i| tensor(&format!("blk.{i}.attn_norm.weight"), &[576]));
        std::iter::once(tensor("token_embd.weight", &[576, vocab])).chain(blocks).collect()
    }

    #[test]
    fn smollm2_metadata_gives_its_upstream_config() {
        let config = build(&smollm_meta("llama"), &smollm_tensors(49152), None).unwrap();
        let expected = json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152,
            "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "hidden_act": "silu",
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
            "rope_scaling": null, "tie_word_embeddings": true, "attention_bias": false,
            "mlp_bias": false, "torch_dtype": "float32", "initializer_range": 0.02, "use_cache": true,
            "bos_token_id": 1, "eos_token_id": 2,
        });
        assert_eq!(config, expected);
        let text = serde_json::to_string(&config).unwrap();
        // serde_json spells 1e-5 as 0.00001; either way it is the f64 nearest 1e-5, not 9.99e-6.
        assert!(text.contains(r#""rms_norm_eps":0.00001,"#), "{text}");
    }

    #[test]
    fn an_output_tensor_unties_embeddings_and_qwen2_has_no_attention_bias_field() {
        let mut tensors = smollm_tensors(100);
        tensors.push(tensor("output.weight", &[576, 100]));
        let config = build(&smollm_meta("qwen2"), &tensors, None).unwrap();
        assert_eq!(
            (config["model_type"].as_str(), config["tie_word_embeddings"].as_bool()),
            (Some("qwen2"), Some(false))
        );
        assert_eq!((config["vocab_size"].as_u64(), config.get("attention_bias")), (Some(100), None));
    }

    #[test]
    fn unsupported_architectures_and_missing_keys_are_named() {
        let err = build(&smollm_meta("gemma"), &[], None).unwrap_err().to_string();
        assert_eq!(err, "m.gguf: metadata `general.architecture`: `gemma` is not supported (llama, qwen2)");
        let mut entries = smollm_meta("llama").entries().clone();
        entries.remove("llama.block_count");
        let err =
            build(&GgufMetadata::new("m.gguf", entries), &[tensor("token_embd.weight", &[576, 10])], None).unwrap_err();
        assert_eq!(err.to_string(), "m.gguf: metadata `llama.block_count`: is missing");
    }

    #[test]
    fn a_block_count_beyond_the_blocks_held_is_an_error() {
        let mut entries = smollm_meta("llama").entries().clone();
        entries.insert("llama.block_count".into(), GgufValue::U32(1_000_000_000));
        let err = build(&GgufMetadata::new("m.gguf", entries), &smollm_tensors(49152), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.gguf: metadata `llama.block_count`: 1000000000 but the file holds 30 blocks (blk.N.*)"
        );
    }

    #[test]
    fn a_context_length_of_two_to_the_32_is_refused_before_anything_is_allocated() {
        let mut entries = smollm_meta("llama").entries().clone();
        entries.insert("llama.context_length".into(), GgufValue::U32(u32::MAX));
        let err = build(&GgufMetadata::new("m.gguf", entries), &smollm_tensors(49152), None).unwrap_err().to_string();
        assert!(err.starts_with("m.gguf: this model (num_hidden_layers = 30,"), "{err}");
        assert!(err.contains("max_position_embeddings = 4294967295) needs 2048.5 GiB in float32"), "{err}");
    }

    #[test]
    fn llama3_rope_factors_are_recognised() {
        // Llama 3.2's settings: theta 500000, head_dim 64, factor 32, low 1, high 4, original 8192.
        let (theta, head_dim, factor) = (500_000.0f64, 64usize, 32.0f64);
        let factors: Vec<f32> = (0..head_dim / 2)
            .map(|i| {
                let wavelen = 2.0 * std::f64::consts::PI * theta.powf((2 * i) as f64 / head_dim as f64);
                if wavelen < 2048.0 {
                    1.0
                } else if wavelen > 8192.0 {
                    factor as f32
                } else {
                    let smooth = (8192.0 / wavelen - 1.0) / 3.0;
                    (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                }
            })
            .collect();
        let scaling = llama3_rope_scaling(&factors, theta, head_dim).unwrap();
        assert_eq!(scaling["factor"], 32.0);
        assert_eq!(scaling["original_max_position_embeddings"], 8192);
        let mut wrong = factors.clone();
        wrong[10] *= 2.0;
        assert!(llama3_rope_scaling(&wrong, theta, head_dim).is_none());
        assert_eq!(llama3_rope_scaling(&[1.0; 32], theta, head_dim), Some(Value::Null));
    }
}
