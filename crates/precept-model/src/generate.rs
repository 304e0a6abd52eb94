//! Autoregressive decoding of many prompts at once.
//!
//! Prompts of different lengths are left-padded into one batch; padding keys are masked and
//! positions start at each prompt's first real token, so a row decodes exactly as it would alone.
//! Decoding reuses an explicit [`KvCache`](crate::KvCache): one prefill pass, then one token per
//! row per step.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{ModelError, Result};
use crate::inputs::AttentionInputs;
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
/// (for stop strings and streaming). Errors only on empty or over-long prompts.
pub fn generate<B: Backend>(
    model: &LlamaForCausalLM<B>,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    mut observe: impl FnMut(usize, u32) -> bool,
) -> Result<Vec<Generation>> {
    let device = model.model.embed_tokens.weight.device();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    for (row, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() {
            return Err(ModelError::Generation { row, message: "the prompt is empty".into() });
        }
    }
    let needed = longest + config.max_new_tokens;
    if needed > model.max_positions() {
        return Err(ModelError::Generation {
            row: prompts.iter().position(|p| p.len() == longest).unwrap_or(0),
            message: format!(
                "prompt of {longest} tokens + {} new tokens exceeds the model's {} positions",
                config.max_new_tokens,
                model.max_positions()
            ),
        });
    }
    let batch = prompts.len();
    let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    let mut ids: Vec<i64> = Vec::with_capacity(batch * longest);
    for (prompt, &pad) in prompts.iter().zip(&pads) {
        ids.extend(std::iter::repeat_n(0, pad));
        ids.extend(prompt.iter().map(|&t| t as i64));
    }
    let mut contexts: Vec<Vec<u32>> = prompts.to_vec();
    let mut outputs: Vec<Option<Generation>> = vec![None; batch];
    let mut generated: Vec<Vec<u32>> = vec![Vec::new(); batch];
    let mut sampler = Sampler::new(config.sampling.clone());
    let mut cache = model.new_cache();
    let mut step_tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, longest]), &device);
    let mut step_inputs = AttentionInputs::left_padded(&pads, longest, 0, &device);
    for step in 0..config.max_new_tokens {
        let hidden = model.model.forward(step_tokens, &step_inputs, Some(&mut cache));
        let [_, seq, d_model] = hidden.dims();
        let last = hidden.slice([0..batch, seq - 1..seq, 0..d_model]);
        let logits = model.logits(last).into_data().convert::<f32>().into_vec::<f32>().unwrap_or_default();
        let vocab = logits.len() / batch;
        let mut next = vec![0i64; batch];
        for row in 0..batch {
            if outputs[row].is_some() {
                continue;
            }
            let mut row_logits = logits[row * vocab..(row + 1) * vocab].to_vec();
            let token = sampler.next_token(&mut row_logits, &contexts[row]);
            contexts[row].push(token);
            generated[row].push(token);
            next[row] = token as i64;
            let stopped = observe(row, token);
            let finish = if config.eos_token_ids.contains(&token) {
                Some(FinishReason::Eos)
            } else if stopped {
                Some(FinishReason::Stopped)
            } else if step + 1 == config.max_new_tokens {
                Some(FinishReason::Length)
            } else {
                None
            };
            if let Some(finish) = finish {
                outputs[row] = Some(Generation { ids: std::mem::take(&mut generated[row]), finish });
            }
        }
        if outputs.iter().all(Option::is_some) {
            break;
        }
        step_tokens = Tensor::from_data(TensorData::new(next, [batch, 1]), &device);
        step_inputs = AttentionInputs::left_padded(&pads, 1, cache.len(), &device);
    }
    Ok(outputs
        .into_iter()
        .zip(generated)
        .map(|(out, ids)| out.unwrap_or(Generation { ids, finish: FinishReason::Length }))
        .collect())
}
