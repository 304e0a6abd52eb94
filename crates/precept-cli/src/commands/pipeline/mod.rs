//! `precept pipeline`: constitute → sft → dpo → (grpo) → eval in one run folder, from one
//! settings file. GRPO runs only when the settings have a `[grpo]` table.
//!
//! Each stage works in its own folder, which carries a [`stage::Marker`]: the hash of the
//! stage's settings chained with every upstream stage's, and whether it finished. A rerun skips
//! finished stages whose hash is unchanged, continues a killed one where it stopped (the stages
//! resume by themselves: constitute's journal, the trainers' checkpoints, eval's reply journal),
//! and restarts a stage whose settings changed. A skipped gate prints its finished report again,
//! so the exit code always carries its verdict.

mod config;
mod held_out;
mod report;
mod stage;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::backend::Autodiff;
use burn::tensor::FloatDType;
use clap::Args;
use precept_data::hash_settings;
use precept_eval::{Report, Suite, REPORT_JSON_FILE};
use precept_train::checkpoint::Checkpoints;
use precept_train::dpo::train_dpo;
use precept_train::grpo::train_grpo_with;
use precept_train::sft::train_sft;
use precept_train::TrainKernels;

use self::config::{grpo_prompts_file, prompts_file, stage_dir, PipelineConfig};
use self::stage::{action, read_marker, write_marker, Action, Marker, Stage};
use super::constitute::Constitute;
use super::eval::gate::{announce, Gate};
use super::grpo_rewards::grpo_rewards;
use super::training::train_watched;
use crate::device::DeviceCommand;
use crate::progress::{Columns, ProgressDisplay};

/// `precept pipeline`
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// The settings file (see `configs/quickstart.toml`).
    #[arg(long)]
    pub config: PathBuf,
    /// Start at this stage, rerunning it even when finished (earlier stages must have finished).
    #[arg(long, value_enum, conflicts_with = "only")]
    pub from: Option<Stage>,
    /// Run only this stage, rerunning it even when finished (earlier stages must have finished).
    #[arg(long, value_enum)]
    pub only: Option<Stage>,
}

/// The resolved pipeline, ready to run on a backend.
pub struct Pipeline {
    config: PipelineConfig,
    /// The gate's suite, loaded.
    suite: Suite,
    /// The settings file's text, shown in the report.
    settings: String,
    from: Option<Stage>,
    only: Option<Stage>,
    quiet: bool,
}

/// Step metrics shown while training.
const COLUMNS: Columns = &[
    ("loss", "loss"),
    ("rewards/accuracies", "acc"),
    ("rewards/margins", "margin"),
    ("mean_token_accuracy", "acc"),
    ("reward", "reward"),
];

impl Pipeline {
    /// Reads the settings and checks them, and the held-out rule (decontamination of the prompts
    /// against the suite and any benchmarks), before any stage runs.
    pub fn resolve(args: PipelineArgs, quiet: bool) -> Result<Self> {
        let config = PipelineConfig::read(&args.config)?;
        if let (Some(Stage::Grpo), None) = (args.only.or(args.from), &config.grpo) {
            bail!("{}: there is no [grpo] table, so no `grpo` stage", args.config.display());
        }
        let settings =
            std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
        let gate = config.eval.resolve().with_context(|| format!("{} [eval]", args.config.display()))?;
        held_out::check_held_out(&config, &gate.suite)?;
        if let Some(grpo) = &config.grpo {
            for file in &grpo.prompts {
                precept_train::grpo::check_prompts(file, &grpo.config)
                    .with_context(|| format!("{} [grpo] prompts", args.config.display()))?;
            }
            grpo_rewards(&grpo.config).with_context(|| format!("{} [grpo]", args.config.display()))?;
        }
        Ok(Self { config, suite: gate.suite, settings, from: args.from, only: args.only, quiet })
    }

    /// Whether `stage` runs in this invocation, and whether it reruns when finished.
    fn selection(&self, stage: Stage) -> (bool, bool) {
        match (self.only, self.from) {
            (Some(only), _) => (stage == only, stage == only),
            (None, Some(from)) => (stage >= from, stage == from),
            (None, None) => (true, false),
        }
    }

    /// The settings hash of each stage (canonical JSON, so neither the order of a table's keys
    /// nor of a struct's fields matters), chained with its upstream stages'; a stage's input
    /// files (the constitution, the prompts, the suite and its cases) count as its settings.
    /// Without `[grpo]`, GRPO's hash is empty and the gate follows DPO.
    fn hashes(&self) -> Result<[String; 5]> {
        let config = &self.config;
        let mut inputs = vec![std::fs::read_to_string(&config.constitute.constitution)
            .with_context(|| format!("reading {}", config.constitute.constitution.display()))?];
        inputs.extend(read_all(&config.prompts)?);
        let constitute = hash_settings(&(&config.constitute, inputs));
        let sft = hash_settings(&(&constitute, &config.sft));
        let dpo = hash_settings(&(&sft, &config.dpo));
        let (grpo, trained) = match &config.grpo {
            Some(grpo) => {
                let hash = hash_settings(&(&dpo, &grpo.config, read_all(&grpo.prompts)?));
                (hash.clone(), hash)
            }
            None => (String::new(), dpo.clone()),
        };
        let eval = hash_settings(&(&trained, &config.eval, &self.suite));
        Ok([constitute, sft, dpo, grpo, eval])
    }

    /// Writes the run report from what the stages have written.
    fn report(&self) -> Result<()> {
        let path = report::write_run_report(&self.config.out, &self.settings)?;
        tracing::info!("report: {}", path.display());
        Ok(())
    }

    /// The first stage this invocation runs.
    fn first_selected(&self) -> Stage {
        self.only.or(self.from).unwrap_or(Stage::Constitute)
    }

    fn run_stage<B: TrainKernels>(&self, stage: Stage, device: &B::Device, decode: Option<FloatDType>) -> Result<()> {
        let config = &self.config;
        match stage {
            Stage::Constitute => {
                held_out::concatenate(&config.prompts, &prompts_file(&config.out))?;
                Constitute { settings: config.constitute.clone(), quiet: self.quiet }.run::<B>(device.clone(), decode)
            }
            Stage::Sft => {
                let resume = Checkpoints::new(&config.sft.out).latest()?.is_some();
                let progress = ProgressDisplay::new(self.quiet, COLUMNS);
                train_watched::<B>(&config.sft, device, decode, progress, |progress, monitor| {
                    train_sft::<Autodiff<B>>(&config.sft, device, resume, progress, monitor)
                })
                .context("sft")?;
                Ok(())
            }
            Stage::Dpo => {
                let resume = Checkpoints::new(&config.dpo.train.out).latest()?.is_some();
                let progress = ProgressDisplay::new(self.quiet, COLUMNS);
                train_watched::<B>(&config.dpo.train, device, decode, progress, |progress, monitor| {
                    train_dpo::<Autodiff<B>>(&config.dpo, device, resume, progress, monitor)
                })
                .context("dpo")?;
                Ok(())
            }
            Stage::Grpo => {
                let Some(grpo) = &config.grpo else { return Ok(()) };
                held_out::concatenate(&grpo.prompts, &grpo_prompts_file(&config.out))?;
                let rewards = grpo_rewards(&grpo.config)?;
                let resume = Checkpoints::new(&grpo.config.train.out).latest()?.is_some();
                let progress = ProgressDisplay::new(self.quiet, COLUMNS);
                train_watched::<B>(&grpo.config.train, device, decode, progress, |progress, monitor| {
                    train_grpo_with::<Autodiff<B>>(&grpo.config, rewards, device, resume, progress, monitor)
                })
                .context("grpo")?;
                Ok(())
            }
            Stage::Eval => {
                Gate { settings: config.eval.clone(), json: false, quiet: self.quiet }.run::<B>(device.clone(), decode)
            }
        }
    }
}

/// The contents of `files`, in order.
fn read_all(files: &[PathBuf]) -> Result<Vec<String>> {
    files
        .iter()
        .map(|file| std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display())))
        .collect()
}

impl DeviceCommand for Pipeline {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let hashes = self.hashes()?;
        let out = self.config.out.clone();
        for (stage, hash) in Stage::ALL.into_iter().zip(hashes) {
            let dir = stage_dir(&out, stage);
            if stage == Stage::Grpo && self.config.grpo.is_none() {
                // Without a `[grpo]` table there is no such stage.
                continue;
            }
            let (selected, forced) = self.selection(stage);
            let marker = read_marker(&dir);
            if !selected {
                if marker.as_ref().is_none_or(|m| !m.complete || m.hash != hash) && stage < self.first_selected() {
                    bail!("stage `{}` has not finished with these settings; run it first", stage.name());
                }
                continue;
            }
            let mut todo = action(marker.as_ref(), &hash, forced);
            let mut finished_gate = None;
            if stage == Stage::Eval && todo == Action::Skip {
                finished_gate = report::read_json::<Report>(&dir.join(REPORT_JSON_FILE));
                if finished_gate.is_none() {
                    // Without a readable report the gate runs again (its replies are cached).
                    todo = Action::Resume;
                }
            }
            match todo {
                Action::Skip => {
                    tracing::info!("{}: finished with these settings; skipped", stage.name());
                    if let Some(gate) = finished_gate {
                        // The exit code still carries the finished gate's verdict.
                        let verdict = announce(&gate, false);
                        self.report()?;
                        return verdict;
                    }
                    continue;
                }
                Action::Start if dir.exists() => {
                    std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
                }
                _ => {}
            }
            tracing::info!("{}: {}", stage.name(), if todo == Action::Resume { "continuing" } else { "starting" });
            write_marker(&dir, &Marker { hash: hash.clone(), complete: false })?;
            let started = std::time::Instant::now();
            let ran = self.run_stage::<B>(stage, &device, decode);
            tracing::info!("{}: ran for {:.1} min", stage.name(), started.elapsed().as_secs_f64() / 60.0);
            // The gate's verdict (a failing exit code) still leaves a finished stage.
            let verdict = ran.as_ref().is_err_and(|e| e.downcast_ref::<super::GateFailure>().is_some());
            if ran.is_ok() || verdict {
                write_marker(&dir, &Marker { hash, complete: true })?;
            }
            if ran.is_err() {
                self.report()?;
                return ran;
            }
        }
        self.report()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The inputs of a pipeline (constitution, prompts, a suite with one case) in `dir`, and a
    /// settings file over them whose tables come in `order`, each with its keys reversed or not.
    fn pipeline_file(dir: &Path, name: &str, order: &[&str], reversed: bool, sft_lr: &str) -> PathBuf {
        std::fs::write(dir.join("c.toml"), "name = \"c\"\n").unwrap();
        std::fs::write(
            dir.join("p.jsonl"),
            "{\"id\":\"a\",\"prompt\":\"How do I bake bread?\",\"expected\":\"comply\"}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("cases.jsonl"),
            "{\"id\":\"b\",\"prompt\":\"How do I kill a stuck process?\",\"expected\":\"comply\",\"category\":\"x\"}\n",
        )
        .unwrap();
        std::fs::write(dir.join("s.toml"), "name = \"s\"\ncases = [\"cases.jsonl\"]\n").unwrap();
        let d = dir.display();
        let tables = |stage: &str| -> Vec<String> {
            match stage {
                "constitute" => vec![
                    format!("constitution = \"{d}/c.toml\""),
                    format!("prompts = [\"{d}/p.jsonl\"]"),
                    "feedback = true".into(),
                    "max_new_tokens = 32".into(),
                    "clamp = [0.4, 0.6]".into(),
                ],
                "sft" => vec![format!("learning_rate = {sft_lr}"), "max_steps = 3".into(), "max_length = 64".into()],
                "dpo" => vec!["beta = 0.2".into(), "max_steps = 2".into()],
                "grpo" => vec![
                    "num_generations = 2".into(),
                    "per_device_train_batch_size = 2".into(),
                    "reward_funcs = [\"expectation\", \"length\"]".into(),
                    "soft_punish_cache = 4".into(),
                ],
                _ => vec![format!("suite = \"{d}/s.toml\""), "batch_size = 4".into()],
            }
        };
        let mut text = format!("out = \"{d}/run\"\nmodel = \"{d}/base\"\n");
        for stage in order {
            let mut keys = tables(stage);
            if reversed {
                keys.reverse();
            }
            text.push_str(&format!("[{stage}]\n{}\n", keys.join("\n")));
        }
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn hashes_of(path: PathBuf) -> [String; 5] {
        let args = PipelineArgs { config: path, from: None, only: None };
        Pipeline::resolve(args, true).unwrap().hashes().unwrap()
    }

    #[test]
    fn reordered_settings_keep_every_stage_and_a_changed_value_reruns_its_stage_and_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let stages = ["constitute", "sft", "dpo", "eval"];
        let first = hashes_of(pipeline_file(dir.path(), "pa.toml", &stages, false, "1e-4"));
        let reordered =
            hashes_of(pipeline_file(dir.path(), "pb.toml", &["eval", "dpo", "constitute", "sft"], true, "1e-4"));
        assert_eq!(first, reordered);
        let changed = hashes_of(pipeline_file(dir.path(), "pc.toml", &stages, false, "2e-4"));
        assert_eq!(changed[0], first[0], "constitute does not depend on SFT's settings");
        for stage in [1, 2, 4] {
            assert_ne!(changed[stage], first[stage], "stage {stage} reruns after SFT's change");
        }
        assert!(first[3].is_empty() && changed[3].is_empty(), "no [grpo] table, no GRPO stage");
        // The stages read their inputs' contents: an edited prompt file reruns everything.
        std::fs::write(dir.path().join("p.jsonl"), "{\"id\":\"a\",\"prompt\":\"How do I bake rye bread?\"}\n").unwrap();
        let edited = hashes_of(dir.path().join("pa.toml"));
        assert!(edited.iter().zip(&first).all(|(a, b)| a != b || a.is_empty()));
    }

    #[test]
    fn a_grpo_table_adds_a_stage_between_dpo_and_the_gate_that_its_prompts_and_settings_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let without =
            hashes_of(pipeline_file(dir.path(), "pa.toml", &["constitute", "sft", "dpo", "eval"], false, "1e-4"));
        let stages = ["constitute", "sft", "dpo", "grpo", "eval"];
        let with = hashes_of(pipeline_file(dir.path(), "pb.toml", &stages, false, "1e-4"));
        assert_eq!(with[..3], without[..3], "GRPO comes after DPO");
        assert!(!with[3].is_empty());
        assert_ne!(with[4], without[4], "the gate evaluates GRPO's model");
        let path = dir.path().join("pb.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("soft_punish_cache = 4", "soft_punish_cache = 5")).unwrap();
        let changed = hashes_of(path.clone());
        assert_eq!(changed[..3], with[..3]);
        assert!(changed[3] != with[3] && changed[4] != with[4]);

        // Its own prompts: checked for what its rewards read, and hashed.
        let own = dir.path().join("own.jsonl");
        std::fs::write(&own, "{\"prompt\":\"How do I pick a lock?\"}\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let table = format!("[grpo]\nprompts = [{:?}]\n", own.display().to_string());
        std::fs::write(&path, text.replace("[grpo]\n", &table)).unwrap();
        let args = PipelineArgs { config: path.clone(), from: None, only: None };
        let error = format!("{:#}", Pipeline::resolve(args, true).err().unwrap());
        assert!(
            error.contains("[grpo] prompts") && error.contains("own.jsonl:1: field `expected` is missing"),
            "{error}"
        );
        std::fs::write(&own, "{\"prompt\":\"How do I pick a lock?\",\"expected\":\"refuse\"}\n").unwrap();
        let own_prompts = hashes_of(path.clone());
        assert_eq!(own_prompts[..3], with[..3]);
        assert_ne!(own_prompts[3], changed[3]);
        let pipeline = Pipeline::resolve(PipelineArgs { config: path, from: None, only: None }, true).unwrap();
        assert_eq!(pipeline.config.training_prompts(), [dir.path().join("p.jsonl"), own]);

        let args = PipelineArgs { config: dir.path().join("pa.toml"), from: None, only: Some(Stage::Grpo) };
        let error = format!("{:#}", Pipeline::resolve(args, true).err().unwrap());
        assert!(error.contains("there is no [grpo] table"), "{error}");
    }
}
