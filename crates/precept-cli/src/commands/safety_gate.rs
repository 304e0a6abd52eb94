//! The safety gate during training (`[safety]`, `--safety-suite S --safety-every N`):
//! [`SafetyGate`] is precept-train's [`Monitor`] made of precept-eval's [`run_gate`].
//!
//! Every `every` steps the current weights are written as a model folder under
//! `<out>/safety/step-N/`, gated against the base model on the suite (or its first
//! `cases` cases of each kind), and the folder's weights removed again; the gate's reports stay.
//! The base side is generated once and then taken from the eval cache. A significant regression
//! in either direction stops the run with the gate's exit code (2 or 3), unless `warn_only`;
//! every other verdict (an underpowered suite included) passes, and its checkpoint becomes
//! `<out>/best`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::FloatDType;
use precept_data::{Connection, ModelSource, Silent};
use precept_eval::{run_gate, EvalSettings, GateSettings, Report, Suite, Verdict, ALL};
use precept_train::monitor::{Checked, Monitor, MonitorError, Snapshot};
use precept_train::trainer::TrainOutcome;
use precept_train::{TrainConfig, TrainError, TrainKernels};
use serde_json::{json, Map, Value};

use super::eval::GateFailure;
use crate::commands::remote::ModelOpener;

/// The folder of the gate's reports inside a run folder.
pub const SAFETY_DIR: &str = "safety";

/// The safety gate watching one training run.
pub struct SafetyGate<'a, B: TrainKernels> {
    /// The gate's settings; the tuned side is set at each check.
    gate: GateSettings,
    every: u64,
    warn_only: bool,
    /// `<out>/safety`.
    folder: PathBuf,
    connection: Connection,
    device: &'a B::Device,
    decode: Option<FloatDType>,
    warned_underpowered: bool,
    /// The verdict that stopped the run, if one did.
    stopped: Option<Verdict>,
}

impl<'a, B: TrainKernels> SafetyGate<'a, B> {
    /// The gate `config.safety` asks for (none when it names no suite), its suite loaded and
    /// both sides checked, so a bad setting fails before training starts.
    pub fn new(config: &TrainConfig, device: &'a B::Device, decode: Option<FloatDType>) -> Result<Option<Self>> {
        let safety = &config.safety;
        let (Some(suite), Some(every)) = (&safety.suite, safety.every) else { return Ok(None) };
        let settings = EvalSettings {
            suite: suite.clone(),
            model: Some(config.model.clone()),
            baseline: Some(config.model.clone()),
            cache_dir: safety.cache_dir.clone(),
            batch_size: safety.batch_size,
            max_new_tokens: safety.max_new_tokens,
            ..EvalSettings::default()
        };
        let mut gate = settings.resolve().context("the safety gate's settings (`[safety]`)")?;
        if let Some(cases) = safety.cases {
            keep_first_cases(&mut gate.suite, cases);
        }
        gate.validate()?;
        let folder = config.out.join(SAFETY_DIR);
        let connection = settings.connection;
        Ok(Some(Self {
            gate,
            every,
            warn_only: safety.warn_only,
            folder,
            connection,
            device,
            decode,
            warned_underpowered: false,
            stopped: None,
        }))
    }

    /// Gates the weights of `snapshot`: the report and the metrics record.
    fn gate(&mut self, snapshot: &Snapshot<'_, B>) -> Result<Checked> {
        let dir = self.folder.join(format!("step-{:06}", snapshot.step));
        let model = dir.join("model");
        snapshot.write_model(&model)?;
        let mut gate = self.gate.clone();
        gate.tuned.model = ModelSource::Folder(model.clone());
        gate.out = Some(dir.clone());
        let mut models = ModelOpener::<B> { connection: &self.connection, device: self.device, decode: self.decode };
        let report = run_gate(&gate, &mut models, &mut Silent)?;
        // The checkpoint keeps these weights; the gate's reports stay beside them.
        std::fs::remove_dir_all(&model).with_context(|| format!("removing {}", model.display()))?;
        let verdict = report.verdict();
        let record = record(&report);
        let summary = summary(&record, verdict);
        let regressed = matches!(verdict, Verdict::SafetyRegression | Verdict::OverRefusalRegression);
        let mut stop = None;
        if regressed && self.warn_only {
            tracing::warn!("step {}: safety gate: {}; see {}", snapshot.step, verdict.describe(), dir.display());
        } else if regressed {
            self.stopped = Some(verdict);
            stop = Some(format!("safety gate: {} (report in {})", verdict.describe(), dir.display()));
        } else if verdict == Verdict::Underpowered && !self.warned_underpowered {
            self.warned_underpowered = true;
            tracing::warn!(
                "safety gate: the suite's thresholds are below what {} trials can detect; only significant rises stop the run",
                report.trials
            );
        }
        Ok(Checked { record, summary, passed: !regressed, stop })
    }

    /// The run's result, with a stop by the gate turned into the gate's exit code.
    pub fn outcome(&self, result: precept_train::Result<TrainOutcome>) -> Result<TrainOutcome> {
        match (result, self.stopped) {
            (Err(error @ TrainError::Stopped { .. }), Some(verdict)) => {
                tracing::error!("{error}");
                Err(GateFailure { verdict }.into())
            }
            (result, _) => Ok(result?),
        }
    }
}

impl<B: TrainKernels> Monitor<B> for SafetyGate<'_, B> {
    fn every(&self) -> u64 {
        self.every
    }

    fn check(&mut self, snapshot: &Snapshot<'_, B>) -> Result<Checked, MonitorError> {
        self.gate(snapshot).map_err(|error| format!("{error:#}").into())
    }
}

/// Keeps the first `per_kind` cases of each expectation (refuse, comply) and their trials.
fn keep_first_cases(suite: &mut Suite, per_kind: usize) {
    let mut seen = HashMap::new();
    suite.cases.retain(|case| {
        let count = seen.entry(case.expected).or_insert(0usize);
        *count += 1;
        *count <= per_kind
    });
    let kept: HashSet<&str> = suite.cases.iter().map(|case| case.id.as_str()).collect();
    suite.trials.retain(|trial| kept.contains(trial.case_id.as_str()));
}

/// The metrics of a gate's report: the tuned model's harmful-compliance and over-refusal rates
/// with their Wilson intervals, the base's rates and the McNemar p-values (under the suite's
/// system prompt), and the verdict.
fn record(report: &Report) -> Map<String, Value> {
    let mut record = Map::new();
    let overall = report.with_system_prompt.comparison.groups.iter().filter(|g| g.category == ALL && g.framing == ALL);
    for group in overall {
        let name = match group.expected {
            precept_data::Expected::Refuse => "harmful",
            precept_data::Expected::Comply => "over_refusal",
        };
        record.insert(format!("safety/{name}"), json!(group.tuned.rate));
        record.insert(format!("safety/{name}_low"), json!(group.tuned.low));
        record.insert(format!("safety/{name}_high"), json!(group.tuned.high));
        record.insert(format!("safety/base_{name}"), json!(group.base.rate));
        record.insert(format!("safety/{name}_p_value"), json!(group.p_value));
    }
    record.insert("safety/verdict".into(), json!(report.verdict().describe()));
    record
}

/// `safety harmful 0.100 [0.028, 0.301] (base 0.000), over-refusal …: pass`.
fn summary(record: &Map<String, Value>, verdict: Verdict) -> String {
    let number = |key: &str| record.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let parts: Vec<String> = [("harmful", "harmful"), ("over_refusal", "over-refusal")]
        .into_iter()
        .filter(|(key, _)| record.contains_key(&format!("safety/{key}")))
        .map(|(key, label)| {
            format!(
                "{label} {:.3} [{:.3}, {:.3}] (base {:.3})",
                number(&format!("safety/{key}")),
                number(&format!("safety/{key}_low")),
                number(&format!("safety/{key}_high")),
                number(&format!("safety/base_{key}"))
            )
        })
        .collect();
    format!("safety {}: {}", parts.join(", "), verdict.describe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cases_of_each_kind_are_kept_with_their_trials() {
        let dir = tempfile::tempdir().unwrap();
        let mut cases = String::new();
        for i in 0..4 {
            cases.push_str(&format!(
                "{{\"id\":\"h{i}\",\"category\":\"c\",\"prompt\":\"p{i}\",\"expected\":\"refuse\"}}\n"
            ));
            cases.push_str(&format!(
                "{{\"id\":\"b{i}\",\"category\":\"c\",\"prompt\":\"q{i}\",\"expected\":\"comply\"}}\n"
            ));
        }
        std::fs::write(dir.path().join("cases.jsonl"), cases).unwrap();
        let suite_path = dir.path().join("suite.toml");
        std::fs::write(&suite_path, "cases = [\"cases.jsonl\"]\nframings = [\"direct\", \"roleplay\"]\n").unwrap();
        let mut suite = Suite::load(&suite_path).unwrap();
        let before = suite.trials.len();
        keep_first_cases(&mut suite, 2);
        let ids: Vec<&str> = suite.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["h0", "b0", "h1", "b1"]);
        assert!(suite.trials.iter().all(|t| ids.contains(&t.case_id.as_str())));
        assert!(suite.trials.iter().any(|t| t.case_id == "h1") && suite.trials.len() < before);
    }
}
