//! What `precept sft`, `precept dpo` and `precept grpo` share: how a finished run is printed.

use anyhow::Result;
use precept_train::trainer::TrainOutcome;

use crate::output::print_json;

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
