//! The size flags of `precept bench generate` and `precept bench train`, checked before anything
//! is allocated: counts multiply without wrapping, sequences fit the model's context, and the
//! memory the shape needs at the least (key/value cache or activations and logits, in float32)
//! fits this machine, so an absurd flag is an error naming it rather than an aborted allocation.

use anyhow::{bail, Result};
use precept_data::host_memory;
use precept_model::LlamaConfig;

/// Bytes of one float32 value.
const F32_BYTES: u128 = 4;

/// Values a decoder layer keeps per token for its backward pass, in units of `hidden_size`: a
/// floor (the attention and MLP inputs and outputs), not an estimate of the peak.
const ACTIVATIONS_PER_LAYER: u128 = 12;

/// Checks `--batch` rows of `--prompt-tokens` plus `--new-tokens` for generation; returns the
/// context length of a row.
pub fn check_generation(config: &LlamaConfig, batch: usize, prompt_tokens: usize, new_tokens: usize) -> Result<usize> {
    let Some(context) = prompt_tokens.checked_add(new_tokens).filter(|&c| c <= config.max_position_embeddings) else {
        bail!(
            "--prompt-tokens {prompt_tokens} + --new-tokens {new_tokens} exceed the model's context of {} positions",
            config.max_position_embeddings
        );
    };
    let per_token = 2 * config.num_hidden_layers as u128 * config.num_key_value_heads as u128 * config.head_dim as u128;
    let values =
        (batch as u128).saturating_mul((context as u128).saturating_mul(per_token) + config.vocab_size as u128);
    check_memory(values, &format!("--batch {batch} rows of {context} tokens"))?;
    Ok(context)
}

/// Checks a training step over `rows` rows of `seq` tokens; returns the token count.
pub fn check_training(config: &LlamaConfig, rows: usize, seq: usize) -> Result<usize> {
    if seq > config.max_position_embeddings {
        bail!("--seq {seq} exceeds the model's context of {} positions", config.max_position_embeddings);
    }
    let Some(tokens) = rows.checked_mul(seq) else { bail!("{rows} rows × --seq {seq} overflow") };
    let per_token = config.vocab_size as u128
        + ACTIVATIONS_PER_LAYER * config.num_hidden_layers as u128 * config.hidden_size as u128;
    check_memory((tokens as u128).saturating_mul(per_token), &format!("{rows} rows × --seq {seq}"))?;
    Ok(tokens)
}

fn check_memory(values: u128, shape: &str) -> Result<()> {
    let (needed, memory) = (values.saturating_mul(F32_BYTES), u128::from(host_memory()));
    if needed > memory {
        let gib = |bytes: u128| bytes as f64 / f64::from(1u32 << 30);
        bail!("{shape} need at least {:.1} GiB, more than this machine's {:.1} GiB", gib(needed), gib(memory));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_within_the_context_and_memory_pass_and_absurd_ones_name_their_flags() {
        let config = LlamaConfig::tiny();
        let context = config.max_position_embeddings;
        assert_eq!(check_generation(&config, 2, 8, 8).unwrap(), 16);
        assert_eq!(check_training(&config, 2, 16).unwrap(), 32);
        let error = |r: Result<usize>| r.unwrap_err().to_string();
        assert!(error(check_generation(&config, 1, usize::MAX, 2)).contains("exceed the model's context"));
        assert!(error(check_generation(&config, 1, context, 1)).contains("--new-tokens 1"));
        assert!(error(check_generation(&config, usize::MAX, 1, 1)).contains("more than this machine's"));
        assert!(error(check_training(&config, 2, context + 1)).contains("--seq"));
        assert!(error(check_training(&config, usize::MAX, 2)).contains("overflow"));
        assert!(error(check_training(&config, usize::MAX / 4, 2)).contains("need at least"));
    }
}
