//! What `precept sft` and `precept dpo` share: reading a settings file with flag overrides, the
//! progress display of a training run, and how its outcome is printed.

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use precept_train::trainer::{RunPlan, TrainObserver, TrainOutcome};
use precept_train::{parse_settings, TrainConfig, Tuning};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::args::{TrainArgs, TuningArg};
use crate::output::print_json;
use crate::progress::progress_bar;

/// Reads `--config` (or starts from the defaults); errors name the file, line and key.
pub fn read_settings<T: DeserializeOwned + Serialize + Default>(config: Option<&Path>) -> Result<T> {
    let Some(path) = config else { return Ok(T::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_settings(&text, path)?)
}

/// Writes the flags given over the settings.
pub fn apply_train_overrides(config: &mut TrainConfig, args: &TrainArgs) {
    let paths = [(&args.model, &mut config.model), (&args.data, &mut config.data), (&args.out, &mut config.out)];
    for (flag, field) in paths {
        if let Some(value) = flag {
            field.clone_from(value);
        }
    }
    if args.eval_data.is_some() {
        config.eval_data.clone_from(&args.eval_data);
    }
    if let Some(tuning) = args.tuning {
        config.tuning = match tuning {
            TuningArg::Lora => Tuning::Lora,
            TuningArg::Full => Tuning::Full,
        };
    }
    let numbers = [
        (args.lora_r, &mut config.lora.r),
        (args.batch_size, &mut config.per_device_train_batch_size),
        (args.grad_accum, &mut config.gradient_accumulation_steps),
        (args.max_length, &mut config.max_length),
    ];
    for (flag, field) in numbers {
        if let Some(value) = flag {
            *field = value;
        }
    }
    let floats = [(args.lora_alpha, &mut config.lora.alpha), (args.lr, &mut config.learning_rate)];
    for (flag, field) in floats {
        if let Some(value) = flag {
            *field = value;
        }
    }
    if let Some(steps) = args.steps {
        config.max_steps = Some(steps);
    }
    if let Some(epochs) = args.epochs {
        config.num_train_epochs = epochs;
        config.max_steps = None;
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

/// Prints a finished run: JSON for scripts, log lines otherwise.
pub fn print_outcome(outcome: &TrainOutcome, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({
            "output": outcome.output,
            "merged": outcome.merged,
            "steps": outcome.steps,
            "loss": outcome.final_loss,
            "eval": outcome.eval,
        }));
    }
    tracing::info!("{} steps, final loss {:.4}; wrote {}", outcome.steps, outcome.final_loss, outcome.output.display());
    if let Some(merged) = &outcome.merged {
        tracing::info!("merged model: {}", merged.display());
    }
    Ok(())
}

/// Shows training progress: a bar on a terminal, log lines otherwise. `columns` are the step
/// metrics shown, with their labels.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    columns: &'static [(&'static str, &'static str)],
}

impl Progress {
    /// A display of `columns` (metric name, label).
    pub fn new(quiet: bool, columns: &'static [(&'static str, &'static str)]) -> Self {
        Self { bar: None, quiet, columns }
    }

    /// Clears the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }

    fn line(&self, record: &Map<String, Value>, names: impl Iterator<Item = (String, &'static str)>) -> String {
        names
            .filter_map(|(name, label)| {
                let value = record.get(&name)?.as_f64()?;
                Some(if value.abs() >= 1e-2 || value == 0.0 {
                    format!("{label} {value:.4}")
                } else {
                    format!("{label} {value:.2e}")
                })
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl TrainObserver for Progress {
    fn on_start(&mut self, plan: &RunPlan) {
        let stats = &plan.data.stats;
        tracing::info!(
            "{} training and {} eval examples ({} truncated, {} dropped as too long); steps {}..{}",
            plan.data.train_examples,
            plan.data.eval_examples,
            stats.truncated,
            stats.dropped_for_length,
            plan.start_step,
            plan.total_steps
        );
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let bar = progress_bar(plan.total_steps, "steps", self.quiet);
        bar.set_position(plan.start_step);
        self.bar = Some(bar);
    }

    fn on_step(&mut self, record: &Map<String, Value>) {
        let mut line = self.line(record, self.columns.iter().map(|&(name, label)| (name.to_string(), label)));
        if let Some(rate) = record.get("tokens_per_second").and_then(Value::as_f64) {
            line.push_str(&format!(" {rate:.0} tok/s"));
        }
        let step = record.get("step").and_then(Value::as_u64).unwrap_or(0);
        match &self.bar {
            Some(bar) if !bar.is_hidden() => {
                bar.set_message(line);
                bar.set_position(step);
            }
            _ => tracing::info!("step {step}: {line}"),
        }
    }

    fn on_eval(&mut self, record: &Map<String, Value>) {
        let step = record.get("step").and_then(Value::as_u64).unwrap_or(0);
        let line = self.line(record, self.columns.iter().map(|&(name, label)| (format!("eval_{name}"), label)));
        tracing::info!("step {step}: eval {line}");
    }

    fn on_checkpoint(&mut self, dir: &Path) {
        tracing::debug!("checkpoint {}", dir.display());
    }

    fn on_prepare(&mut self, what: &str, done: usize, total: usize) {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = progress_bar(total as u64, "pairs", self.quiet);
            bar.set_message(what.to_string());
            bar
        });
        let before = bar.position() as usize;
        bar.set_position(done as u64);
        // Without a bar, a line at every tenth.
        if bar.is_hidden() && (done == total || before * 10 / total.max(1) != done * 10 / total.max(1)) {
            tracing::info!("{what}: {done}/{total}");
        }
    }

    fn on_note(&mut self, message: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(message),
            _ => tracing::info!("{message}"),
        }
    }
}
