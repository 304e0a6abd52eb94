//! What `precept sft`, `precept dpo`, `precept grpo` and the pipeline's training stages share:
//! a run under its safety gate, and how a finished run is printed.

use anyhow::Result;
use burn::tensor::FloatDType;
use precept_train::monitor::Monitor;
use precept_train::trainer::TrainOutcome;
use precept_train::{TrainConfig, TrainKernels};

use super::safety_gate::SafetyGate;
use crate::output::print_json;
use crate::progress::ProgressDisplay;

/// Runs `train` with `progress` under the safety gate `config.safety` asks for (none when it
/// names no suite); a stop by the gate becomes the gate's exit code.
pub fn train_watched<B: TrainKernels>(
    config: &TrainConfig,
    device: &B::Device,
    decode: Option<FloatDType>,
    mut progress: ProgressDisplay,
    train: impl FnOnce(&mut ProgressDisplay, Option<&mut dyn Monitor<B>>) -> precept_train::Result<TrainOutcome>,
) -> Result<TrainOutcome> {
    let mut gate = SafetyGate::<B>::new(config, device, decode)?;
    let monitor = gate.as_mut().map(|gate| gate as &mut dyn Monitor<B>);
    let result = train(&mut progress, monitor);
    progress.finish();
    match &gate {
        Some(gate) => gate.outcome(result),
        None => Ok(result?),
    }
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
