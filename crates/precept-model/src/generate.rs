//! Autoregressive decoding of many prompts at once.
//!
//! Prompts of different lengths are left-padded into one batch; padding keys are masked and
//! positions start at each prompt's first real token, so a row decodes exactly as it would alone.
//! Decoding reuses an explicit [`KvCache`]: one prefill pass, then one token per row per step.
//! Rows with the same prompt (several samples of one conversation) share one prefill row, which
//! the cache copies to each of them after the first step; a prefix that every prompt shares (a
//! system prompt, few-shot turns) is filled once and copied to every row before the prefill.
//! [`generate_continuing`] also keeps each row's cache for later calls, whose prompts may
//! continue those conversations ([`ContinuationCache`]).

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData};

use crate::backend::KernelBackend;
use crate::continuation::{ContinuationCache, Reuse};
use crate::error::{ModelError, Result};
use crate::host::host_values;
use crate::inputs::AttentionInputs;
use crate::kv_cache::{KvCache, LayerKv};
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

/// One prompt with its own decoding settings, for [`generate_each`].
#[derive(Debug, Clone)]
pub struct RowRequest {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Most new tokens for this row.
    pub max_new_tokens: usize,
    /// How this row's next token is chosen (its own seeded generator).
    pub sampling: SamplingConfig,
}

/// Decodes every prompt in one batch, all with `config`'s settings and one shared random
/// generator.
///
/// `observe(row, token)` is called for each new token in order; returning `true` stops that row
/// (for stop strings and streaming). Rows that finish leave the batch, so the rest decode
/// faster. Errors only on empty or over-long prompts.
pub fn generate<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    observe: impl FnMut(usize, u32) -> bool,
) -> Result<Vec<Generation>> {
    generate_with(model, prompts, config, None, observe)
}

/// [`generate`], taking the start of each prompt that a row of an earlier call already covers
/// from `continuation` instead of prefilling it, and keeping this call's rows there for later
/// calls. Gives the tokens [`generate`] gives (a cache of tensors, off the CPU, keeps nothing).
pub fn generate_continuing<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    continuation: &mut ContinuationCache,
    observe: impl FnMut(usize, u32) -> bool,
) -> Result<Vec<Generation>> {
    generate_with(model, prompts, config, Some(continuation), observe)
}

fn generate_with<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    continuation: Option<&mut ContinuationCache>,
    mut observe: impl FnMut(usize, u32) -> bool,
) -> Result<Vec<Generation>> {
    let limits = vec![config.max_new_tokens; prompts.len()];
    let mut sampler = Sampler::new(config.sampling.clone());
    let choose = |_: usize, logits: &mut [f32], context: &[u32]| sampler.next_token(logits, context);
    let observe = |row, token, _: &[f32]| observe(row, token);
    decode(model, (prompts, &limits), &config.eos_token_ids, continuation, choose, observe)
}

/// Decodes rows that each bring their own token limit and sampling settings (a server's
/// requests sharing forward passes), starting from `continuation`'s kept rows and keeping this
/// call's there, as [`generate_continuing`] does, when one is given.
///
/// `observe(row, token, logits)` sees each new token with the row's raw logits of that step
/// (before penalties and temperature), for log-probabilities; returning `true` stops the row.
/// Errors only on empty or over-long prompts.
pub fn generate_each<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    rows: &[RowRequest],
    eos_token_ids: &[u32],
    continuation: Option<&mut ContinuationCache>,
    observe: impl FnMut(usize, u32, &[f32]) -> bool,
) -> Result<Vec<Generation>> {
    let prompts: Vec<Vec<u32>> = rows.iter().map(|r| r.prompt.clone()).collect();
    let limits: Vec<usize> = rows.iter().map(|r| r.max_new_tokens).collect();
    let mut samplers: Vec<Sampler> = rows.iter().map(|r| Sampler::new(r.sampling.clone())).collect();
    let choose = |row: usize, logits: &mut [f32], context: &[u32]| samplers[row].next_token(logits, context);
    decode(model, (&prompts, &limits), eos_token_ids, continuation, choose, observe)
}

/// The decoding loop: `choose(row, logits, context)` picks each token from a copy of the logits.
fn decode<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    (prompts, limits): (&[Vec<u32>], &[usize]),
    eos_token_ids: &[u32],
    mut continuation: Option<&mut ContinuationCache>,
    mut choose: impl FnMut(usize, &mut [f32], &[u32]) -> u32,
    mut observe: impl FnMut(usize, u32, &[f32]) -> bool,
) -> Result<Vec<Generation>> {
    check_prompts(model, prompts, limits)?;
    if let Some(continuation) = continuation.as_deref_mut() {
        continuation.begin_call();
    }
    let device = model.model.embed_tokens.weight.device();
    let mut rows: Vec<Row> =
        prompts.iter().map(|p| Row { context: p.clone(), generated: Vec::new(), finish: None }).collect();
    // Original indices of the rows still in the batch, in batch order.
    let mut active: Vec<usize> = (0..prompts.len()).filter(|&i| limits[i] > 0).collect();
    for (row, _) in rows.iter_mut().zip(limits).filter(|(_, &limit)| limit == 0) {
        row.finish = Some(FinishReason::Length);
    }
    if active.is_empty() {
        return Ok(rows.into_iter().map(Row::into_generation).collect());
    }
    // Rows with the same prompt share one prefill; `cache_rows[position]` is the cache row (and
    // logits row) of each active row until the cache is expanded after the first step.
    let (prefilled, mut cache_rows) = distinct_prompts(prompts, &active);
    let (mut cache, starts) = start_cache(model, prompts, &prefilled, continuation.as_deref_mut());
    let cached = cache.len();
    let own: Vec<usize> = prefilled.iter().zip(&starts).map(|(&i, &start)| prompts[i].len() - start).collect();
    let rest = own.iter().copied().max().unwrap_or(0);
    // Between a row's first `start` cached tokens and its own: the rest of the cache, then
    // left padding up to the longest row.
    let prefill_pads: Vec<usize> = starts.iter().zip(&own).map(|(&start, &own)| cached - start + rest - own).collect();
    let mut ids: Vec<i64> = Vec::with_capacity(prefilled.len() * rest);
    for ((&i, &start), &own) in prefilled.iter().zip(&starts).zip(&own) {
        ids.extend(std::iter::repeat_n(0, rest - own));
        ids.extend(prompts[i][start..].iter().map(|&t| t as i64));
    }
    // Each active row's cached start and padding are its prefill row's.
    let mut row_starts: Vec<usize> = cache_rows.iter().map(|&at| starts[at]).collect();
    let mut pads: Vec<usize> = cache_rows.iter().map(|&at| prefill_pads[at]).collect();
    let mut cache_batch = prefilled.len();
    let mut step_tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [prefilled.len(), rest]), &device);
    let mut step_inputs = AttentionInputs::padded_after(&starts, &prefill_pads, rest, cached, &device);
    for step in 0.. {
        let logits = last_logits(model, step_tokens, &step_inputs, &mut cache);
        let vocab = logits.len() / cache_batch;
        let mut kept = Vec::with_capacity(active.len());
        let mut next = Vec::with_capacity(active.len());
        for (position, &index) in active.iter().enumerate() {
            let row = &mut rows[index];
            let at = cache_rows[position];
            let raw = &logits[at * vocab..(at + 1) * vocab];
            let token = choose(index, &mut raw.to_vec(), &row.context);
            row.context.push(token);
            row.generated.push(token);
            let stopped = observe(index, token, raw);
            row.finish = if eos_token_ids.contains(&token) {
                Some(FinishReason::Eos)
            } else if stopped {
                Some(FinishReason::Stopped)
            } else if step + 1 == limits[index] {
                Some(FinishReason::Length)
            } else {
                kept.push(position);
                next.push(token as i64);
                None
            };
            if let Some(continuation) = continuation.as_deref_mut().filter(|_| row.finish.is_some()) {
                let padding = row_starts[position]..row_starts[position] + pads[position];
                if let Some(kv) = cache.host_row(cache_rows[position], padding) {
                    // The cache covers the context but the token just chosen.
                    debug_assert_eq!(kv.len(), row.context.len() - 1);
                    continuation.keep(row.context[..row.context.len() - 1].to_vec(), kv);
                }
            }
        }
        if kept.is_empty() {
            break;
        }
        let expanded: Vec<usize> = kept.iter().map(|&p| cache_rows[p]).collect();
        if expanded.len() != cache_batch || expanded.iter().enumerate().any(|(row, &at)| row != at) {
            cache.retain_rows(&expanded, &device);
            cache_batch = expanded.len();
        }
        pads = kept.iter().map(|&p| pads[p]).collect();
        row_starts = kept.iter().map(|&p| row_starts[p]).collect();
        active = kept.iter().map(|&p| active[p]).collect();
        cache_rows = (0..active.len()).collect();
        step_tokens = Tensor::from_data(TensorData::new(next, [active.len(), 1]), &device);
        step_inputs = AttentionInputs::padded_after(&row_starts, &pads, 1, cache.len(), &device);
    }
    Ok(rows.into_iter().map(Row::into_generation).collect())
}

/// A cache already holding what this call need not prefill, and how many tokens of each prefilled
/// row's prompt it holds: for each row the longest start that a row kept in `continuation`
/// covers, or else the prefix every prompt shares (filled once), whichever saves more prefill.
fn start_cache<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    prompts: &[Vec<u32>],
    prefilled: &[usize],
    continuation: Option<&mut ContinuationCache>,
) -> (KvCache<B>, Vec<usize>) {
    let mut cache = model.new_cache();
    let on_host = cache.layers.iter().all(LayerKv::is_on_host);
    if let Some(continuation) = continuation.filter(|c| on_host && !c.is_empty()) {
        let matches: Vec<Option<Reuse>> = prefilled.iter().map(|&i| continuation.longest_match(&prompts[i])).collect();
        let reused: usize = matches.iter().flatten().map(|reuse| reuse.tokens).sum();
        let shared = shared_prefix_len(prompts, prefilled);
        if reused > shared * prefilled.len().saturating_sub(1) {
            let starts: Vec<usize> = matches.iter().map(|reuse| reuse.map_or(0, |r| r.tokens)).collect();
            let len = starts.iter().copied().max().unwrap_or(0);
            continuation.seed(&mut cache, &matches, len);
            return (cache, starts);
        }
    }
    let shared = fill_shared_prefix(model, prompts, prefilled, &mut cache);
    (cache, vec![shared; prefilled.len()])
}

/// Fewest tokens worth filling once for all rows rather than once per row.
const MIN_SHARED_PREFIX: usize = 8;

/// Fills `cache` with the prefix that all `prefilled` rows' prompts share, once, copied to each
/// row, and returns its length; 0 (and an untouched cache) for one row or a short prefix. Each row
/// keeps at least its last prompt token for the prefill, whose logits choose its first token.
pub(crate) fn fill_shared_prefix<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    prompts: &[Vec<u32>],
    prefilled: &[usize],
    cache: &mut KvCache<B>,
) -> usize {
    let shared = shared_prefix_len(prompts, prefilled);
    if shared == 0 {
        return 0;
    }
    let device = model.model.embed_tokens.weight.device();
    let ids: Vec<i64> = prompts[prefilled[0]][..shared].iter().map(|&t| t as i64).collect();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, shared]), &device);
    model.model.forward(tokens, &AttentionInputs::causal(1, shared, 0, &device), Some(cache));
    cache.retain_rows(&vec![0; prefilled.len()], &device);
    shared
}

/// How many leading tokens the prompts of `rows` share, leaving each at least one of its own;
/// 0 for a single row or fewer than [`MIN_SHARED_PREFIX`].
fn shared_prefix_len(prompts: &[Vec<u32>], rows: &[usize]) -> usize {
    let [first, rest @ ..] = rows else { return 0 };
    if rest.is_empty() {
        return 0;
    }
    let shortest = rows.iter().map(|&i| prompts[i].len()).min().unwrap_or(0);
    let shared = rest.iter().fold(shortest.saturating_sub(1), |shared, &i| {
        prompts[*first].iter().zip(&prompts[i]).take(shared).take_while(|(a, b)| a == b).count()
    });
    if shared < MIN_SHARED_PREFIX {
        0
    } else {
        shared
    }
}

/// The first row of each distinct prompt among `active` rows, and for each active row the position
/// of its prompt in that list.
fn distinct_prompts(prompts: &[Vec<u32>], active: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut first_rows: Vec<usize> = Vec::new();
    let mut seen: HashMap<&[u32], usize> = HashMap::new();
    let positions = active
        .iter()
        .map(|&row| {
            *seen.entry(prompts[row].as_slice()).or_insert_with(|| {
                first_rows.push(row);
                first_rows.len() - 1
            })
        })
        .collect();
    (first_rows, positions)
}

/// One prompt's decoding state.
struct Row {
    context: Vec<u32>,
    generated: Vec<u32>,
    finish: Option<FinishReason>,
}

impl Row {
    fn into_generation(self) -> Generation {
        Generation { ids: self.generated, finish: self.finish.unwrap_or(FinishReason::Length) }
    }
}

/// Runs one step and returns the last position's logits of every row, `[rows · vocab]`.
fn last_logits<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    tokens: Tensor<B, 2, Int>,
    inputs: &AttentionInputs<B>,
    cache: &mut KvCache<B>,
) -> Vec<f32> {
    let hidden = model.model.forward(tokens, inputs, Some(cache));
    let [batch, seq, d_model] = hidden.dims();
    let last = hidden.slice([0..batch, seq - 1..seq, 0..d_model]);
    // f32 conversion of backend data cannot fail for a float tensor.
    host_values(model.logits(last))
}

/// Rejects empty prompts and prompts that cannot grow by their token limit within the model.
fn check_prompts<B: KernelBackend>(model: &LlamaForCausalLM<B>, prompts: &[Vec<u32>], limits: &[usize]) -> Result<()> {
    if let Some(row) = prompts.iter().position(Vec::is_empty) {
        return Err(ModelError::Generation { row, message: "the prompt is empty".into() });
    }
    // Checked: a limit near `usize::MAX` must not wrap into a small total.
    let fits =
        |prompt: &Vec<u32>, limit: usize| prompt.len().checked_add(limit).is_some_and(|n| n <= model.max_positions());
    let too_long = prompts.iter().zip(limits).position(|(p, &limit)| !fits(p, limit));
    if let Some(row) = too_long {
        return Err(ModelError::Generation {
            row,
            message: format!(
                "prompt of {} tokens + {} new tokens exceeds the model's {} positions",
                prompts[row].len(),
                limits[row],
                model.max_positions()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_prefix_stops_at_the_first_difference_and_leaves_every_row_a_token() {
        let prefix: Vec<u32> = (0..10).collect();
        let with = |tail: &[u32]| [prefix.as_slice(), tail].concat();
        let prompts = vec![with(&[50, 51]), with(&[50, 52, 53]), with(&[60]), prefix[..9].to_vec(), with(&[50])];
        assert_eq!(shared_prefix_len(&prompts, &[0, 1]), 11);
        assert_eq!(shared_prefix_len(&prompts, &[0, 1, 2]), 10);
        // The shortest prompt is the prefix itself: one token stays for its prefill.
        assert_eq!(shared_prefix_len(&prompts, &[0, 4]), 10);
        assert_eq!(shared_prefix_len(&prompts, &[0, 3]), 8);
        assert_eq!(shared_prefix_len(&prompts, &[0]), 0, "one row has nothing to share");
        let short = vec![vec![1, 2, 3, 4], vec![1, 2, 3, 5]];
        assert_eq!(shared_prefix_len(&short, &[0, 1]), 0, "three tokens are not worth a pass");
    }
}
