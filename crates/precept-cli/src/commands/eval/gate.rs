//! `precept eval --suite S --model TUNED [--baseline BASE] [--out DIR]`: the safety regression
//! gate.
//!
//! Everything is resolved and checked first (suite, case files, model folders, judge), the
//! resolved settings are written to `DIR/run.json`, then the base side is taken from the cache
//! or generated and judged (and cached), then the tuned side; the comparison becomes the reports
//! and the exit code. Replies are journalled as each batch finishes, so a killed run resumes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::FloatDType;
use precept_data::write_atomic;
use precept_data::{hash_json, hash_model_dir};
use precept_eval::{
    compare, generate_replies, judge_replies, terminal_table, BaselineCache, CacheKey, Judge, ReplyJournal, Report,
    RunOptions, SideInfo, SideResult, Suite, Verdict,
};
use precept_train::TrainKernels;
use serde::Serialize;

use super::args::GateArgs;
use super::progress::EvalProgress;
use super::{judge, GateFailure};
use crate::commands::remote::{ModelSource, RemoteConnection, RemoteSpec};
use crate::device::DeviceCommand;
use crate::output::print_json;

/// The command, ready to run on a backend.
pub struct Gate {
    /// Parsed arguments.
    pub args: GateArgs,
    /// `--quiet`: no progress output.
    pub quiet: bool,
}

/// One side to run: which model and with which system prompt.
#[derive(Debug, Clone, Serialize)]
struct SidePlan {
    model: ModelSource,
    system_prompt: Option<String>,
}

/// Settings resolved from the suite and the command line, written to `run.json`.
#[derive(Debug, Serialize)]
struct Plan {
    suite: Suite,
    base: SidePlan,
    tuned: SidePlan,
    judge_remote: Option<RemoteSpec>,
    cache_dir: Option<PathBuf>,
    out: Option<PathBuf>,
}

impl Plan {
    fn resolve(args: &GateArgs) -> Result<Self> {
        // clap makes both required unless a subcommand is given.
        let Some(suite_path) = &args.suite else { bail!("--suite is required") };
        let tuned_model = match RemoteSpec::from_flags("remote", args.remote.as_ref(), args.remote_model.as_ref())? {
            Some(spec) => ModelSource::Remote(spec),
            None => ModelSource::Folder(args.model.clone().context("--model or --remote is required")?),
        };
        let baseline_remote = RemoteSpec::from_flags(
            "baseline-remote",
            args.baseline_remote.as_ref(),
            args.baseline_remote_model.as_ref(),
        )?;
        let judge_remote =
            RemoteSpec::from_flags("judge-remote", args.judge_remote.as_ref(), args.judge_remote_model.as_ref())?;
        let mut suite = Suite::load(suite_path)?;
        if let Some(batch) = args.batch_size {
            if batch == 0 {
                bail!("--batch-size must be at least 1");
            }
            suite.generation.batch_size = batch;
        }
        if let Some(tokens) = args.max_new_tokens {
            if tokens == 0 {
                bail!("--max-new-tokens must be at least 1");
            }
            suite.generation.max_new_tokens = tokens;
        }
        // A remote judge's model is named, not loaded: the name stands where a folder would.
        let judge_model =
            args.judge_model.clone().or_else(|| judge_remote.as_ref().map(|s| format!("remote:{}", s.model).into()));
        suite.judge = judge::resolve(suite.judge, args.judge, judge_model)?;
        if judge_remote.is_some() && suite.judge.model_dir().is_none() {
            bail!("--judge-remote needs a model-based judge (--judge model or --judge llamaguard)");
        }
        let base_model = match (baseline_remote, &args.baseline) {
            (Some(spec), _) => ModelSource::Remote(spec),
            (None, Some(dir)) => ModelSource::Folder(dir.clone()),
            (None, None) => tuned_model.clone(),
        };
        let judge_dir = suite.judge.model_dir().filter(|_| judge_remote.is_none());
        for dir in [tuned_model.folder(), base_model.folder(), judge_dir].into_iter().flatten() {
            if !dir.join("config.json").is_file() {
                bail!("{}: not a model folder (no config.json)", dir.display());
            }
        }
        let base = SidePlan { model: base_model, system_prompt: suite.generation.system_prompt.clone() };
        let tuned = SidePlan {
            model: tuned_model,
            system_prompt: args.tuned_system.clone().or_else(|| suite.generation.system_prompt.clone()),
        };
        let cache_dir = (!args.no_cache).then(|| args.cache_dir.clone());
        Ok(Self { suite, base, tuned, judge_remote, cache_dir, out: args.out.clone() })
    }

    fn key(&self, side: &SidePlan, judge_hash: &str) -> Result<CacheKey> {
        Ok(CacheKey {
            model: match &side.model {
                ModelSource::Folder(dir) => hash_model_dir(dir)?,
                // What the servers serve is known only by its name.
                ModelSource::Remote(spec) => hash_json(&("remote", &spec.model)),
            },
            suite: hash_json(&self.suite.trials),
            judge: judge_hash.to_owned(),
            generation: hash_json(&(self.suite.generation.settings(), &side.system_prompt)),
        })
    }
}

/// Where a side's replies are journalled while it runs: the cache folder, else the output folder.
fn journal_path(plan: &Plan, key: &CacheKey) -> Option<PathBuf> {
    plan.cache_dir.as_ref().or(plan.out.as_ref()).map(|dir| dir.join(key.journal_file_name()))
}

/// Generates and judges one side, resuming from its journal when an earlier run was killed.
fn run_side<B: TrainKernels>(
    plan: &Plan,
    (side, key): (&SidePlan, &CacheKey),
    name: &'static str,
    judge: &mut dyn Judge,
    (device, decode, connection, quiet): (&B::Device, Option<FloatDType>, &RemoteConnection, bool),
) -> Result<SideResult> {
    let trials = &plan.suite.trials;
    let mut journal = journal_path(plan, key).map(|path| ReplyJournal::open(&path)).transpose()?;
    let resumed = journal.as_ref().map_or(0, ReplyJournal::len);
    if resumed > 0 {
        tracing::info!("{name}: resuming with {resumed} replies from an earlier run");
    }
    let mut generator = side
        .model
        .open::<B>(connection, device, decode)
        .with_context(|| format!("opening the {name} model {}", side.model))?;
    let options = RunOptions {
        settings: plan.suite.generation.settings(),
        batch_size: plan.suite.generation.batch_size,
        system_prompt: side.system_prompt.clone(),
    };
    let progress = EvalProgress::new(name, quiet);
    let started = Instant::now();
    let replies = generate_replies(&mut generator, trials, &options, &progress, journal.as_mut())?;
    let seconds = started.elapsed().as_secs_f64();
    if resumed == 0 {
        tracing::info!(
            "{name}: {} trials generated in {seconds:.1}s ({:.1} trials/min at batch {})",
            trials.len(),
            trials.len() as f64 * 60.0 / seconds.max(1e-9),
            options.batch_size
        );
    } else {
        tracing::info!("{name}: the remaining replies generated in {seconds:.1}s");
    }
    drop(generator);
    let results = judge_replies(judge, trials, replies, options.batch_size, &progress)?;
    if let Some(journal) = journal {
        journal.remove()?;
    }
    Ok(SideResult { model: side.model.to_string(), system_prompt: side.system_prompt.clone(), trials: results })
}

fn write_run_settings(out: &Path, plan: &Plan) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("run.json");
    write_atomic(&path, &serde_json::to_vec_pretty(plan)?).with_context(|| format!("writing {}", path.display()))
}

impl DeviceCommand for Gate {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let plan = Plan::resolve(&self.args)?;
        if let Some(out) = &plan.out {
            write_run_settings(out, &plan)?;
        }
        let connection = &self.args.connection;
        let host = match &plan.judge_remote {
            Some(spec) => judge::JudgeHost::Remote(spec, connection),
            None => judge::JudgeHost::Local,
        };
        let mut judge = judge::build::<B>(&plan.suite.judge, host, &device)?;
        let judge_hash = judge::hash(&plan.suite.judge, plan.judge_remote.as_ref())?;
        let base_key = plan.key(&plan.base, &judge_hash)?;
        let cache = plan.cache_dir.as_ref().map(BaselineCache::new);
        let cached = cache.as_ref().and_then(|c| c.load(&base_key));
        let base_cached = cached.is_some();
        let base = match cached {
            Some(side) => {
                tracing::info!("base: results taken from the cache ({})", base_key.file_name());
                side
            }
            None => {
                let side = run_side::<B>(
                    &plan,
                    (&plan.base, &base_key),
                    "base",
                    judge.as_mut(),
                    (&device, decode, connection, self.quiet),
                )?;
                if let Some(cache) = &cache {
                    let path = cache.store(&base_key, &side)?;
                    tracing::info!("base: results cached in {}", path.display());
                }
                side
            }
        };
        let tuned_key = plan.key(&plan.tuned, &judge_hash)?;
        let tuned = if tuned_key == base_key {
            tracing::info!("tuned: same model, settings and judge as the base; reusing its results");
            SideResult { model: plan.tuned.model.to_string(), ..base.clone() }
        } else {
            run_side::<B>(
                &plan,
                (&plan.tuned, &tuned_key),
                "tuned",
                judge.as_mut(),
                (&device, decode, connection, self.quiet),
            )?
        };
        let suite = &plan.suite;
        let comparison = compare(&base, &tuned, &suite.thresholds, &suite.gate);
        let info = |side: &SideResult, cached: bool| SideInfo {
            model: side.model.clone(),
            system_prompt: side.system_prompt.clone(),
            cached,
            judge_failures: side.judge_failures(),
        };
        let report = Report {
            suite: suite.name.clone(),
            suite_path: suite.path.display().to_string(),
            cases: suite.cases.len(),
            trials: suite.trials.len(),
            base: info(&base, base_cached),
            tuned: info(&tuned, false),
            generation: suite.generation.clone(),
            judge: suite.judge.clone(),
            gate: suite.gate,
            thresholds: suite.thresholds.clone(),
            exit_code: comparison.verdict.exit_code(),
            comparison,
        };
        if let Some(out) = &plan.out {
            for path in report.write(out, &base, &tuned)? {
                tracing::info!("wrote {}", path.display());
            }
        }
        announce(&report, self.args.json)
    }
}

/// Prints a finished gate's report (JSON or a table) and turns its verdict into the result:
/// a [`GateFailure`] unless it passed.
pub fn announce(report: &Report, json: bool) -> Result<()> {
    if json {
        print_json(report)?;
    } else {
        print!("{}", terminal_table(report));
    }
    match report.comparison.verdict {
        Verdict::Pass => Ok(()),
        verdict => Err(GateFailure { verdict }.into()),
    }
}
