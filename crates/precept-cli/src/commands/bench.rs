//! `precept bench generate`: prefill and decode throughput.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::tensor::FloatDType;
use precept_model::generate::{generate, GenerationConfig};
use precept_model::sampling::SamplingConfig;
use precept_train::TrainKernels;
use serde::Serialize;

use super::bench_shape::check_generation;
use super::generate::check_sampling;
use crate::args::BenchGenerateArgs;
use crate::device::DeviceCommand;
use crate::loaded::load_weights;
use crate::output::{outln, print_json};

/// The command, ready to run on a backend.
pub struct BenchGenerate(pub BenchGenerateArgs);

#[derive(Serialize)]
struct BenchReport {
    batch: usize,
    prompt_tokens: usize,
    new_tokens: usize,
    /// Prompt tokens (all rows) per second of the first forward pass.
    prefill_tokens_per_s: f64,
    /// Generated tokens (all rows) per second after the first.
    decode_tokens_per_s: f64,
    /// Whole-call generated tokens per second, prefill included.
    end_to_end_tokens_per_s: f64,
    /// Every generated token id of the reported run's first row (to check determinism).
    first_row_ids: Vec<u32>,
}

impl DeviceCommand for BenchGenerate {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let args = self.0;
        if args.batch == 0 || args.prompt_tokens == 0 || args.new_tokens < 2 || args.repeat == 0 {
            bail!("--batch, --prompt-tokens and --repeat must be positive and --new-tokens at least 2");
        }
        check_sampling(args.temperature, args.top_p)?;
        let (config, model) = load_weights::<B>(&args.model, &device, decode)?;
        check_generation(&config, args.batch, args.prompt_tokens, args.new_tokens)?;
        // Fixed pseudo-text prompts, different from their first token on (identical rows, or a
        // common prefix, would be prefilled once): distinct ids spread over the vocabulary.
        let prompts: Vec<Vec<u32>> = (0..args.batch)
            .map(|row| {
                let id = |i: usize| ((i * 7919 + 13 + row * 104_729) % config.vocab_size) as u32;
                (0..args.prompt_tokens).map(id).collect()
            })
            .collect();
        let sampling = SamplingConfig { temperature: args.temperature, top_p: args.top_p, ..Default::default() };
        let settings = GenerationConfig { max_new_tokens: args.new_tokens, sampling, ..Default::default() };
        let mut timed: Vec<BenchReport> = Vec::new();
        for run in 0..=args.repeat {
            let started = Instant::now();
            let mut first_token_at = None;
            let outputs = generate(&model, &prompts, &settings, |_, _| {
                first_token_at.get_or_insert_with(Instant::now);
                false
            })?;
            let total = started.elapsed().as_secs_f64();
            let prefill = first_token_at.map_or(total, |t| t.duration_since(started).as_secs_f64());
            let decoded = (args.new_tokens - 1) * args.batch;
            let report = BenchReport {
                batch: args.batch,
                prompt_tokens: args.prompt_tokens,
                new_tokens: args.new_tokens,
                prefill_tokens_per_s: (args.prompt_tokens * args.batch) as f64 / prefill,
                decode_tokens_per_s: decoded as f64 / (total - prefill),
                end_to_end_tokens_per_s: (args.new_tokens * args.batch) as f64 / total,
                first_row_ids: outputs[0].ids.clone(),
            };
            tracing::info!(
                "run {run}{}: prefill {:.1} tok/s, decode {:.1} tok/s",
                if run == 0 { " (warm-up)" } else { "" },
                report.prefill_tokens_per_s,
                report.decode_tokens_per_s
            );
            if run > 0 {
                timed.push(report);
            }
        }
        // The median run by decode speed, as the peer scripts report.
        timed.sort_by(|a, b| a.decode_tokens_per_s.total_cmp(&b.decode_tokens_per_s));
        let median = timed.len() / 2;
        let Some(report) = timed.into_iter().nth(median) else { bail!("no timed run") };
        if args.json {
            return print_json(&report);
        }
        outln!(
            "batch {} × {} prompt tokens, {} new tokens: prefill {:.1} tok/s, decode {:.1} tok/s, end-to-end {:.1} tok/s",
            report.batch,
            report.prompt_tokens,
            report.new_tokens,
            report.prefill_tokens_per_s,
            report.decode_tokens_per_s,
            report.end_to_end_tokens_per_s
        )?;
        Ok(())
    }
}
