//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use precept_train::dpo::PreferenceMethod;
use precept_train::grpo::RewardFunc;
use precept_train::loss::{GrpoLossType, PreferenceLoss, ScaleRewards};
use precept_train::Tuning;
use serde::Serialize;

use crate::commands::constitute::{BenchConstituteArgs, ConstituteArgs};
use crate::commands::constitution::ConstitutionCommand;
use crate::device::DeviceChoice;

/// Align open-weights language models: import, inspect and generate (SFT, DPO, constitutions and
/// safety evaluation build on these).
#[derive(Debug, Parser)]
#[command(name = "precept", version)]
pub struct Cli {
    /// Compute device: `cpu`, `cuda[:N]` or `wgpu[:N]`.
    #[arg(long, global = true, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Element type of the weights that CPU decoding steps read: `bf16` streams half the bytes
    /// per token (about 1.7× faster decoding; logits shift slightly, as the weights keep 8 of
    /// their 24 significant bits), `f32` reproduces transformers' float32 logits. Prefill and
    /// training always use the f32 weights.
    #[arg(long, global = true, value_enum, default_value = "f32")]
    pub decode_weights: DecodeWeightsArg,
    /// Print only errors on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert a model from another format into a Hugging Face folder.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Show the token ids of a text.
    Tokenize(TokenizeArgs),
    /// Show the last position's top logits and the sequence log-probability.
    Logits(LogitsArgs),
    /// Generate a continuation or a chat reply.
    Generate(GenerateArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Validate and measure datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Write a model folder with random weights in the shape of a config.json (for benchmarks
    /// and GPU checks where real weights cannot travel).
    RandomWeights(RandomWeightsArgs),
    /// Supervised fine-tuning (LoRA or full) on TRL-format JSONL.
    Sft(TrainArgs),
    /// Preference training (DPO and its family, SimPO, ORPO) on TRL-format preference JSONL.
    Dpo(DpoArgs),
    /// Online RL with GRPO on prompt JSONL: each step samples completions with the model being
    /// trained and rewards them (by default, keeping to each prompt's `expected`).
    Grpo(GrpoArgs),
    /// Principles to a safer model in one command: constitute → sft → dpo → eval in one run
    /// folder; finished stages are skipped and a killed one resumes. Prompts that copy an eval
    /// case or a `[decontaminate]` benchmark stop it before any stage runs (exit code 5).
    Pipeline(crate::commands::pipeline::PipelineArgs),
    /// Fold a PEFT LoRA adapter into its base model and save the result.
    Merge(MergeArgs),
    /// Author and inspect constitution files.
    #[command(subcommand)]
    Constitution(ConstitutionCommand),
    /// Turn a constitution and prompts into SFT records and preference pairs (critique →
    /// revision, optional AI feedback); resumable. `--config FILE` holds settings named like the
    /// flags, which override it.
    Constitute(ConstituteArgs),
    /// Safety regression gate: compare a tuned model with its base on a suite (exit codes 0 pass,
    /// 2 safety regression, 3 over-refusal regression, 4 underpowered, 1 error). `--config FILE`
    /// holds settings named like the flags, which override it.
    Eval(Box<crate::commands::eval::args::EvalArgs>),
    /// Serve a model over an OpenAI-compatible HTTP API (`/v1/chat/completions`, streaming and
    /// logprobs; `/v1/models`), batching concurrent requests.
    Serve(crate::commands::serve::ServeArgs),
}

/// Flags of `precept sft`, `precept dpo` and `precept grpo`: settings come from `--config` and are overridden by
/// the flags given (each serialises as the setting it overrides).
#[derive(Debug, Args, Serialize)]
pub struct TrainArgs {
    /// A TOML settings file (see `configs/sft.toml`, `configs/dpo.toml` and `configs/grpo.toml`).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Base model folder.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Training data (JSONL).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluation data (JSONL).
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Run folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// LoRA adapters or every weight.
    #[arg(long, value_enum)]
    pub tuning: Option<Tuning>,
    /// LoRA rank.
    #[arg(long)]
    #[serde(rename = "lora.r")]
    pub lora_r: Option<usize>,
    /// LoRA alpha.
    #[arg(long)]
    #[serde(rename = "lora.alpha")]
    pub lora_alpha: Option<f64>,
    /// Peak learning rate.
    #[arg(long)]
    #[serde(rename = "learning_rate")]
    pub lr: Option<f64>,
    /// Optimiser steps (instead of epochs).
    #[arg(long, conflicts_with = "epochs")]
    #[serde(rename = "max_steps")]
    pub steps: Option<u64>,
    /// Passes over the data (replacing a settings file's `max_steps`).
    #[arg(long)]
    #[serde(rename = "num_train_epochs")]
    pub epochs: Option<f64>,
    /// Rows per micro-batch.
    #[arg(long)]
    #[serde(rename = "per_device_train_batch_size")]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimiser step.
    #[arg(long)]
    #[serde(rename = "gradient_accumulation_steps")]
    pub grad_accum: Option<usize>,
    /// Tokens kept per example (and per packed row).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Pack several examples into each row.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub packing: bool,
    /// Also write the base with the adapter merged in.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub merge: bool,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write a checkpoint every this many steps.
    #[arg(long)]
    pub save_steps: Option<u64>,
    /// Eval suite gating the weights during training (with `--safety-every`).
    #[arg(long)]
    #[serde(rename = "safety.suite")]
    pub safety_suite: Option<PathBuf>,
    /// Gate the weights every this many steps (and after the last).
    #[arg(long)]
    #[serde(rename = "safety.every")]
    pub safety_every: Option<u64>,
    /// Cases of each kind (refuse, comply) taken from the start of the safety suite.
    #[arg(long)]
    #[serde(rename = "safety.cases")]
    pub safety_cases: Option<usize>,
    /// Warn on a significant safety regression instead of stopping the run.
    #[arg(long)]
    #[serde(rename = "safety.warn_only", skip_serializing_if = "std::ops::Not::not")]
    pub safety_warn_only: bool,
    /// Continue the run in `--out` from its latest checkpoint.
    #[arg(long)]
    #[serde(skip)]
    pub resume: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,
}

impl TrainArgs {
    /// Settings of the file that a flag given replaces: `--epochs` replaces a `max_steps`.
    pub fn cleared(&self) -> Vec<&'static str> {
        self.epochs.map(|_| "max_steps").into_iter().collect()
    }
}

/// `precept dpo`: the training flags plus the preference settings.
#[derive(Debug, Args, Serialize)]
pub struct DpoArgs {
    /// Settings shared with `precept sft`.
    #[command(flatten)]
    #[serde(flatten)]
    pub train: TrainArgs,
    /// DPO with a reference, or a reference-free method.
    #[arg(long, value_enum)]
    pub method: Option<PreferenceMethod>,
    /// Strength of the preference (TRL's `beta`).
    #[arg(long)]
    pub beta: Option<f64>,
    /// DPO loss types, comma-separated (`sigmoid,sft`), each weighted 1 (replacing a settings
    /// file's `loss_weights`).
    #[arg(long, value_enum, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loss: Vec<PreferenceLoss>,
    /// A separate reference model folder (default: the base model).
    #[arg(long)]
    pub ref_model: Option<PathBuf>,
}

impl DpoArgs {
    /// Settings of the file that a flag given replaces: `--loss` replaces `loss_weights`.
    pub fn cleared(&self) -> Vec<&'static str> {
        let mut cleared = self.train.cleared();
        if !self.loss.is_empty() {
            cleared.push("loss_weights");
        }
        cleared
    }
}

/// `precept grpo`: the training flags (`--batch-size` counts completions) plus GRPO's settings.
#[derive(Debug, Args, Serialize)]
pub struct GrpoArgs {
    /// Settings shared with `precept sft`.
    #[command(flatten)]
    #[serde(flatten)]
    pub train: TrainArgs,
    /// Completions sampled per prompt.
    #[arg(long)]
    pub num_generations: Option<usize>,
    /// Most tokens per completion.
    #[arg(long)]
    pub max_completion_length: Option<usize>,
    /// Prompt tokens kept (the last ones).
    #[arg(long)]
    pub max_prompt_length: Option<usize>,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Weight of the KL term to the base model (0: none).
    #[arg(long)]
    pub beta: Option<f64>,
    /// Token aggregation of the loss.
    #[arg(long, value_enum)]
    pub loss_type: Option<GrpoLossType>,
    /// How group-centred rewards are scaled.
    #[arg(long, value_enum)]
    pub scale_rewards: Option<ScaleRewards>,
    /// Optimiser steps on each batch of completions.
    #[arg(long)]
    pub num_iterations: Option<usize>,
    /// Reward functions, comma-separated (`expectation,degenerate`), each weighted 1 (replacing a
    /// settings file's `reward_weights`).
    #[arg(long = "reward", value_enum, value_delimiter = ',')]
    #[serde(rename = "reward_funcs", skip_serializing_if = "Vec::is_empty")]
    pub rewards: Vec<RewardFunc>,
    /// A system prompt put on prompts without one.
    #[arg(long)]
    pub system: Option<String>,
}

impl GrpoArgs {
    /// Settings of the file that a flag given replaces: `--reward` replaces `reward_weights`.
    pub fn cleared(&self) -> Vec<&'static str> {
        let mut cleared = self.train.cleared();
        if !self.rewards.is_empty() {
            cleared.push("reward_weights");
        }
        cleared
    }
}

/// `precept merge`
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The base model folder the adapter was trained on.
    #[arg(long)]
    pub base: PathBuf,
    /// The PEFT adapter folder.
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output model folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Element type of the saved weights.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
}

/// Element type of the weights CPU decoding steps read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecodeWeightsArg {
    /// The model's float32 weights, read in place.
    F32,
    /// bfloat16 copies, made when the model is loaded.
    Bf16,
}

impl DecodeWeightsArg {
    /// The element type of the copies decoding reads; `None` for the weights themselves.
    pub fn dtype(self) -> Option<burn::tensor::FloatDType> {
        match self {
            Self::F32 => None,
            Self::Bf16 => Some(burn::tensor::FloatDType::BF16),
        }
    }
}

/// Element type of saved weights.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DtypeArg {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

impl From<DtypeArg> for precept_model::checkpoint::SaveDtype {
    fn from(dtype: DtypeArg) -> Self {
        match dtype {
            DtypeArg::F32 => Self::F32,
            DtypeArg::F16 => Self::F16,
            DtypeArg::Bf16 => Self::BF16,
        }
    }
}

/// `precept random-weights`
#[derive(Debug, Args)]
pub struct RandomWeightsArgs {
    /// A Hugging Face config.json; tokenizer files beside it are copied too.
    #[arg(long)]
    pub config: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Element type of the saved weights.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `precept import …`
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a llama.cpp GGUF file (dequantising its weights).
    Gguf {
        /// The .gguf file.
        file: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Text input shared by tokenize, logits and generate.
#[derive(Debug, Args)]
pub struct TextArgs {
    /// Model folder (Hugging Face layout).
    #[arg(long)]
    pub model: PathBuf,
    /// Wrap the text as one user message in the model's chat template (with the generation prompt).
    #[arg(long)]
    pub chat: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `precept tokenize`
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Model, template and output settings.
    #[command(flatten)]
    pub common: TextArgs,
    /// The text, used as is (no special tokens added) unless `--chat`.
    #[arg(long)]
    pub text: String,
}

/// `precept logits`
#[derive(Debug, Args)]
pub struct LogitsArgs {
    /// Model, template and output settings.
    #[command(flatten)]
    pub common: TextArgs,
    /// The text, used as is unless `--chat`.
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    pub text: Option<String>,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub ids: Option<Vec<u32>>,
    /// How many of the largest last-position logits to show.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

/// Decoding settings.
#[derive(Debug, Args, Clone)]
pub struct SamplingArgs {
    /// Most new tokens.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Penalise tokens already present (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when the generated text contains this string (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
}

/// `precept generate`
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model, template and output settings.
    #[command(flatten)]
    pub common: TextArgs,
    /// The prompt, used as is unless `--chat`; repeat for a batch.
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    /// Decoding settings.
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// `precept bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prefill and decode throughput of greedy generation.
    Generate(BenchGenerateArgs),
    /// Training-step cost: forward, backward and AdamW on random tokens.
    Train(BenchTrainArgs),
    /// Records per minute of `precept constitute`.
    Constitute(BenchConstituteArgs),
    /// Load test of an OpenAI-compatible server: throughput and latency percentiles.
    Serve(crate::commands::bench_serve::BenchServeArgs),
}

/// `precept bench train` (the shape of the PyTorch peer script: batch 2 × 256, loss on every token)
#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// LoRA adapters (r 16, α 32, every projection) or every weight.
    #[arg(long, value_enum, default_value = "lora")]
    pub tuning: Tuning,
    /// Rows per step.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Timed steps (the median is reported); one untimed warm-up step runs first.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Time a DPO step instead (sigmoid loss, β 0.1, the shape of the PyTorch peer script):
    /// `--batch` pairs, both sides of `--seq` tokens sharing a 64-token prompt, loss on the
    /// answers; the reference is the base (LoRA adapters off, or a frozen copy).
    #[arg(long)]
    pub dpo: bool,
    /// With `--dpo`: reference log-probabilities precomputed (`precompute_ref_log_probs`), so no
    /// reference forward runs in the step.
    #[arg(long, requires = "dpo")]
    pub cached_reference: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `precept bench generate`
#[derive(Debug, Args)]
pub struct BenchGenerateArgs {
    /// Model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Prompts decoded together.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 32)]
    pub prompt_tokens: usize,
    /// New tokens per prompt.
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Timed repetitions (the median is reported); one untimed warm-up runs first.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Softmax temperature of sampled decoding; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `precept data …`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Check every record of a dataset against a model's chat template and tokenizer.
    Check(DataCheckArgs),
    /// Check that no user turn of the training files copies an eval case or benchmark prompt
    /// (same normalised text, or a shared run of `--ngram` words); exit code 5 when one does.
    Decontaminate(DataDecontaminateArgs),
}

/// Dataset kinds.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DataFormat {
    /// Supervised fine-tuning records (`messages`, or `prompt` + `completion`).
    Sft,
    /// Preference pairs (`prompt` + `chosen` + `rejected`, or implicit-prompt conversations).
    Prefs,
}

/// Whether a record whose prompt does not tokenise to a prefix of the whole fails the check.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MismatchArg {
    /// Fail the check.
    Error,
    /// Count and skip the record.
    Warn,
}

/// `precept data check`
#[derive(Debug, Args)]
pub struct DataCheckArgs {
    /// The JSONL file.
    pub file: PathBuf,
    /// Model folder whose tokenizer and chat template are used.
    #[arg(long)]
    pub model: PathBuf,
    /// What the records are.
    #[arg(long, value_enum, default_value = "sft")]
    pub format: DataFormat,
    /// Longest tokenised example; longer ones are truncated (or dropped when nothing trained fits).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// What a prompt/prompt+completion token mismatch does.
    #[arg(long, value_enum, default_value = "error")]
    pub on_mismatch: MismatchArg,
    /// How many record errors to print (all are counted).
    #[arg(long, default_value_t = 20)]
    pub show_errors: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `precept data decontaminate`
#[derive(Debug, Args)]
pub struct DataDecontaminateArgs {
    /// Training files whose user turns are checked: JSONL (`prompt`, `messages`, `turns`, …),
    /// CSV with a prompt column, or text with one prompt a line.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub train: Vec<PathBuf>,
    /// Eval suites (`.toml`: their case files) and case or benchmark files (JSONL, CSV with a
    /// `prompt`, `goal`, `behavior`, `forbidden_prompt` or `question` column, or text).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE_OR_SUITE")]
    pub against: Vec<PathBuf>,
    /// Words per n-gram: a training text sharing a run of this many words with a reference is
    /// contaminated (shorter texts only when equal).
    #[arg(long, default_value_t = precept_data::decontaminate::DEFAULT_NGRAM)]
    pub ngram: usize,
    /// Share of a reference's distinct n-grams a training text must contain (0: any one).
    #[arg(long, default_value_t = 0.0)]
    pub min_overlap: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
