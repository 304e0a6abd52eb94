//! [`import_gguf`]: a GGUF file into a complete Hugging Face model folder.
//!
//! Everything is validated before the first byte is written (architecture, tokenizer, every
//! tensor's name, type and shape), then `tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`, `model.safetensors` and last `config.json` are written atomically.
//! Tensors are dequantised one at a time and streamed into the safetensors file, so memory stays
//! at about one tensor however large the model.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use precept_data::{write_le, TensorEntry};
use safetensors::Dtype;
use serde_json::Value;

use crate::error::{GgufError, Result};
use crate::file::GgufFile;
use crate::ggml_type::GgmlType;
use crate::hf_config::config_json;
use crate::reader::{tensor_error, TensorInfo};
use crate::tokenizer::tokenizer_json;
use crate::tokenizer_config::{generation_config_json, tokenizer_config_json};

/// GGUF tensors that carry no weights of their own (folded into `config.json` instead).
const SKIPPED: [&str; 1] = ["rope_freqs.weight"];

/// What [`import_gguf`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    /// Tensors written to `model.safetensors`.
    pub tensors: usize,
    /// Total number of weights written.
    pub parameters: u64,
    /// How many tensors of each ggml type the file stored.
    pub ggml_types: BTreeMap<GgmlType, usize>,
    /// Every file written, in the order written.
    pub files: Vec<PathBuf>,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types: Vec<String> = self.ggml_types.iter().map(|(t, n)| format!("{n} {t}")).collect();
        let names: Vec<String> =
            self.files.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        write!(
            f,
            "{} tensors ({}), {:.1}M parameters as float32; wrote {}",
            self.tensors,
            types.join(", "),
            self.parameters as f64 / 1e6,
            names.join(", ")
        )
    }
}

/// Imports the GGUF file `gguf` into the folder `out_dir` (created if needed) as `config.json`,
/// `model.safetensors` (float32), `tokenizer.json`, `tokenizer_config.json` and
/// `generation_config.json`.
pub fn import_gguf(gguf: &Path, out_dir: &Path) -> Result<ImportSummary> {
    let file = GgufFile::open(gguf)?;
    let meta = file.metadata();
    let config = config_json(&file)?;
    let documents = [
        ("tokenizer.json", tokenizer_json(meta)?),
        ("tokenizer_config.json", tokenizer_config_json(meta)?),
        ("generation_config.json", generation_config_json(meta)?),
    ];
    let plan = plan_tensors(&file)?;

    std::fs::create_dir_all(out_dir).map_err(|e| GgufError::io(out_dir, e))?;
    let mut files = Vec::new();
    for (name, document) in &documents {
        files.push(write_json(&out_dir.join(name), document)?);
    }
    let weights = out_dir.join("model.safetensors");
    write_safetensors(&file, &plan, &weights)?;
    files.push(weights);
    // Written last, so a folder with config.json is a finished import.
    files.push(write_json(&out_dir.join("config.json"), &config)?);

    let mut ggml_types = BTreeMap::new();
    for t in file.tensors() {
        *ggml_types.entry(t.ggml_type).or_insert(0) += 1;
    }
    Ok(ImportSummary {
        tensors: plan.len(),
        parameters: plan.iter().map(|p| p.info.n_elements).sum(),
        ggml_types,
        files,
    })
}

/// The Hugging Face (Llama/Qwen2) key of a llama.cpp tensor name, or `None` if it has none.
pub fn hf_tensor_name(gguf_name: &str) -> Option<String> {
    match gguf_name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, suffix) = rest.split_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let module = match part {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{module}.{suffix}"))
}

/// Undoes llama.cpp's rotary permutation of q/k rows.
///
/// llama.cpp's converter stores `w.reshape(n_head, 2, rows / n_head / 2, cols).swapaxes(1, 2)`,
/// interleaving the two rotary halves of each head; this restores Hugging Face's half-split
/// order: row `h·d + j·d/2 + i` of the result is row `h·d + 2i + j` of `data` (`d = rows / n_head`).
/// `data` is row-major `[rows, cols]`; a bias is `cols = 1`.
///
/// # Panics
///
/// If `data.len() != rows * cols` or `rows` is not a multiple of `2 * n_head`.
pub fn unpermute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    assert!(
        n_head > 0 && rows.is_multiple_of(2 * n_head),
        "unpermute_rows: {rows} rows do not split into {n_head} heads of pairs"
    );
    assert_eq!(data.len(), rows * cols, "unpermute_rows: data is not [{rows}, {cols}]");
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0.0; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let (src, dst) = (h * head_dim + 2 * i + j, h * head_dim + j * half + i);
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// One tensor to write.
struct Planned<'a> {
    hf_name: String,
    info: &'a TensorInfo,
    /// Heads to un-permute the rows by (llama q and k).
    unpermute_heads: Option<usize>,
}

/// Maps, checks and sorts (by Hugging Face name) every tensor of `file`.
fn plan_tensors(file: &GgufFile) -> Result<Vec<Planned<'_>>> {
    let meta = file.metadata();
    let arch = meta.str("general.architecture")?;
    let heads = meta.count(&format!("{arch}.attention.head_count"))?;
    let kv_heads = meta.count_opt(&format!("{arch}.attention.head_count_kv"))?.unwrap_or(heads);
    let mut plan = Vec::new();
    for info in file.tensors().iter().filter(|t| !SKIPPED.contains(&t.name.as_str())) {
        let err = |message: String| tensor_error(file.path(), &info.name, message);
        let hf_name = hf_tensor_name(&info.name)
            .ok_or_else(|| err(format!("has no Hugging Face equivalent for architecture `{arch}`")))?;
        file.check_supported(info)?;
        // llama.cpp permutes q/k only for `llama`, whose rotary embedding is interleaved.
        let unpermute_heads = match (arch, hf_name.contains("q_proj."), hf_name.contains("k_proj.")) {
            ("llama", true, _) => Some(heads),
            ("llama", _, true) => Some(kv_heads),
            _ => None,
        };
        if let Some(h) = unpermute_heads {
            let rows = info.shape().first().copied().unwrap_or(0);
            if info.dims.is_empty() || info.dims.len() > 2 || rows % (2 * h) != 0 {
                return Err(err(format!("shape {:?} cannot hold {h} heads of rotary pairs", info.shape())));
            }
        }
        plan.push(Planned { hf_name, info, unpermute_heads });
    }
    plan.sort_by(|a, b| a.hf_name.cmp(&b.hf_name));
    Ok(plan)
}

/// The f32 values of one planned tensor, un-permuted where needed.
fn tensor_values(file: &GgufFile, planned: &Planned) -> Result<Vec<f32>> {
    let values = file.tensor_f32(planned.info)?;
    Ok(match planned.unpermute_heads {
        Some(heads) => {
            let shape = planned.info.shape();
            let cols = shape.get(1).copied().unwrap_or(1);
            unpermute_rows(&values, shape[0], cols, heads)
        }
        None => values,
    })
}

/// Streams the planned tensors into a float32 safetensors file at `path`.
fn write_safetensors(file: &GgufFile, plan: &[Planned], path: &Path) -> Result<()> {
    let entries: Vec<TensorEntry> = plan
        .iter()
        .map(|p| TensorEntry { name: p.hf_name.clone(), dtype: Dtype::F32, shape: p.info.shape() })
        .collect();
    precept_data::write_safetensors(path, &entries, |index, out| {
        let values = tensor_values(file, &plan[index])?;
        write_le(out, &values).map_err(|e| GgufError::io(path, e))
    })
}

fn write_json(path: &Path, value: &Value) -> Result<PathBuf> {
    // Serialising a Value only fails for non-string map keys, which a Value cannot have.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    precept_data::write_atomic(path, text.as_bytes()).map_err(|e| GgufError::io(path, e))?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use safetensors::SafeTensors;

    use super::*;
    use crate::testing::GgufBuilder;
    use crate::value::{GgufArray, GgufValue};

    /// llama.cpp's `permute` (convert_hf_to_gguf.py), written independently of `unpermute_rows`:
    /// `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
    fn permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
        let half = rows / n_head / 2;
        let mut out = Vec::with_capacity(w.len());
        for h in 0..n_head {
            for i in 0..half {
                for j in 0..2 {
                    let src = (h * 2 + j) * half + i;
                    out.extend_from_slice(&w[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_restores_the_half_split_order_of_one_head() {
        // HF rows [a, b, c, d] (halves [a, b] and [c, d]) are stored interleaved as [a, c, b, d].
        assert_eq!(unpermute_rows(&[1.0, 3.0, 2.0, 4.0], 4, 1, 1), [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute_for_several_heads() {
        let (rows, cols, heads) = (24, 3, 3);
        let hf: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        assert_eq!(unpermute_rows(&permute(&hf, rows, cols, heads), rows, cols, heads), hf);
    }

    #[test]
    fn tensor_names_map_to_hugging_face_keys() {
        let cases = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output.weight", "lm_head.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
            ("blk.12.attn_k.bias", "model.layers.12.self_attn.k_proj.bias"),
            ("blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"),
            ("blk.3.ffn_down.weight", "model.layers.3.mlp.down_proj.weight"),
            ("blk.3.attn_norm.weight", "model.layers.3.input_layernorm.weight"),
            ("blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"),
        ];
        for (gguf, hf) in cases {
            assert_eq!(hf_tensor_name(gguf).as_deref(), Some(hf), "{gguf}");
        }
        for unknown in ["blk.x.attn_q.weight", "blk.0.attn_qkv.weight", "blk.0.attn_q.scale", "rope_freqs.weight"] {
            assert_eq!(hf_tensor_name(unknown), None, "{unknown}");
        }
    }

    const HIDDEN: u64 = 32;
    const VOCAB: u64 = 3;

    /// A one-layer llama with 2 query heads and 1 key/value head of width 16, a Q8_0 embedding,
    /// an F16 value projection and F32 everything else; tensor values encode their position.
    fn tiny_llama() -> GgufBuilder {
        let strings = |v: &[&str]| GgufValue::Array(GgufArray::String(v.iter().map(|s| s.to_string()).collect()));
        let ramp = |n: u64, scale: f32| (0..n).map(|i| i as f32 * scale).collect::<Vec<f32>>();
        // Q8_0 embedding: row r is one block with d = 1 and qs[j] = j - 16 + r.
        let embd: Vec<u8> = (0..VOCAB)
            .flat_map(|r| {
                0x3C00u16.to_le_bytes().into_iter().chain((0..32).map(move |j| (j as i8 - 16 + r as i8) as u8))
            })
            .collect();
        let f16_ones: Vec<u8> = (0..HIDDEN * 16).flat_map(|_| 0x3C00u16.to_le_bytes()).collect();
        GgufBuilder::default()
            .string("general.architecture", "llama")
            .u32("llama.block_count", 1)
            .u32("llama.context_length", 64)
            .u32("llama.embedding_length", HIDDEN as u32)
            .u32("llama.feed_forward_length", 32)
            .u32("llama.attention.head_count", 2)
            .u32("llama.attention.head_count_kv", 1)
            .kv("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(1e-5))
            .kv("llama.rope.freq_base", GgufValue::F32(10_000.0))
            .string("tokenizer.ggml.model", "gpt2")
            .string("tokenizer.ggml.pre", "smollm")
            .kv("tokenizer.ggml.tokens", strings(&["<s>", "a", "b"]))
            .kv("tokenizer.ggml.token_type", GgufValue::Array(GgufArray::I32(vec![3, 1, 1])))
            .kv("tokenizer.ggml.merges", strings(&[]))
            .u32("tokenizer.ggml.bos_token_id", 0)
            .u32("tokenizer.ggml.eos_token_id", 0)
            .tensor("token_embd.weight", &[HIDDEN, VOCAB], GgmlType::Q8_0, embd)
            .f32_tensor("blk.0.attn_norm.weight", &[HIDDEN], &ramp(HIDDEN, 1.0))
            .f32_tensor("blk.0.attn_q.weight", &[HIDDEN, HIDDEN], &ramp(HIDDEN * HIDDEN, 1.0))
            .f32_tensor("blk.0.attn_k.weight", &[HIDDEN, 16], &ramp(HIDDEN * 16, 1.0))
            .tensor("blk.0.attn_v.weight", &[HIDDEN, 16], GgmlType::F16, f16_ones)
            .f32_tensor("blk.0.attn_output.weight", &[HIDDEN, HIDDEN], &ramp(HIDDEN * HIDDEN, 0.5))
            .f32_tensor("blk.0.ffn_gate.weight", &[HIDDEN, 32], &ramp(HIDDEN * 32, 0.25))
            .f32_tensor("blk.0.ffn_up.weight", &[HIDDEN, 32], &ramp(HIDDEN * 32, 0.125))
            .f32_tensor("blk.0.ffn_down.weight", &[32, HIDDEN], &ramp(HIDDEN * 32, 2.0))
            .f32_tensor("blk.0.ffn_norm.weight", &[HIDDEN], &ramp(HIDDEN, 3.0))
            .f32_tensor("output_norm.weight", &[HIDDEN], &ramp(HIDDEN, 4.0))
    }

    fn floats(st: &SafeTensors, key: &str) -> (Vec<usize>, Vec<f32>) {
        let view = st.tensor(key).unwrap();
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        (view.shape().to_vec(), values)
    }

    #[test]
    fn a_tiny_llama_imports_into_a_loadable_hugging_face_folder() {
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("tiny.gguf");
        std::fs::write(&gguf, tiny_llama().build()).unwrap();
        let out = dir.path().join("hf");
        let summary = import_gguf(&gguf, &out).unwrap();
        assert_eq!(summary.tensors, 11);
        assert_eq!(summary.parameters, 3 * 32 + 3 * 32 + 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 32);
        assert_eq!(summary.ggml_types, BTreeMap::from([(GgmlType::F32, 9), (GgmlType::F16, 1), (GgmlType::Q8_0, 1)]));
        assert_eq!(summary.files.last(), Some(&out.join("config.json")));
        assert!(summary
            .to_string()
            .starts_with("11 tensors (9 F32, 1 F16, 1 Q8_0), 0.0M parameters as float32; wrote tokenizer.json"));

        let config: Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        let sizes = ["vocab_size", "hidden_size", "num_key_value_heads", "head_dim"].map(|key| config[key].as_u64());
        assert_eq!(sizes, [Some(3), Some(32), Some(1), Some(16)]);
        assert_eq!(config["tie_word_embeddings"], true);

        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), 11);
        let (shape, embd) = floats(&st, "model.embed_tokens.weight");
        assert_eq!((shape, embd[0], embd[32], embd[95]), (vec![3, 32], -16.0, -15.0, 17.0));
        let (shape, v) = floats(&st, "model.layers.0.self_attn.v_proj.weight");
        assert_eq!((shape, v.iter().all(|&x| x == 1.0)), (vec![16, 32], true));
        let (shape, down) = floats(&st, "model.layers.0.mlp.down_proj.weight");
        assert_eq!((shape, down[1], down[32]), (vec![32, 32], 2.0, 64.0));

        // q and k come back in Hugging Face order: permuting them again gives the file's rows.
        let (shape, q) = floats(&st, "model.layers.0.self_attn.q_proj.weight");
        assert_eq!(shape, [32, 32]);
        assert_eq!(permute(&q, 32, 32, 2), (0..32 * 32).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(&q[32..34], [64.0, 65.0], "HF row 1 is stored row 2 (i = 1, j = 0)");
        let (shape, k) = floats(&st, "model.layers.0.self_attn.k_proj.weight");
        assert_eq!(shape, [16, 32]);
        assert_eq!(permute(&k, 16, 32, 1), (0..16 * 32).map(|i| i as f32).collect::<Vec<_>>());

        let tokenizer = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
        assert_eq!(tokenizer.encode("<s>ab", false).unwrap().get_ids(), [0, 1, 2]);
        let generation: Value =
            serde_json::from_slice(&std::fs::read(out.join("generation_config.json")).unwrap()).unwrap();
        assert_eq!(generation["eos_token_id"], 0);
    }

    #[test]
    fn a_file_with_an_unusable_tensor_fails_before_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("hf");
        let whole = tiny_llama().build();
        let cases = [
            (
                tiny_llama().tensor("blk.0.ffn_up.bias", &[256], GgmlType::Q2K, vec![0; 84]).build(),
                "tensor `blk.0.ffn_up.bias`: ggml type Q2_K cannot be dequantised",
            ),
            (
                tiny_llama().f32_tensor("blk.0.mystery.weight", &[1], &[1.0]).build(),
                "tensor `blk.0.mystery.weight`: has no Hugging Face equivalent",
            ),
            (whole[..whole.len() - 4].to_vec(), "tensor `output_norm.weight`: data is truncated"),
        ];
        for (i, (bytes, expected)) in cases.into_iter().enumerate() {
            let gguf = dir.path().join(format!("bad{i}.gguf"));
            std::fs::write(&gguf, bytes).unwrap();
            let err = import_gguf(&gguf, &out).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!out.exists(), "nothing may be written for a bad file");
        }
    }
}
