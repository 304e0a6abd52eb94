//! Autoregressive decoding of many prompts at once.
//!
//! Prompts of different lengths are left-padded into one batch; padding keys are masked and
//! positions start at each prompt's first real token, so a row decodes exactly as it would alone.
//! Decoding reuses an explicit [`KvCache`]: one prefill pass, then one token per
//! row per step.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{ModelError, Result};
use crate::inputs::AttentionInputs;
use crate::kv_cache::KvCache;
use crate::model::LlamaForCausalLM;
use crate::sampling::{Sampler, SamplingConfig};

/// Settings of one generation call.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// Most new tokens per prompt.
    pub max_new_tokens: usize,
    /// How the next token is chosen.
    pub sampling: SamplingConfig,
    /// Token ids that end a row (kept as its last token).
    pub eos_token_ids: Vec<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self { max_new_tokens: 128, sampling: SamplingConfig::default(), eos_token_ids: Vec::new() }
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token was produced.
    Eos,
    /// The observer asked to stop (a stop string, say).
    Stopped,
    /// `max_new_tokens` was reached.
    Length,
}

/// The new tokens of one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Generated ids, including the EOS token when one ended the row.
    pub ids: Vec<u32>,
    /// Why the row ended.
    pub finish: FinishReason,
}

/// Decodes every prompt in one batch.
///
/// `observe(row, token)` is called for each new token in order; returning `true` stops that row
/// (for stop strings and streaming). Rows that finish leave the batch, so the rest decode
/// faster. Errors only on empty or over-long prompts.
pub fn generate<B: Backend>(
    model: &LlamaForCausalLM<B>,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    mut observe: impl FnMut(usize, u32) -> bool,
) -> Result<Vec<Generation>> {
    check_prompts(model, prompts, config)?;
    let device = model.model.embed_tokens.weight.device();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    let mut ids: Vec<i64> = Vec::with_capacity(prompts.len() * longest);
    for (prompt, &pad) in prompts.iter().zip(&pads) {
        ids.extend(std::iter::repeat_n(0, pad));
        ids.extend(prompt.iter().map(|&t| t as i64));
    }
    let mut rows: Vec<Row> =
        prompts.iter().map(|p| Row { context: p.clone(), generated: Vec::new(), finish: None }).collect();
    // Original indices of the rows still in the batch, in batch order.
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    let mut sampler = Sampler::new(config.sampling.clone());
    let mut cache = model.new_cache();
    let mut step_tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [prompts.len(), longest]), &device);
    let mut step_inputs = AttentionInputs::left_padded(&pads, longest, 0, &device);
    for step in 0..config.max_new_tokens {
        let logits = last_logits(model, step_tokens, &step_inputs, &mut cache);
        let vocab = logits.len() / active.len();
        let mut kept = Vec::with_capacity(active.len());
        let mut next = Vec::with_capacity(active.len());
        for (position, &index) in active.iter().enumerate() {
            let row = &mut rows[index];
            let token =
                sampler.next_token(&mut logits[position * vocab..(position + 1) * vocab].to_vec(), &row.context);
            row.context.push(token);
            row.generated.push(token);
            let stopped = observe(index, token);
            row.finish = if config.eos_token_ids.contains(&token) {
                Some(FinishReason::Eos)
            } else if stopped {
                Some(FinishReason::Stopped)
            } else if step + 1 == config.max_new_tokens {
                Some(FinishReason::Length)
            } else {
                kept.push(position);
                next.push(token as i64);
                None
            };
        }
        if kept.is_empty() {
            break;
        }
        if kept.len() < active.len() {
            cache.retain_rows(&kept);
            pads = kept.iter().map(|&p| pads[p]).collect();
            active = kept.iter().map(|&p| active[p]).collect();
        }
        step_tokens = Tensor::from_data(TensorData::new(next, [active.len(), 1]), &device);
        step_inputs = AttentionInputs::left_padded(&pads, 1, cache.len(), &device);
    }
    Ok(rows
        .into_iter()
        .map(|row| Generation { ids: row.generated, finish: row.finish.unwrap_or(FinishReason::Length) })
        .collect())
}

/// One prompt's decoding state.
struct Row {
    context: Vec<u32>,
    generated: Vec<u32>,
    finish: Option<FinishReason>,
}

/// Runs one step and returns the last position's logits of every row, `[rows · vocab]`.
fn last_logits<B: Backend>(
    model: &LlamaForCausalLM<B>,
    tokens: Tensor<B, 2, Int>,
    inputs: &AttentionInputs<B>,
    cache: &mut KvCache<B>,
) -> Vec<f32> {
    let hidden = model.model.forward(tokens, inputs, Some(cache));
    let [batch, seq, d_model] = hidden.dims();
    let last = hidden.slice([0..batch, seq - 1..seq, 0..d_model]);
    // f32 conversion of backend data cannot fail for a float tensor.
    model.logits(last).into_data().convert::<f32>().into_vec::<f32>().unwrap_or_default()
}

/// Rejects empty prompts and prompts that cannot grow by `max_new_tokens` within the model.
fn check_prompts<B: Backend>(
    model: &LlamaForCausalLM<B>,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
) -> Result<()> {
    if let Some(row) = prompts.iter().position(Vec::is_empty) {
        return Err(ModelError::Generation { row, message: "the prompt is empty".into() });
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if longest + config.max_new_tokens > model.max_positions() {
        return Err(ModelError::Generation {
            row: prompts.iter().position(|p| p.len() == longest).unwrap_or(0),
            message: format!(
                "prompt of {longest} tokens + {} new tokens exceeds the model's {} positions",
                config.max_new_tokens,
                model.max_positions()
            ),
        });
    }
    Ok(())
}
