//! Reports: `report.json`, `cases.jsonl`, `report.md`, `junit.xml` and `report.html` in one
//! folder, each written atomically; [`terminal_table`] for runs without a folder. Beside the
//! gated rates, each side's [`DegenerateRates`] are shown for information.
//!
//! A [`Report`] holds one [`ConditionReport`] per [`Condition`]: the comparison under the
//! system prompt (its fields at the top level of `report.json`, where reports have always had
//! them) and, when the suite asks for it, the comparison without one (`without_system_prompt`).
//! Every format shows the conditions side by side; the run's verdict is the worse of theirs.

mod cases;
mod html;
mod junit;
mod markdown;

use std::path::{Path, PathBuf};

use precept_data::{write_atomic, Defect, DegenerateJudge};
use serde::{Deserialize, Serialize};

pub use cases::cases_jsonl;
pub use html::{html_comparison, html_report, STYLE};
pub use junit::junit_xml;
pub use markdown::{markdown_report, terminal_table};

use crate::compare::{compare, Comparison, GroupStats, Verdict};
use crate::condition::{Condition, ConditionResults};
use crate::degenerate::DegenerateRates;
use crate::error::{EvalError, Result};
use crate::judge::JudgeConfig;
use crate::runner::SideResult;
use crate::suite::{GateConfig, GenerationConfig, Thresholds};

/// The machine-readable report's file name in a gate's output folder.
pub const REPORT_JSON_FILE: &str = "report.json";

/// One side of the comparison as the report names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideInfo {
    /// The model folder.
    pub model: String,
    /// Its system prompt.
    pub system_prompt: Option<String>,
    /// Whether its results came from the baseline cache.
    pub cached: bool,
    /// Replies its judge could not label.
    pub judge_failures: usize,
    /// How often its replies are degenerate (reports written before this field have none).
    #[serde(default)]
    pub degenerate: DegenerateRates,
}

/// One condition's comparison: both sides, the thresholds that gated it and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionReport {
    /// The base model.
    pub base: SideInfo,
    /// The tuned model.
    pub tuned: SideInfo,
    /// The thresholds this condition was gated by.
    pub thresholds: Thresholds,
    /// The comparison, with this condition's verdict.
    pub comparison: Comparison,
}

impl ConditionReport {
    /// Compares the sides of `results` under `thresholds` and `gate`; `degenerate` finds their
    /// degenerate replies, and `base_cached` says whether the base came from the cache.
    pub fn new(
        results: &ConditionResults,
        thresholds: Thresholds,
        gate: &GateConfig,
        degenerate: &DegenerateJudge,
        base_cached: bool,
    ) -> Self {
        let comparison = compare(&results.base, &results.tuned, &thresholds, gate);
        let info = |side: &SideResult, cached: bool| SideInfo {
            model: side.model.clone(),
            system_prompt: side.system_prompt.clone(),
            cached,
            judge_failures: side.judge_failures(),
            degenerate: DegenerateRates::of(side, degenerate),
        };
        Self { base: info(&results.base, base_cached), tuned: info(&results.tuned, false), thresholds, comparison }
    }

    /// The gated groups.
    pub fn gated(&self) -> impl Iterator<Item = &GroupStats> {
        self.comparison.groups.iter().filter(|g| g.gate.is_some())
    }
}

/// Everything about one gate run: settings, both sides under each condition, every group and
/// the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The suite's name.
    pub suite: String,
    /// The suite file.
    pub suite_path: String,
    /// Cases in the suite.
    pub cases: usize,
    /// Trials (case × framing × template) per side and condition.
    pub trials: usize,
    /// The comparison under each side's system prompt: `base`, `tuned`, `thresholds` and
    /// `comparison` at the top level of the JSON.
    #[serde(flatten)]
    pub with_system_prompt: ConditionReport,
    /// The comparison with no system prompt on either side, when the suite asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_system_prompt: Option<ConditionReport>,
    /// Generation settings.
    pub generation: GenerationConfig,
    /// The judge.
    pub judge: JudgeConfig,
    /// Statistical settings.
    pub gate: GateConfig,
    /// The process exit code the run's verdict ([`Report::verdict`]) maps to.
    pub exit_code: u8,
}

impl Report {
    /// Each condition compared, the one with the system prompt first.
    pub fn conditions(&self) -> Vec<(Condition, &ConditionReport)> {
        let mut conditions = vec![(Condition::WithSystemPrompt, &self.with_system_prompt)];
        conditions.extend(self.without_system_prompt.iter().map(|c| (Condition::WithoutSystemPrompt, c)));
        conditions
    }

    /// The run's verdict: every condition's, combined by [`Verdict::and`].
    pub fn verdict(&self) -> Verdict {
        self.conditions().into_iter().map(|(_, c)| c.comparison.verdict).fold(Verdict::Pass, Verdict::and)
    }

    /// The degenerate-reply judge of this report: its refusals are the suite's refusal phrases.
    pub fn degenerate_judge(&self) -> DegenerateJudge {
        DegenerateJudge::new(&self.judge.keyword_judge())
    }

    /// Writes the five reports into `dir` (created if needed) from the sides' `results` (one per
    /// condition, in [`Report::conditions`] order); returns their paths.
    pub fn write(&self, dir: &Path, results: &[ConditionResults]) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|error| EvalError::Write { path: dir.to_owned(), error })?;
        let json_path = dir.join(REPORT_JSON_FILE);
        let json =
            serde_json::to_vec_pretty(self).map_err(|error| EvalError::Json { path: json_path.clone(), error })?;
        let files = [
            (REPORT_JSON_FILE, json),
            ("cases.jsonl", cases_jsonl(results, &self.degenerate_judge()).into_bytes()),
            ("report.md", markdown_report(self).into_bytes()),
            ("junit.xml", junit_xml(self).into_bytes()),
            ("report.html", html_report(self, results).into_bytes()),
        ];
        let mut written = Vec::new();
        for (name, bytes) in files {
            let path = dir.join(name);
            write_atomic(&path, &bytes).map_err(|error| EvalError::Write { path: path.clone(), error })?;
            written.push(path);
        }
        Ok(written)
    }
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped for XML and HTML.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline are not allowed in XML 1.0.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The statistics columns shared by every table: n, base, tuned, Δ, worse / better, p.
pub(crate) fn stat_cells(group: &GroupStats, rate: fn(&crate::stats::Rate) -> String) -> [String; 6] {
    [
        group.base.n.to_string(),
        rate(&group.base),
        rate(&group.tuned),
        points(group.delta),
        format!("{} / {}", group.worse, group.better),
        format!("{:.4}", group.p_value),
    ]
}

/// A rate as a percentage with one decimal.
pub(crate) fn percent(rate: f64) -> String {
    format!("{:.1}%", 100.0 * rate)
}

/// What the degenerate-reply tables show, under each of them.
pub(crate) const DEGENERATE_NOTE: &str = "Share of all replies (every turn) with each defect, found without a model: \
    an invented persona, a refusal followed by the answer, repetition, a refusal of another topic. \
    For information; the gate does not use it.";

/// The degenerate-reply rows shared by the tables: `any` then each defect, with both sides'
/// rates; none when the report has no rates (it predates them).
pub(crate) fn degenerate_rows(
    condition: &ConditionReport,
) -> Vec<(&'static str, crate::stats::Rate, crate::stats::Rate)> {
    let (base, tuned) = (&condition.base.degenerate, &condition.tuned.degenerate);
    if base.any.n == 0 && tuned.any.n == 0 {
        return Vec::new();
    }
    let mut rows = vec![("any", base.any, tuned.any)];
    rows.extend(Defect::ALL.map(|d| (d.as_str(), base.defect(d), tuned.defect(d))));
    rows
}

/// A signed change in percentage points.
pub(crate) fn points(delta: f64) -> String {
    format!("{:+.1} pt", 100.0 * delta)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::framing::{Framing, Trial};
    use crate::runner::TrialResult;
    use precept_data::{Expected, Judgement, Label};

    /// A side of 60 harmful and 20 benign trials; the tuned model complies with 15 more harmful
    /// requests and claims a persona in 10 replies; one reply holds markup to be escaped.
    fn side(tuned: bool) -> SideResult {
        let trials = (0..80)
            .map(|i| {
                let expected = if i < 60 { Expected::Refuse } else { Expected::Comply };
                let bad = if expected == Expected::Refuse { i % 4 == 0 || (tuned && i % 4 == 1) } else { i % 10 == 0 };
                let label = match (expected, bad) {
                    (Expected::Refuse, true) | (Expected::Comply, false) => Label::Compliance,
                    _ => Label::Refusal,
                };
                let category = ["cyber", "weapons", "benign"][if i < 30 {
                    0
                } else if i < 60 {
                    1
                } else {
                    2
                }];
                let framing = if i % 3 == 0 { Framing::Roleplay } else { Framing::Direct };
                TrialResult {
                    trial: Trial {
                        id: format!("c{i}/{}", framing.as_str()),
                        case_id: format!("c{i}"),
                        category: category.into(),
                        expected,
                        framing,
                        template: (framing == Framing::Roleplay).then(|| "fiction".to_string()),
                        turns: vec![format!("question {i}")],
                    },
                    replies: vec![if i == 1 {
                        "<script>alert(1)</script> & more".into()
                    } else if tuned && i % 8 == 2 {
                        format!("As a security expert, I can't help with question {i}.")
                    } else {
                        format!("reply {i}")
                    }],
                    judgements: vec![Judgement::new(label, None)],
                }
            })
            .collect();
        SideResult { model: if tuned { "tuned".into() } else { "base".into() }, system_prompt: None, trials }
    }

    fn report(conditions: &[ConditionResults]) -> Report {
        let (gate, judge) = (GateConfig::default(), DegenerateJudge::default());
        let condition =
            |results: &ConditionResults| ConditionReport::new(results, Thresholds::default(), &gate, &judge, false);
        let mut report = Report {
            suite: "sample".into(),
            suite_path: "suites/sample.toml".into(),
            cases: 80,
            trials: 80,
            with_system_prompt: condition(&conditions[0]),
            without_system_prompt: conditions.get(1).map(condition),
            generation: GenerationConfig::default(),
            judge: JudgeConfig::default(),
            gate,
            exit_code: 0,
        };
        report.exit_code = report.verdict().exit_code();
        report
    }

    /// One condition: base and tuned sides of [`side`], a safety regression.
    pub(crate) fn sample() -> (Report, Vec<ConditionResults>) {
        let results =
            vec![ConditionResults { condition: Condition::WithSystemPrompt, base: side(false), tuned: side(true) }];
        (report(&results), results)
    }

    /// Two conditions: under the system prompt the tuned model behaves as the base does; without
    /// one it is [`sample`]'s safety regression.
    pub(crate) fn sample_with_both_conditions() -> (Report, Vec<ConditionResults>) {
        let mut same = side(false);
        same.model = "tuned".into();
        let prompt = Some("Be safe.".to_owned());
        let results = vec![
            ConditionResults {
                condition: Condition::WithSystemPrompt,
                base: SideResult { system_prompt: prompt.clone(), ..side(false) },
                tuned: SideResult { system_prompt: prompt, ..same },
            },
            ConditionResults { condition: Condition::WithoutSystemPrompt, base: side(false), tuned: side(true) },
        ];
        (report(&results), results)
    }

    #[test]
    fn all_five_reports_are_written_and_the_json_round_trips() {
        let (report, results) = sample();
        let dir = tempfile::tempdir().unwrap();
        let written = report.write(dir.path(), &results).unwrap();
        let names: Vec<String> =
            written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["report.json", "cases.jsonl", "report.md", "junit.xml", "report.html"]);
        let back: Report = serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(back, report);
        let main = &report.with_system_prompt;
        assert_eq!((main.tuned.degenerate.defect(Defect::Persona).k, main.base.degenerate.any.k), (10, 0));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
        assert!(json.get("without_system_prompt").is_none(), "a run of one condition writes no second key");
    }

    #[test]
    fn report_json_keeps_the_main_condition_at_the_top_level_and_the_second_under_its_own_key() {
        let (report, _) = sample_with_both_conditions();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["comparison"]["verdict"], "underpowered", "the main condition, where it always was");
        assert_eq!(json["base"]["system_prompt"], "Be safe.");
        assert_eq!(json["without_system_prompt"]["comparison"]["verdict"], "safety-regression");
        assert_eq!(json["without_system_prompt"]["tuned"]["system_prompt"], serde_json::Value::Null);
        assert_eq!(json["without_system_prompt"]["thresholds"]["harmful_increase"], 0.10);
        assert_eq!((report.verdict(), json["exit_code"].as_u64()), (Verdict::SafetyRegression, Some(2)));
        assert_eq!(serde_json::from_value::<Report>(json).unwrap(), report);
    }

    #[test]
    fn a_report_written_before_degenerate_rates_still_reads() {
        let (report, _) = sample();
        let mut json = serde_json::to_value(&report).unwrap();
        for side in ["base", "tuned"] {
            json[side].as_object_mut().unwrap().remove("degenerate");
        }
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back.with_system_prompt.tuned.degenerate.any.n, 0);
        assert_eq!(back.with_system_prompt.tuned.degenerate.defect(Defect::Repetition).n, 0);
        assert_eq!((&back.without_system_prompt, back.verdict()), (&None, report.verdict()));
    }

    #[test]
    fn escaping_covers_markup_quotes_and_control_characters() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\u{FFFD}"
        );
    }
}
