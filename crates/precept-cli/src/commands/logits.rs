//! `precept logits`: last-position top-K logits and the sequence log-probability.

use anyhow::{bail, Result};
use burn::tensor::FloatDType;
use burn::tensor::{Int, Tensor, TensorData};
use precept_model::AttentionInputs;
use precept_train::TrainKernels;
use serde::Serialize;

use crate::args::LogitsArgs;
use crate::device::DeviceCommand;
use crate::loaded::{load_weights, TextModel};
use crate::output::{outln, print_json};

/// The command, ready to run on a backend.
pub struct Logits(pub LogitsArgs);

#[derive(Serialize)]
struct LogitsReport {
    input_ids: Vec<u32>,
    top_ids: Vec<u32>,
    top_logits: Vec<f32>,
    /// `Σ log p(token_i | tokens_<i)` over positions 1..n, natural log.
    sequence_logprob: f64,
}

impl DeviceCommand for Logits {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let args = self.0;
        let ids = match (&args.ids, &args.text) {
            (Some(ids), _) => ids.clone(),
            (None, Some(text)) => {
                let text_model = TextModel::open(&args.common.model)?;
                text_model.encode(&text_model.prompt_text(text, args.common.chat)?)?
            }
            (None, None) => bail!("give --text or --ids"),
        };
        if ids.is_empty() {
            bail!("the input has no tokens");
        }
        let (config, model) = load_weights::<B>(&args.common.model, &device, decode)?;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= config.vocab_size) {
            bail!("token id {bad} is outside the vocabulary of {} ids", config.vocab_size);
        }
        if ids.len() > model.max_positions() {
            bail!("{} tokens exceed the model's {} positions", ids.len(), model.max_positions());
        }
        let seq = ids.len();
        let tokens =
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids.iter().map(|&i| i as i64).collect(), [1, seq]), &device);
        let logits = model.forward(tokens, &AttentionInputs::causal(1, seq, 0, &device), None);
        let values = precept_model::host_values(logits);
        let vocab = config.vocab_size;
        let rows: Vec<&[f32]> = values.chunks(vocab).collect();
        let last = rows[seq - 1];
        let mut top_ids: Vec<u32> = (0..vocab as u32).collect();
        top_ids.sort_by(|&a, &b| last[b as usize].total_cmp(&last[a as usize]).then(a.cmp(&b)));
        top_ids.truncate(args.top);
        let report = LogitsReport {
            sequence_logprob: sequence_logprob(&rows, &ids),
            top_logits: top_ids.iter().map(|&i| last[i as usize]).collect(),
            top_ids,
            input_ids: ids,
        };
        if args.common.json {
            return print_json(&report);
        }
        outln!("{} input tokens; sequence log-probability {:.6}", report.input_ids.len(), report.sequence_logprob)?;
        for (id, logit) in report.top_ids.iter().zip(&report.top_logits) {
            outln!("{id:>8}  {logit:>12.6}")?;
        }
        Ok(())
    }
}

/// `Σ_{i≥1} log_softmax(logits[i-1])[ids[i]]`, accumulated in float64.
fn sequence_logprob(rows: &[&[f32]], ids: &[u32]) -> f64 {
    ids.iter()
        .enumerate()
        .skip(1)
        .map(|(i, &id)| {
            let row = rows[i - 1];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_sum = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
            row[id as usize] as f64 - log_sum
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_logprob_sums_next_token_log_softmax() {
        let second = [2.0f32.ln(), 0.0];
        let rows: Vec<&[f32]> = vec![&[0.0, 0.0], &second, &[0.0, 0.0]];
        // p(1 | row0) = 1/2, p(0 | row1) = 2/3
        let expected = 0.5f64.ln() + (2.0f64 / 3.0).ln();
        assert!((sequence_logprob(&rows, &[7, 1, 0]) - expected).abs() < 1e-7);
    }
}
