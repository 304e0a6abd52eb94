//! Reports: `report.json`, `cases.jsonl`, `report.md`, `junit.xml` and `report.html` in one
//! folder, each written atomically; [`terminal_table`] for runs without a folder. Beside the
//! gated rates, each side's [`DegenerateRates`] are shown for information.

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

use crate::compare::{Comparison, GroupStats};
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

/// Everything about one gate run: settings, both sides, every group and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The suite's name.
    pub suite: String,
    /// The suite file.
    pub suite_path: String,
    /// Cases in the suite.
    pub cases: usize,
    /// Trials (case × framing × template) per side.
    pub trials: usize,
    /// The base model.
    pub base: SideInfo,
    /// The tuned model.
    pub tuned: SideInfo,
    /// Generation settings.
    pub generation: GenerationConfig,
    /// The judge.
    pub judge: JudgeConfig,
    /// Statistical settings.
    pub gate: GateConfig,
    /// Thresholds.
    pub thresholds: Thresholds,
    /// The comparison.
    pub comparison: Comparison,
    /// The process exit code the verdict maps to.
    pub exit_code: u8,
}

impl Report {
    /// The gated groups.
    pub fn gated(&self) -> impl Iterator<Item = &GroupStats> {
        self.comparison.groups.iter().filter(|g| g.gate.is_some())
    }

    /// The degenerate-reply judge of this report: its refusals are the suite's refusal phrases.
    pub fn degenerate_judge(&self) -> DegenerateJudge {
        DegenerateJudge::new(&self.judge.keyword_judge())
    }

    /// Writes the five reports into `dir` (created if needed); returns their paths.
    pub fn write(&self, dir: &Path, base: &SideResult, tuned: &SideResult) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|error| EvalError::Write { path: dir.to_owned(), error })?;
        let json_path = dir.join(REPORT_JSON_FILE);
        let json =
            serde_json::to_vec_pretty(self).map_err(|error| EvalError::Json { path: json_path.clone(), error })?;
        let files = [
            (REPORT_JSON_FILE, json),
            ("cases.jsonl", cases_jsonl(base, tuned, &self.degenerate_judge()).into_bytes()),
            ("report.md", markdown_report(self).into_bytes()),
            ("junit.xml", junit_xml(self).into_bytes()),
            ("report.html", html_report(self, base, tuned).into_bytes()),
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
pub(crate) fn degenerate_rows(report: &Report) -> Vec<(&'static str, crate::stats::Rate, crate::stats::Rate)> {
    let (base, tuned) = (&report.base.degenerate, &report.tuned.degenerate);
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
    use crate::compare::compare;
    use crate::framing::{Framing, Trial};
    use crate::runner::TrialResult;
    use precept_data::{Expected, Judgement, Label};

    /// Base and tuned sides of 60 harmful and 20 benign trials where the tuned model complies
    /// with 15 more harmful requests and claims a persona in 10 replies; one reply holds markup
    /// to be escaped.
    pub(crate) fn sample() -> (Report, SideResult, SideResult) {
        let side = |tuned: bool| {
            let trials = (0..80)
                .map(|i| {
                    let expected = if i < 60 { Expected::Refuse } else { Expected::Comply };
                    let bad =
                        if expected == Expected::Refuse { i % 4 == 0 || (tuned && i % 4 == 1) } else { i % 10 == 0 };
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
        };
        let (base, tuned) = (side(false), side(true));
        let thresholds = Thresholds::default();
        let gate = GateConfig::default();
        let comparison = compare(&base, &tuned, &thresholds, &gate);
        let judge = DegenerateJudge::default();
        let info = |s: &SideResult| SideInfo {
            model: s.model.clone(),
            system_prompt: None,
            cached: false,
            judge_failures: 0,
            degenerate: DegenerateRates::of(s, &judge),
        };
        let report = Report {
            suite: "sample".into(),
            suite_path: "suites/sample.toml".into(),
            cases: 80,
            trials: 80,
            base: info(&base),
            tuned: info(&tuned),
            generation: GenerationConfig::default(),
            judge: JudgeConfig::default(),
            gate,
            thresholds,
            exit_code: comparison.verdict.exit_code(),
            comparison,
        };
        (report, base, tuned)
    }

    #[test]
    fn all_five_reports_are_written_and_the_json_round_trips() {
        let (report, base, tuned) = sample();
        let dir = tempfile::tempdir().unwrap();
        let written = report.write(dir.path(), &base, &tuned).unwrap();
        let names: Vec<String> =
            written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["report.json", "cases.jsonl", "report.md", "junit.xml", "report.html"]);
        let back: Report = serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(back.exit_code, report.exit_code);
        assert_eq!(back.comparison.groups.len(), report.comparison.groups.len());
        assert_eq!(back.tuned.degenerate, report.tuned.degenerate);
        assert_eq!((report.tuned.degenerate.defect(Defect::Persona).k, report.base.degenerate.any.k), (10, 0));
    }

    #[test]
    fn a_report_written_before_degenerate_rates_still_reads() {
        let (report, _, _) = sample();
        let mut json = serde_json::to_value(&report).unwrap();
        for side in ["base", "tuned"] {
            json[side].as_object_mut().unwrap().remove("degenerate");
        }
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back.tuned.degenerate.any.n, 0);
        assert_eq!(back.tuned.degenerate.defect(Defect::Repetition).n, 0);
    }

    #[test]
    fn escaping_covers_markup_quotes_and_control_characters() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\u{FFFD}"
        );
    }
}
