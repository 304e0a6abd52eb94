//! `precept constitution check|import|try`: author and inspect constitution files.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::FloatDType;
use clap::{Args, Subcommand, ValueEnum};
use precept_constitution::{
    critique_and_revise, import, Constitution, ConstitutionError, ImportFormat, LoopConfig, PromptRecord, Revised,
};
use precept_data::{write_atomic, GenerateSettings};
use precept_model::LocalGenerator;
use precept_train::TrainKernels;

use crate::device::DeviceCommand;
use crate::output::outln;

/// `precept constitution …`
#[derive(Debug, Subcommand)]
pub enum ConstitutionCommand {
    /// Lint constitution files: unknown or misspelt keys, duplicate ids, empty or over-long
    /// requests, incomplete examples; every problem with its file and line.
    Check(CheckArgs),
    /// Convert a published JSON constitution (Anthropic's or Hugging Face's layout) to TOML.
    Import(ImportArgs),
    /// Show answer → critique → revision for one prompt, to try out a principle.
    Try(TryArgs),
}

/// `precept constitution check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Constitution files (TOML).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// The published layouts `import` reads.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImportFrom {
    /// Anthropic's harmlessness-paper `CritiqueRevisionInstructions.json`.
    Anthropic,
    /// Hugging Face's `constitutions` (`critic`/`revision`) + `system_chat` JSON.
    Hf,
}

/// `precept constitution import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The layout of FILE.
    #[arg(long, value_enum)]
    pub from: ImportFrom,
    /// The JSON file.
    pub file: PathBuf,
    /// The TOML file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// `precept constitution try`
#[derive(Debug, Args)]
pub struct TryArgs {
    /// The constitution (TOML).
    #[arg(long)]
    pub constitution: PathBuf,
    /// Model folder (Hugging Face layout).
    #[arg(long)]
    pub model: PathBuf,
    /// The user prompt.
    #[arg(long)]
    pub prompt: String,
    /// Use this principle instead of a sampled one.
    #[arg(long)]
    pub principle: Option<String>,
    /// Critique → revision rounds.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Seed of principle sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most new tokens per reply.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Leave the constitution's examples out of the conversation.
    #[arg(long)]
    pub no_few_shot: bool,
    /// A system message before the prompt.
    #[arg(long)]
    pub system: Option<String>,
}

/// Lints every file; fails when any has a problem.
pub fn check(args: &CheckArgs) -> Result<()> {
    let mut failed = 0;
    for path in &args.files {
        match Constitution::load(path) {
            Ok(c) => outln!(
                "{}: ok ({}, {}, {})",
                path.display(),
                count(c.principles.len(), "principle"),
                count(c.examples.len(), "example"),
                count(c.comparisons.len(), "comparison")
            )?,
            Err(ConstitutionError::Invalid { diagnostics }) => {
                failed += 1;
                for diagnostic in diagnostics {
                    outln!("{diagnostic}")?;
                }
            }
            Err(other) => {
                failed += 1;
                outln!("{other}")?;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} constitution file(s) have problems", args.files.len());
    }
    Ok(())
}

/// `1 example`, `2 examples`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Converts a JSON constitution to TOML.
pub fn run_import(args: &ImportArgs) -> Result<()> {
    let format = match args.from {
        ImportFrom::Anthropic => ImportFormat::Anthropic,
        ImportFrom::Hf => ImportFormat::HuggingFace,
    };
    let constitution = import(&args.file, format)?;
    let text = format!(
        "# Imported by `precept constitution import` from {}.\n{}",
        args.file.display(),
        constitution.to_toml()
    );
    write_atomic(&args.out, text.as_bytes()).with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!(
        "wrote {} ({} principles, {} examples)",
        args.out.display(),
        constitution.principles.len(),
        constitution.examples.len()
    );
    Ok(())
}

/// The `try` command, ready to run on a backend.
pub struct Try(pub TryArgs);

impl DeviceCommand for Try {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let args = self.0;
        let constitution = Constitution::load(&args.constitution)?;
        if let Some(id) = &args.principle {
            constitution.principle(id)?;
        }
        let mut generator = LocalGenerator::<B>::open(&args.model, &device, decode)
            .with_context(|| format!("loading the model in {}", args.model.display()))?;
        let config = LoopConfig {
            rounds: args.rounds.max(1),
            seed: args.seed,
            settings: GenerateSettings {
                max_new_tokens: args.max_new_tokens,
                seed: args.seed,
                ..GenerateSettings::default()
            },
            few_shot: !args.no_few_shot,
            principle: args.principle.clone(),
        };
        let mut prompt = PromptRecord::user("try", &args.prompt);
        if let Some(system) = &args.system {
            prompt = prompt.with_default_system(system);
        }
        let outcome = critique_and_revise(&mut generator, &constitution, &[prompt], &config)?;
        let Some(outcome) = outcome.into_iter().next() else { bail!("the loop returned no outcome") };
        let (answer, rounds, failure) = match outcome {
            Revised::Done { answer, rounds, .. } => (Some(answer), rounds, None),
            Revised::Filtered { stage, round, reason, text, answer, rounds, .. } => {
                (answer, rounds, Some((stage, round, reason, text)))
            }
        };
        if let Some(answer) = answer {
            outln!("── answer\n{answer}")?;
        }
        for round in &rounds {
            let principle = constitution.principle(&round.principle)?;
            outln!("── critique request [{}]\n{}", round.principle, principle.critique)?;
            outln!("── critique\n{}", round.critique)?;
            outln!("── revision request\n{}", principle.revision)?;
            outln!("── revision\n{}", round.revision)?;
        }
        if let Some((stage, round, reason, text)) = failure {
            outln!("── {} of round {round}, filtered as {reason}\n{text}", stage.as_str())?;
            bail!("the {} of round {round} was filtered as {reason}", stage.as_str());
        }
        Ok(())
    }
}
