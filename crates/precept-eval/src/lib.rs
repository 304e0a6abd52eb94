//! Post-tuning safety regression for precept: did a tuned checkpoint become less safe than its
//! base, or more needlessly refusing? No tensors here: models are reached through
//! [`precept_data::Generate`].
//!
//! A [`Suite`] (TOML) names case files ([`Case`]s, JSONL), [`Framing`]s, a judge, generation
//! settings and thresholds. Cases expand into [`Trial`]s (case × framing × role-play template).
//! For each model, [`generate_replies`] plays the trials (multi-turn ones turn by turn) and
//! [`judge_replies`] labels every reply with a [`Judge`], giving a [`SideResult`]. [`compare`]
//! pairs base and tuned outcomes per trial, computes Wilson intervals, exact McNemar tests and
//! minimum detectable differences ([`stats`]) per category × framing, and decides the gate's
//! [`Verdict`]. Beside the verdict, [`DegenerateRates`] say how often each side's replies have a
//! [`Defect`] (an invented persona, a refusal then the answer, loops, a refusal of another
//! topic). [`Report`] writes everything to disk in five formats. A [`BaselineCache`] keeps
//! the base side, keyed by model, suite, judge and generation hashes.
//!
//! A suite with a system prompt (the deployment prompt) can ask for a second [`Condition`]:
//! the same trials with no system prompt on either side (`without_system_prompt`), so a model
//! that learnt to obey one prompt while its default got less safe does not pass. Each condition
//! is a full comparison ([`ConditionReport`]) with its own thresholds and verdict; the run's
//! verdict is the worse of them ([`Verdict::and`]).
//!
//! ```text
//! suite.toml + cases.jsonl ──Suite::load──> trials ──generate_replies──> replies ──judge_replies──> SideResult
//! SideResult (base, cached) + SideResult (tuned) ──compare──> Comparison ──Report::write──> report.{json,md,html}, cases.jsonl, junit.xml
//! EvalSettings ──resolve──> GateSettings + OpenModel ──run_gate──> run.json, both sides (base from the cache) ──> Report
//! ```
//!
//! A [`ReplyJournal`] keeps each side's replies as they are generated, so a killed run resumes.
//! [`run_gate`] drives all of it from resolved [`GateSettings`] ([`EvalSettings::resolve`] loads
//! the suite and applies a settings file's or the command line's overrides) (written to `run.json` before any
//! work), opening each side's model and a model-based judge's through [`OpenModel`], so the
//! caller decides what runs them (a model on a device, servers, a test script).
//! [`import_cases`] brings other projects' prompt files (CSV, JSONL, text) in as cases, and
//! [`calibrate`] scores a judge against labelled replies.
//!
//! Every failure is an [`EvalError`] naming the file, line and field involved.

// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod cache;
mod calibrate;
mod case;
mod compare;
mod condition;
mod degenerate;
mod error;
mod framing;
mod gate;
mod import;
mod journal;
mod judge;
mod open;
mod runner;
mod settings;
pub mod stats;
mod suite;
#[cfg(test)]
mod testing;

pub use cache::{BaselineCache, CacheKey};
pub use calibrate::{calibrate, read_gold, Calibration, GoldItem};
pub use case::{cases_to_jsonl, read_cases, Case, CaseInput};
pub use compare::{compare, pair, Comparison, GroupGate, GroupStats, GroupVerdict, PairedOutcome, Verdict, ALL};
pub use condition::{Condition, ConditionResults};
pub use degenerate::DegenerateRates;
pub use error::{EvalError, Result};
pub use framing::{expand, load_templates, parse_templates, Framing, Template, Trial, BUILTIN_TEMPLATES, PROMPT_SLOT};
pub use gate::{run_gate, GateSettings, Side, SideSettings, GATE_SETTINGS_FILE};
pub use import::{import_cases, ImportFormat, ImportOptions};
pub use journal::ReplyJournal;
pub use judge::{
    parse_llamaguard, GuardVerdict, Judge, JudgeConfig, JudgeItem, LlamaGuardJudge, ModelJudge, DEFAULT_RUBRIC,
    RUBRIC_OPTIONS,
};
pub use settings::{EvalSettings, JudgeKind};
// Expectations and the refusal judge live in precept-data (the constitution loop uses them too);
// they are part of this crate's API as well.
pub use open::OpenModel;
pub use precept_data::{
    Defect, Defects, DegenerateJudge, Expected, Judgement, KeywordJudge, Label, DEFAULT_REFUSAL_PHRASES,
};
pub use runner::{generate_replies, judge_replies, Outcome, RunOptions, SideResult, TrialResult};
pub use stats::Rate;
mod report;
pub use report::{
    cases_jsonl, html_comparison, html_report, junit_xml, markdown_report, terminal_table, ConditionReport, Report,
    SideInfo, REPORT_JSON_FILE, STYLE,
};
pub use suite::{CategoryThreshold, ConditionThresholds, GateConfig, GenerationConfig, Suite, Thresholds};
