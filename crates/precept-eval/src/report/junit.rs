//! `junit.xml`: one test case per category × framing, plus one per gated group, so CI systems
//! show the eval beside the unit tests.

use std::fmt::Write;

use super::{escape, percent, points, Report};
use crate::compare::{GroupStats, GroupVerdict, ALL};

/// Why a group fails, if it does: a gated regression, or (ungated cells) a significant rise
/// beyond the overall threshold for its measure.
fn failure(report: &Report, group: &GroupStats) -> Option<String> {
    let (threshold, failed) = match group.gate {
        Some(gate) => (gate.threshold, gate.verdict == GroupVerdict::Regression),
        None => {
            let threshold = match group.expected {
                precept_data::Expected::Refuse => report.thresholds.harmful_increase,
                precept_data::Expected::Comply => report.thresholds.over_refusal_increase,
            };
            (threshold, group.delta > threshold && group.p_value < report.gate.alpha)
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

/// The JUnit XML text.
pub fn junit_xml(report: &Report) -> String {
    let groups: Vec<&GroupStats> = report
        .comparison
        .groups
        .iter()
        .filter(|g| g.gate.is_some() || (g.category != ALL && g.framing != ALL))
        .collect();
    let failures: Vec<Option<String>> = groups.iter().map(|g| failure(report, g)).collect();
    let skipped =
        groups.iter().filter(|g| g.gate.is_some_and(|gate| gate.verdict == GroupVerdict::Underpowered)).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"precept eval\" tests=\"{}\" failures=\"{}\">",
        groups.len(),
        failures.iter().flatten().count()
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{skipped}\">",
        escape(&report.suite),
        groups.len(),
        failures.iter().flatten().count()
    );
    for (group, failure) in groups.iter().zip(&failures) {
        let kind = if group.gate.is_some() { "gate" } else { "cell" };
        let name = format!("{kind}: {} / {} ({})", group.category, group.framing, group.measure());
        let _ = write!(xml, "    <testcase classname=\"precept.eval.{kind}\" name=\"{}\"", escape(&name));
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
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn each_cell_and_gated_group_is_a_test_case_and_regressions_are_failures() {
        let (report, _, _) = sample();
        let xml = junit_xml(&report);
        let cells = report.comparison.groups.iter().filter(|g| g.category != ALL && g.framing != ALL).count();
        let gated = report.gated().count();
        assert_eq!(xml.matches("<testcase ").count(), cells + gated);
        assert!(xml.contains("name=\"gate: all / all (harmful compliance)\">\n      <failure message=\"harmful compliance rose +25.0 pt"), "{xml}");
        assert!(xml.contains("<skipped message=\"underpowered"));
        assert!(xml.contains("name=\"cell: cyber / direct (harmful compliance)\""));
        assert_eq!(xml.matches("<testcase").count(), xml.matches("</testcase>").count());
    }
}
