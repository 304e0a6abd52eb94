//! `precept sft`: settings from `--config` overridden by flags, validated before anything loads,
//! then the training loop with a progress bar (or log lines) and the outcome.

use std::path::Path;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use indicatif::ProgressBar;
use precept_train::sft::{train_sft, Method, RunPlan, SftConfig, TrainObserver};
use serde_json::{Map, Value};

use crate::args::{MethodArg, SftArgs};
use crate::device::DeviceCommand;
use crate::output::print_json;
use crate::progress::progress_bar;

/// Resolved settings, ready to run on a backend.
pub struct Sft {
    config: SftConfig,
    resume: bool,
    json: bool,
    quiet: bool,
}

impl Sft {
    /// Reads `--config`, applies the flags and validates the result.
    pub fn resolve(args: SftArgs, quiet: bool) -> Result<Self> {
        let mut config = match &args.config {
            Some(path) => read_config(path)?,
            None => SftConfig::default(),
        };
        apply_overrides(&mut config, &args);
        config.validate().context("invalid SFT settings")?;
        Ok(Self { config, resume: args.resume, json: args.json, quiet })
    }
}

/// Parses a TOML settings file; errors name the file, line and key.
pub fn read_config(path: &Path) -> Result<SftConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: invalid settings", path.display()))
}

fn apply_overrides(config: &mut SftConfig, args: &SftArgs) {
    let paths = [(&args.model, &mut config.model), (&args.data, &mut config.data), (&args.out, &mut config.out)];
    for (flag, field) in paths {
        if let Some(value) = flag {
            field.clone_from(value);
        }
    }
    if args.eval_data.is_some() {
        config.eval_data.clone_from(&args.eval_data);
    }
    if let Some(method) = args.method {
        config.method = match method {
            MethodArg::Lora => Method::Lora,
            MethodArg::Full => Method::Full,
        };
    }
    if let Some(r) = args.lora_r {
        config.lora.r = r;
    }
    if let Some(alpha) = args.lora_alpha {
        config.lora.alpha = alpha;
    }
    if let Some(lr) = args.lr {
        config.learning_rate = lr;
    }
    if let Some(steps) = args.steps {
        config.max_steps = Some(steps);
    }
    if let Some(epochs) = args.epochs {
        config.num_train_epochs = epochs;
        config.max_steps = None;
    }
    if let Some(batch_size) = args.batch_size {
        config.per_device_train_batch_size = batch_size;
    }
    if let Some(grad_accum) = args.grad_accum {
        config.gradient_accumulation_steps = grad_accum;
    }
    if let Some(max_length) = args.max_length {
        config.max_length = max_length;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(save_steps) = args.save_steps {
        config.save_steps = save_steps;
    }
    config.packing |= args.packing;
    config.merge |= args.merge;
}

impl DeviceCommand for Sft {
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let mut progress = Progress { bar: None, quiet: self.quiet };
        let outcome = train_sft::<Autodiff<B>>(&self.config, &device, self.resume, &mut progress)
            .with_context(|| format!("training into {}", self.config.out.display()))?;
        if let Some(bar) = progress.bar {
            bar.finish_and_clear();
        }
        if self.json {
            print_json(&serde_json::json!({
                "output": outcome.output,
                "merged": outcome.merged,
                "steps": outcome.steps,
                "loss": outcome.final_loss,
                "eval_loss": outcome.eval_loss,
            }))?;
        } else {
            tracing::info!(
                "{} steps, final loss {:.4}; wrote {}",
                outcome.steps,
                outcome.final_loss,
                outcome.output.display()
            );
            if let Some(merged) = outcome.merged {
                tracing::info!("merged model: {}", merged.display());
            }
        }
        Ok(())
    }
}

/// Shows training progress: a bar on a terminal, log lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl TrainObserver for Progress {
    fn on_start(&mut self, plan: &RunPlan) {
        let stats = &plan.stats;
        tracing::info!(
            "{} training and {} eval examples ({} truncated, {} dropped as too long); steps {}..{}",
            plan.train_examples,
            plan.eval_examples,
            stats.truncated,
            stats.dropped_for_length,
            plan.start_step,
            plan.total_steps
        );
        let bar = progress_bar(plan.total_steps, "steps", self.quiet);
        bar.set_position(plan.start_step);
        self.bar = Some(bar);
    }

    fn on_step(&mut self, record: &Map<String, Value>) {
        let number = |name: &str| record.get(name).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let line = format!(
            "loss {:.4} lr {:.2e} grad_norm {:.3} acc {:.3} {:.0} tok/s",
            number("loss"),
            number("learning_rate"),
            number("grad_norm"),
            number("mean_token_accuracy"),
            number("tokens_per_second")
        );
        let step = record.get("step").and_then(Value::as_u64).unwrap_or(0);
        match &self.bar {
            Some(bar) if !bar.is_hidden() => {
                bar.set_message(line);
                bar.set_position(step);
            }
            _ => tracing::info!("step {step}: {line}"),
        }
    }

    fn on_eval(&mut self, step: u64, eval_loss: f64) {
        tracing::info!("step {step}: eval_loss {eval_loss:.4}");
    }

    fn on_checkpoint(&mut self, dir: &Path) {
        tracing::debug!("checkpoint {}", dir.display());
    }
}
