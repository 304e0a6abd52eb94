//! `precept constitute` and `precept bench constitute`: the constitution loop over a prompts file
//! with a local model, into sft.jsonl, prefs.jsonl and a run manifest.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use burn::tensor::FloatDType;
use clap::Args;
use precept_constitution::{
    constitute, read_prompts, ConstituteSettings, Constitution, Manifest, PromptRecord, RunConfig, MANIFEST_FILE,
};
use precept_data::{resolve_settings, write_settings, Generate, GenerateSettings};
use precept_train::TrainKernels;
use serde::Serialize;

use super::decontaminate;
use super::remote::{open_model, ConnectionFlags, Generator};
use crate::device::DeviceCommand;
use crate::output::{outln, print_json};
use crate::progress::ProgressDisplay;

/// `precept constitute`: settings from `--config` (a file of [`ConstituteSettings`]), overridden
/// by the flags given, which have the same names.
#[derive(Debug, Args, Clone, Default, Serialize)]
pub struct ConstituteArgs {
    /// A TOML settings file whose keys are these flags' names (`max_new_tokens = 96`).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// The constitution (TOML).
    #[arg(long)]
    pub constitution: Option<PathBuf>,
    /// Prompts JSONL: `{"id":…,"prompt":"…"}` or `{"id":…,"messages":[…]}` per line.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Model folder (Hugging Face layout); not needed with `--remote`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Generate with OpenAI-compatible servers instead (vLLM, TGI, llama.cpp server, `precept
    /// serve`): their base URLs, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "URL[,URL…]")]
    pub remote: Option<Vec<String>>,
    /// The model name the `--remote` servers serve.
    #[arg(long)]
    pub remote_model: Option<String>,
    /// How the servers are reached.
    #[command(flatten)]
    #[serde(flatten)]
    pub connection: ConnectionFlags,
    /// Output folder; a rerun into it resumes.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Critique → revision rounds per prompt (0: records from the answer, AI-feedback samples and
    /// draws only) [default: 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Also label preference pairs by AI feedback (two sampled answers, compared in both orders).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub feedback: bool,
    /// Seed of principle sampling and generation [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Prompts generated together [default: 8].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Most new tokens per reply [default: 256].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Temperature of answers, critiques and revisions (0 = greedy) [default: 0].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Temperature of the two answers sampled for AI feedback [default: 1].
    #[arg(long)]
    pub feedback_temperature: Option<f32>,
    /// Most new tokens of each answer sampled for AI feedback (default: `--max-new-tokens`); a
    /// cut-off answer is compared on its complete sentences.
    #[arg(long)]
    pub feedback_max_new_tokens: Option<usize>,
    /// Clamp AI-feedback labels to LOW,HIGH (the paper's chain-of-thought variant: 0.4,0.6).
    #[arg(long, value_delimiter = ',', value_name = "LOW,HIGH")]
    pub clamp: Option<Vec<f64>>,
    /// Keep AI-feedback pairs whose label is at least this (0.5 keeps all) [default: 0.5].
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Extra short answers drawn per prompt that has an `expected` behaviour, so that one whose
    /// loop replies all miss it may still give records (0 = none) [default: 0].
    #[arg(long)]
    pub draws: Option<usize>,
    /// Most new tokens of each drawn answer [default: 64].
    #[arg(long)]
    pub draw_max_new_tokens: Option<usize>,
    /// Temperature of the drawn answers [default: 0.7].
    #[arg(long)]
    pub draw_temperature: Option<f32>,
    /// Leave the constitution's examples out of the conversation.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_few_shot: bool,
    /// A system message for every prompt that has none (it is kept in the outputs, unless
    /// `--record-system` is given).
    #[arg(long)]
    pub system: Option<String>,
    /// A system message the records carry instead (repeat it: one per prompt in turn; "" for
    /// none), so behaviour asked for under `--system` is learnt under others too.
    #[arg(long = "record-system", value_name = "TEXT")]
    #[serde(rename = "record_systems", skip_serializing_if = "Vec::is_empty")]
    pub record_systems: Vec<String>,
    /// A refusal for the gaps the replies leave: the target of a prompt expected to be refused
    /// that no reply refuses, the rejected side of one expected to be answered that every reply
    /// answers.
    #[arg(long)]
    pub refusal: Option<String>,
    /// Eval suites (`.toml`) and benchmark files the prompts must not copy: checked before the
    /// loop starts, and a copy stops the run (exit code 5; see `precept data decontaminate`).
    #[arg(long, num_args = 1.., value_name = "FILE_OR_SUITE")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decontaminate_against: Vec<PathBuf>,
}

impl ConstituteArgs {
    /// The settings file with these flags over it.
    pub fn resolve(&self) -> Result<ConstituteSettings> {
        Ok(resolve_settings(self.config.as_deref(), self, &[])?)
    }
}

/// The command, ready to run on a backend.
pub struct Constitute {
    /// Resolved settings.
    pub settings: ConstituteSettings,
    /// No progress bar or progress lines.
    pub quiet: bool,
}

impl DeviceCommand for Constitute {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let manifest = run_on::<B>(&self.settings, (&device, decode), self.quiet)?;
        let c = &manifest.counts;
        let filtered: Vec<String> = c.filtered.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
        tracing::info!(
            "{}: {} of {} prompts finished; sft {}, prefs {}; filtered: {}",
            self.settings.out.display(),
            c.finished,
            manifest.prompts,
            c.sft,
            c.prefs,
            if filtered.is_empty() { "none".to_owned() } else { filtered.join(", ") }
        );
        Ok(())
    }
}

/// Loads everything (failing early), then runs the loop with a progress display.
fn run_on<B: TrainKernels>(
    settings: &ConstituteSettings,
    (device, decode): (&B::Device, Option<FloatDType>),
    quiet: bool,
) -> Result<Manifest> {
    let run = LoadedRun::load(settings)?;
    let mut generator = open_model::<B>(&settings.source()?, &settings.connection, device, decode)?;
    run.run(&mut generator, quiet)
}

/// A run's inputs, read and checked before any model is loaded.
struct LoadedRun {
    constitution: Constitution,
    prompts: Vec<PromptRecord>,
    config: RunConfig,
}

impl LoadedRun {
    fn load(settings: &ConstituteSettings) -> Result<Self> {
        let config = settings.run_config()?;
        let constitution = Constitution::load(&settings.constitution)?;
        let prompts = read_prompts(&settings.prompts)?;
        config.validate(&constitution)?;
        if !settings.decontaminate_against.is_empty() {
            let against = &settings.decontaminate_against;
            let report = decontaminate::check(std::slice::from_ref(&settings.prompts), against, &Default::default())?;
            decontaminate::verdict(report)?;
        }
        // A resumed run keeps the settings file it started with (the loop refuses other settings).
        if !config.out.join(MANIFEST_FILE).exists() {
            write_settings(settings, &config.out)?;
        }
        Ok(Self { constitution, prompts, config })
    }

    /// The loop over every prompt, with a progress display.
    fn run<G: Generate>(&self, generator: &mut G, quiet: bool) -> Result<Manifest> {
        let mut display = ProgressDisplay::new(quiet, &[]);
        let manifest = constitute(generator, &self.constitution, &self.prompts, &self.config, &mut display)?;
        display.finish();
        Ok(manifest)
    }
}

/// `precept bench constitute`
#[derive(Debug, Args)]
pub struct BenchConstituteArgs {
    /// Model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// The constitution (TOML).
    #[arg(long, default_value = "constitutions/harmless.toml")]
    pub constitution: PathBuf,
    /// Prompts JSONL.
    #[arg(long, default_value = "data/redteam/harmful.jsonl")]
    pub prompts: PathBuf,
    /// Use only the first N prompts.
    #[arg(long, default_value_t = 16)]
    pub limit: usize,
    /// Prompts generated together.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Most new tokens per reply.
    #[arg(long, default_value_t = 48)]
    pub max_new_tokens: usize,
    /// A system message for every prompt that has none.
    #[arg(long)]
    pub system: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct BenchReport {
    batch: usize,
    prompts: usize,
    max_new_tokens: usize,
    /// Loading the model and one warm-up call, which compiles a GPU's kernels: paid once per run,
    /// so a long run's rate leaves it out.
    load_seconds: f64,
    /// The loop over the prompts.
    seconds: f64,
    /// Finished prompts (kept or filtered) per minute of the loop.
    records_per_minute: f64,
    sft: usize,
    filtered: usize,
}

/// The benchmark, ready to run on a backend.
pub struct BenchConstitute(pub BenchConstituteArgs);

impl DeviceCommand for BenchConstitute {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let args = self.0;
        ensure!(args.limit > 0, "--limit must be at least 1");
        let out = std::env::temp_dir().join(format!("precept-bench-constitute-{}", std::process::id()));
        let mut prompts = read_prompts(&args.prompts)?;
        prompts.truncate(args.limit);
        let limited = out.with_extension("jsonl");
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        write_prompts(&limited, &prompts)?;
        let run = ConstituteSettings {
            constitution: args.constitution.clone(),
            prompts: limited.clone(),
            model: Some(args.model.clone()),
            out: out.clone(),
            batch: args.batch,
            max_new_tokens: args.max_new_tokens,
            system: args.system.clone(),
            ..ConstituteSettings::default()
        };
        let loaded = LoadedRun::load(&run);
        let measured = loaded.and_then(|loaded| {
            let started = Instant::now();
            let mut generator = open_model::<B>(&run.source()?, &run.connection, &device, decode)?;
            warm_up(&mut generator, &loaded, &run)?;
            let load_seconds = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let manifest = loaded.run(&mut generator, true)?;
            Ok((load_seconds, started.elapsed().as_secs_f64(), manifest))
        });
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_file(&limited);
        let (load_seconds, seconds, manifest) = measured?;
        let counts = manifest.counts;
        let report = BenchReport {
            batch: args.batch,
            prompts: counts.finished,
            max_new_tokens: args.max_new_tokens,
            load_seconds,
            seconds,
            records_per_minute: counts.finished as f64 / seconds * 60.0,
            sft: counts.sft,
            filtered: counts.finished - counts.sft,
        };
        if args.json {
            print_json(&report)?;
        } else {
            outln!(
                "batch {}: {} prompts in {:.1}s (after {:.1}s of loading and warm-up) = {:.1} records/min ({} kept, {} filtered)",
                report.batch,
                report.prompts,
                report.seconds,
                report.load_seconds,
                report.records_per_minute,
                report.sft,
                report.filtered
            )?;
        }
        Ok(())
    }
}

/// One short generation over the first batch of prompts, so that a GPU compiles its kernels
/// before the timed loop; the KV caches it leaves are dropped, so the loop gains nothing else.
fn warm_up<B: TrainKernels>(generator: &mut Generator<B>, loaded: &LoadedRun, run: &ConstituteSettings) -> Result<()> {
    let conversations: Vec<_> = loaded
        .prompts
        .iter()
        .take(run.batch.max(1))
        .map(|prompt| match &run.system {
            Some(system) => prompt.with_default_system(system).context().to_vec(),
            None => prompt.context().to_vec(),
        })
        .collect();
    let settings = GenerateSettings { max_new_tokens: 16, ..GenerateSettings::default() };
    generator.generate(&conversations, &settings).context("warm-up generation")?;
    if let Generator::Local(local) = generator {
        local.forget_last_call();
    }
    Ok(())
}

/// Writes prompts back out as JSONL (`messages` form).
fn write_prompts(path: &Path, prompts: &[precept_constitution::PromptRecord]) -> Result<()> {
    let mut text = String::new();
    for prompt in prompts {
        let line = serde_json::json!({ "id": prompt.id, "messages": prompt.messages });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(all(test, feature = "flex"))]
#[allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test
mod tests {
    use burn::backend::Flex;
    use precept_constitution::{judge, soft_label, Comparison, PairToJudge};
    use precept_data::{Generate, Message, Tokenizer};
    use precept_model::LlamaConfig;

    use burn::tensor::backend::Backend;
    use precept_model::LocalGenerator;

    const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
      "added_tokens":[{"id":0,"content":"<end>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
      "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
      "model":{"type":"WordLevel","vocab":{"<end>":0,"user":1,"assistant":2,"(":3,"A":4,")":5,"B":6,"yes":7,"no":8,
      "good":9,"bad":10,"[UNK]":11},"unk_token":"[UNK]"}}"#;
    const CONFIG: &str = r#"{"chat_template":"{% for m in messages %}{{ m.role }} {{ m.content }} <end> {% endfor %}{% if add_generation_prompt %}assistant {% endif %}","eos_token":"<end>"}"#;

    fn tiny_generator() -> LocalGenerator<Flex> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), TOKENIZER).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), CONFIG).unwrap();
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        <Flex as Backend>::seed(&Default::default(), 11);
        let config = LlamaConfig { vocab_size: 12, ..LlamaConfig::tiny() }.with_max_position_embeddings(512);
        LocalGenerator::new(config.init(&Default::default()), tokenizer)
    }

    #[test]
    fn soft_labels_on_a_tiny_model_average_both_orders_and_mirror_under_a_swap() {
        let mut generator = tiny_generator();
        let comparison = Comparison { id: "c".into(), question: "good or bad ?".into(), tags: vec![], weight: 1.0 };
        let context = [Message::user("yes or no ?")];
        let pair = |first, second| PairToJudge { context: &context, comparison: &comparison, first, second };
        let judged = judge(&mut generator, &[pair("yes good", "no bad"), pair("no bad", "yes good")], None).unwrap();
        // Independently: the model's option probabilities for each order, one conversation at a time.
        let options = vec!["(A)".to_owned(), "(B)".to_owned()];
        let ask = |generator: &mut LocalGenerator<Flex>, a: &str, b: &str| {
            let conversation = precept_constitution::comparison_conversation(&context, "good or bad ?", a, b);
            let p = generator.option_probabilities(&[conversation], &options).unwrap().remove(0);
            [p[0], p[1]]
        };
        let ab = ask(&mut generator, "yes good", "no bad");
        let ba = ask(&mut generator, "no bad", "yes good");
        for (got, want) in judged[0].first_as_a.iter().zip(ab).chain(judged[0].first_as_b.iter().zip(ba)) {
            assert!((got - want).abs() < 1e-6, "{judged:?} vs {ab:?} {ba:?}");
        }
        let label = judged[0].label;
        assert!((label - (ab[0] + ba[1]) / 2.0).abs() < 1e-6);
        assert!((label - soft_label(ab, ba, None)).abs() < 1e-6);
        // Swapping the answers asks the same two questions in the other roles: labels sum to one.
        assert!((judged[0].label + judged[1].label - 1.0).abs() < 1e-6, "{judged:?}");
        // A random model has some position bias; the averaged label is still a probability.
        assert!((0.0..=1.0).contains(&label));
    }
}
