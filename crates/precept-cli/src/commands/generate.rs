//! `precept generate`: continuations or chat replies for one or more prompts, batched.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::tensor::FloatDType;
use precept_data::ReplyText;
use precept_model::generate::{generate, FinishReason, GenerationConfig};
use precept_model::sampling::SamplingConfig;
use precept_train::TrainKernels;
use serde::Serialize;

use crate::args::{GenerateArgs, SamplingArgs};
use crate::device::DeviceCommand;
use crate::loaded::{load_weights, TextModel};
use crate::output::{print_json, write_stdout};

/// The command, ready to run on a backend.
pub struct Generate(pub GenerateArgs);

#[derive(Serialize)]
struct GeneratedReport {
    prompt: String,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    text: String,
    finish_reason: &'static str,
}

/// Refuses a temperature below 0 (or not finite) and a top-p outside `(0, 1]`.
pub fn check_sampling(temperature: f32, top_p: f32) -> Result<()> {
    if !(temperature >= 0.0 && temperature.is_finite()) {
        bail!("--temperature {temperature} must be a number of at least 0 (0 is greedy)");
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        bail!("--top-p {top_p} must be above 0 and at most 1");
    }
    Ok(())
}

impl SamplingArgs {
    /// Refuses settings that would not define a distribution (see [`check_sampling`]), and a
    /// repetition penalty that is not positive.
    pub fn check(&self) -> Result<()> {
        check_sampling(self.temperature, self.top_p)?;
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            bail!("--repetition-penalty {} must be positive (1 is off)", self.repetition_penalty);
        }
        Ok(())
    }

    /// Generation settings with the model's EOS ids.
    pub fn generation_config(&self, eos_token_ids: Vec<u32>) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            sampling: SamplingConfig {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                repetition_penalty: self.repetition_penalty,
                seed: self.seed,
            },
            eos_token_ids,
        }
    }
}

impl DeviceCommand for Generate {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let args = self.0;
        args.sampling.check()?;
        let text_model = TextModel::open(&args.common.model)?;
        let prompts: Vec<String> =
            args.prompt.iter().map(|p| text_model.prompt_text(p, args.common.chat)).collect::<Result<_>>()?;
        let prompt_ids: Vec<Vec<u32>> = prompts.iter().map(|p| text_model.encode(p)).collect::<Result<_>>()?;
        let (_, model) = load_weights::<B>(&args.common.model, &device, decode)?;
        let tokenizer = &text_model.tokenizer;
        let config = args.sampling.generation_config(tokenizer.eos_token_ids());
        let mut rows: Vec<ReplyText> = prompts.iter().map(|_| ReplyText::new(tokenizer, &args.sampling.stop)).collect();
        // Stream text to the terminal when there is one prompt and no JSON.
        let stream = !args.common.json && prompts.len() == 1;
        let started = Instant::now();
        let mut streamed = Ok(());
        let results = generate(&model, &prompt_ids, &config, |row, token| {
            let stop = rows[row].push(token);
            if stream && streamed.is_ok() {
                streamed = write_stdout(&rows[row].take_fragment());
            }
            // Nothing more can be shown once stdout is closed.
            stop || streamed.is_err()
        })?;
        streamed?;
        let seconds = started.elapsed().as_secs_f64();
        let total: usize = results.iter().map(|r| r.ids.len()).sum();
        tracing::info!("{total} tokens in {seconds:.2}s ({:.1} tokens/s)", total as f64 / seconds);
        for (((prompt, ids), result), row) in prompts.into_iter().zip(prompt_ids).zip(results).zip(&rows) {
            let report = GeneratedReport {
                prompt,
                prompt_ids: ids,
                text: row.final_text(),
                finish_reason: match result.finish {
                    FinishReason::Eos => "eos",
                    FinishReason::Stopped => "stop",
                    FinishReason::Length => "length",
                },
                generated_ids: result.ids,
            };
            if args.common.json {
                print_json(&report)?;
            } else if stream {
                write_stdout("\n")?;
            } else {
                write_stdout(&format!("{}\n---\n", report.text))?;
            }
        }
        Ok(())
    }
}
