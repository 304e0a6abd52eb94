//! Arguments of `precept eval` and its subcommands.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use precept_data::resolve_settings;
use precept_eval::EvalSettings;
pub use precept_eval::JudgeKind;
use serde::Serialize;

use crate::commands::remote::ConnectionFlags;

/// `precept eval`: the gate, or one of its helpers.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    /// A helper instead of the gate.
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// The gate's arguments.
    #[command(flatten)]
    pub gate: GateArgs,
}

/// `precept eval calibrate` and `precept eval import`.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score a judge against labelled replies: accuracy, precision and recall (positive class:
    /// compliance).
    Calibrate(CalibrateArgs),
    /// Convert a HarmBench-, AdvBench-, XSTest- or garak-style prompt file into eval cases.
    Import(ImportArgs),
}

/// The gate: `precept eval --suite S --model TUNED [--baseline BASE] [--out DIR]`, its settings
/// from `--config` (a file of `EvalSettings`), overridden by the flags given, which have the same
/// names.
///
/// Exit codes: 0 pass, 2 safety regression, 3 over-refusal regression, 4 underpowered, 1 error;
/// with a second condition (no system prompt), the first of 2, 3, 4 that either condition gives.
#[derive(Debug, Args, Clone, Default, Serialize)]
pub struct GateArgs {
    /// A TOML settings file whose keys are these flags' names (`suite = "suites/safety.toml"`).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// The suite file (TOML).
    #[arg(long)]
    pub suite: Option<PathBuf>,
    /// The tuned model folder (or `--remote`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The tuned model behind OpenAI-compatible servers instead: their base URLs.
    #[arg(long, value_delimiter = ',', value_name = "URL[,URL…]")]
    pub remote: Option<Vec<String>>,
    /// The model name the `--remote` servers serve.
    #[arg(long)]
    pub remote_model: Option<String>,
    /// The base model folder; without it (or `--baseline-remote`) the base is the tuned model
    /// with the suite's system prompt.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// The base model behind OpenAI-compatible servers: their base URLs.
    #[arg(long, value_delimiter = ',', value_name = "URL[,URL…]")]
    pub baseline_remote: Option<Vec<String>>,
    /// The model name the `--baseline-remote` servers serve.
    #[arg(long)]
    pub baseline_remote_model: Option<String>,
    /// System prompt for the tuned side only (the base keeps the suite's).
    #[arg(long)]
    pub tuned_system: Option<String>,
    /// Also compare both models with no system prompt (their defaults), as a second condition
    /// with its own verdict; `=false` turns off a suite's `without_system_prompt`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub without_system_prompt: Option<bool>,
    /// Folder for config.toml, run.json, report.json, cases.jsonl, report.md, junit.xml and
    /// report.html (the summary table is printed either way).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder of cached baseline results [default: .precept-cache/eval].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Regenerate the baseline even when it is cached.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
    /// Conversations generated together (overrides the suite).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Most new tokens per reply (overrides the suite).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Judge (overrides the suite; `model` and `llamaguard` need `--judge-model`).
    #[arg(long, value_enum)]
    pub judge: Option<JudgeKind>,
    /// The judge's model folder.
    #[arg(long)]
    pub judge_model: Option<PathBuf>,
    /// The judge model (`--judge model|llamaguard`) behind OpenAI-compatible servers instead:
    /// their base URLs.
    #[arg(long, value_delimiter = ',', value_name = "URL[,URL…]")]
    pub judge_remote: Option<Vec<String>>,
    /// The model name the `--judge-remote` servers serve.
    #[arg(long)]
    pub judge_remote_model: Option<String>,
    /// How remote servers are reached.
    #[command(flatten)]
    #[serde(flatten)]
    pub connection: ConnectionFlags,
    /// Print report.json on stdout instead of the table.
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,
}

impl GateArgs {
    /// The settings file with these flags over it.
    pub fn resolve(&self) -> Result<EvalSettings> {
        Ok(resolve_settings(self.config.as_deref(), self, &[])?)
    }
}

/// `precept eval calibrate`
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The judge to score.
    #[arg(long, value_enum)]
    pub judge: JudgeKind,
    /// The judge's model folder (for `model` and `llamaguard`).
    #[arg(long)]
    pub judge_model: Option<PathBuf>,
    /// Gold JSONL: `{"prompt", "response", "label": "refusal" | "compliance"}`.
    #[arg(long)]
    pub gold: PathBuf,
    /// Replies judged together.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Layouts `precept eval import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFrom {
    /// One JSON object a line.
    Jsonl,
    /// Comma-separated with a header.
    Csv,
    /// One prompt a line (`#` comments skipped).
    Txt,
}

/// What a safe model does with imported cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExpectedArg {
    /// Harmful requests.
    Refuse,
    /// Benign requests.
    Comply,
}

/// `precept eval import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file's layout.
    #[arg(long, value_enum)]
    pub from: ImportFrom,
    /// The file to import.
    pub file: PathBuf,
    /// Category of every case (unless `--category-column` gives one).
    #[arg(long)]
    pub category: String,
    /// What a safe model does with these cases.
    #[arg(long, value_enum)]
    pub expected: ExpectedArg,
    /// Field (JSONL) or column (CSV) holding the prompt, e.g. `Behavior` (HarmBench), `goal`
    /// (AdvBench).
    #[arg(long, default_value = "prompt")]
    pub prompt_column: String,
    /// Field or column holding case ids (default: `<file stem>-<line>`).
    #[arg(long)]
    pub id_column: Option<String>,
    /// Field or column holding each case's category.
    #[arg(long)]
    pub category_column: Option<String>,
    /// Output cases JSONL.
    #[arg(long)]
    pub out: PathBuf,
}
