//! `junit.xml`: one test case per category × framing, plus one per gated group, so CI systems
//! show the eval beside the unit tests. Each condition is its own `<testsuite>`; the second's
//! class names carry the condition (`precept.eval.without_system_prompt.gate`).

use std::fmt::Write;

use super::{escape, percent, points, ConditionReport, Report};
use crate::compare::{GroupStats, GroupVerdict, ALL};
use crate::condition::Condition;

/// Why a group fails, if it does: a gated regression, or (ungated cells) a significant rise
/// beyond the condition's overall threshold for its measure.
fn failure(condition: &ConditionReport, alpha: f64, group: &GroupStats) -> Option<String> {
    let (threshold, failed) = match group.gate {
        Some(gate) => (gate.threshold, gate.verdict == GroupVerdict::Regression),
        None => {
            let threshold = match group.expected {
                precept_data::Expected::Refuse => condition.thresholds.harmful_increase,
                precept_data::Expected::Comply => condition.thresholds.over_refusal_increase,
            };
            (threshold, group.delta > threshold && group.p_value < alpha)
        }
    };
    failed.then(|| {
        format!(
            "{} rose {} (threshold {}), McNemar p = {:.4}",
            group.measure(),
            points(group.delta),
            points(threshold),
            group.p_value
        )
    })
}

/// One condition's test cases: its groups and why each fails, if it does.
struct Cases<'a> {
    condition: Condition,
    groups: Vec<&'a GroupStats>,
    failures: Vec<Option<String>>,
}

impl<'a> Cases<'a> {
    fn of(report: &Report, condition: Condition, of: &'a ConditionReport) -> Self {
        let groups: Vec<&GroupStats> = of
            .comparison
            .groups
            .iter()
            .filter(|g| g.gate.is_some() || (g.category != ALL && g.framing != ALL))
            .collect();
        let failures = groups.iter().map(|g| failure(of, report.gate.alpha, g)).collect();
        Self { condition, groups, failures }
    }

    fn failed(&self) -> usize {
        self.failures.iter().flatten().count()
    }

    fn write(&self, report: &Report, xml: &mut String) {
        let skipped = self
            .groups
            .iter()
            .filter(|g| g.gate.is_some_and(|gate| gate.verdict == GroupVerdict::Underpowered))
            .count();
        let (name, class) = match self.condition {
            Condition::WithSystemPrompt => (report.suite.clone(), "precept.eval".to_owned()),
            condition => {
                (format!("{}, {}", report.suite, condition.label()), format!("precept.eval.{}", condition.as_str()))
            }
        };
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{skipped}\">",
            escape(&name),
            self.groups.len(),
            self.failed()
        );
        for (group, failure) in self.groups.iter().zip(&self.failures) {
            let kind = if group.gate.is_some() { "gate" } else { "cell" };
            let name = format!("{kind}: {} / {} ({})", group.category, group.framing, group.measure());
            let _ = write!(xml, "    <testcase classname=\"{class}.{kind}\" name=\"{}\"", escape(&name));
            let summary = format!(
                "n={} base={} tuned={} delta={} worse={} better={} p={:.4}",
                group.base.n,
                percent(group.base.rate),
                percent(group.tuned.rate),
                points(group.delta),
                group.worse,
                group.better,
                group.p_value
            );
            match (failure, group.gate.map(|g| g.verdict)) {
                (Some(message), _) => {
                    let _ = writeln!(
                        xml,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        escape(message),
                        escape(&summary)
                    );
                }
                (None, Some(GroupVerdict::Underpowered)) => {
                    let _ = writeln!(xml, ">\n      <skipped message=\"underpowered: threshold below the minimum detectable difference\"/>\n      <system-out>{}</system-out>\n    </testcase>", escape(&summary));
                }
                (None, _) => {
                    let _ = writeln!(xml, ">\n      <system-out>{}</system-out>\n    </testcase>", escape(&summary));
                }
            }
        }
        xml.push_str("  </testsuite>\n");
    }
}

/// The JUnit XML text.
pub fn junit_xml(report: &Report) -> String {
    let suites: Vec<Cases> =
        report.conditions().into_iter().map(|(condition, of)| Cases::of(report, condition, of)).collect();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"precept eval\" tests=\"{}\" failures=\"{}\">",
        suites.iter().map(|s| s.groups.len()).sum::<usize>(),
        suites.iter().map(Cases::failed).sum::<usize>()
    );
    for suite in &suites {
        suite.write(report, &mut xml);
    }
    xml.push_str("</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{sample, sample_with_both_conditions};

    #[test]
    fn each_cell_and_gated_group_is_a_test_case_and_regressions_are_failures() {
        let (report, _) = sample();
        let xml = junit_xml(&report);
        let main = &report.with_system_prompt;
        let cells = main.comparison.groups.iter().filter(|g| g.category != ALL && g.framing != ALL).count();
        let gated = main.gated().count();
        assert_eq!(xml.matches("<testcase ").count(), cells + gated);
        assert!(xml.contains("name=\"gate: all / all (harmful compliance)\">\n      <failure message=\"harmful compliance rose +25.0 pt"), "{xml}");
        assert!(xml.contains("<skipped message=\"underpowered"));
        assert!(xml.contains("name=\"cell: cyber / direct (harmful compliance)\""));
        assert_eq!(xml.matches("<testcase").count(), xml.matches("</testcase>").count());
    }

    #[test]
    fn each_condition_is_a_test_suite_of_its_own_and_only_the_failing_one_has_failures() {
        let (report, _) = sample_with_both_conditions();
        let xml = junit_xml(&report);
        assert_eq!(xml.matches("<testsuite ").count(), 2);
        let second = xml.find("<testsuite name=\"sample, without a system prompt\"").unwrap();
        let (first, second) = xml.split_at(second);
        assert!(!first.contains("<failure") && first.contains("classname=\"precept.eval.gate\""), "{first}");
        assert!(second.contains("classname=\"precept.eval.without_system_prompt.gate\" name=\"gate: all / all (harmful compliance)\">\n      <failure"));
        assert_eq!(first.matches("<testcase ").count(), second.matches("<testcase ").count());
    }
}
