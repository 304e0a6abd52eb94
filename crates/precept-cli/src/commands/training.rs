//! What `precept sft`, `precept dpo` and `precept grpo` share: how a run's safety gate ends it
//! and how a finished run is printed.

use anyhow::Result;
use precept_train::trainer::TrainOutcome;
use precept_train::TrainKernels;

use super::safety_gate::SafetyGate;
use crate::output::print_json;

/// A run's result, with a stop by its safety gate (if it has one) turned into the gate's exit
/// code.
pub fn safety_outcome<B: TrainKernels>(
    gate: Option<&SafetyGate<'_, B>>,
    result: precept_train::Result<TrainOutcome>,
) -> Result<TrainOutcome> {
    match gate {
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
