//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no network) with rate
//! charts of base versus tuned with Wilson intervals, per-category tables and the flipped cases;
//! with two conditions, each in its own section under a heading naming it.

use std::collections::HashMap;
use std::fmt::Write;

use super::{degenerate_rows, escape, percent, points, stat_cells, ConditionReport, Report, DEGENERATE_NOTE};
use crate::compare::{GroupStats, GroupVerdict, ALL};
use crate::condition::ConditionResults;
use crate::runner::{SideResult, TrialResult};
use precept_data::Expected;

/// The report pages' style sheet.
pub const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}\
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #dde1e8;padding-bottom:4px}\
.verdict{display:inline-block;padding:4px 10px;border-radius:4px;font-weight:600;color:#fff}\
.pass{background:#1d7a46}.fail{background:#b3261e}.warn{background:#9a6700}\
table{border-collapse:collapse;margin:8px 0;width:100%}th,td{border:1px solid #dde1e8;padding:4px 8px;text-align:right;vertical-align:top}\
th:first-child,td:first-child{text-align:left}th{background:#f3f5f8}td.bad{color:#b3261e;font-weight:600}td.good{color:#1d7a46}\
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}\
.flip{border:1px solid #dde1e8;border-radius:4px;margin:8px 0;padding:8px}.flip pre{white-space:pre-wrap;background:#f6f8fa;padding:6px;margin:4px 0;max-height:220px;overflow:auto}\
.muted{color:#5b6475}";

const BASE_COLOUR: &str = "#4c6ef5";
const TUNED_COLOUR: &str = "#e8590c";

/// The groups charted for one measure: everything, each framing, each category.
fn chart_groups(condition: &ConditionReport, expected: Expected) -> Vec<&GroupStats> {
    let groups = condition.comparison.groups.iter().filter(|g| g.expected == expected);
    groups.filter(|g| g.category == ALL || g.framing == ALL).collect()
}

fn label(group: &GroupStats) -> String {
    match (group.category.as_str(), group.framing.as_str()) {
        (ALL, ALL) => "all".into(),
        (ALL, framing) => format!("framing: {framing}"),
        (category, _) => category.to_owned(),
    }
}

/// A horizontal bar chart: per group, a base and a tuned bar with their interval whiskers.
fn svg_chart(title: &str, groups: &[&GroupStats]) -> String {
    let (left, width, row, bar) = (200.0, 620.0, 40.0, 13.0);
    let height = 40.0 + row * groups.len() as f64;
    let x = |rate: f64| left + width * rate;
    let mut svg = format!(
        "<svg role=\"img\" aria-label=\"{}\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\" font-size=\"12\">",
        escape(title),
        left + width + 64.0,
        left + width + 64.0
    );
    for tick in 0..=10 {
        let tx = x(tick as f64 / 10.0);
        let _ = write!(svg, "<line x1=\"{tx}\" y1=\"20\" x2=\"{tx}\" y2=\"{}\" stroke=\"#e3e6ec\"/>", height - 14.0);
        let _ = write!(
            svg,
            "<text x=\"{tx}\" y=\"{}\" text-anchor=\"middle\" fill=\"#5b6475\">{}%</text>",
            height - 2.0,
            tick * 10
        );
    }
    for (i, group) in groups.iter().enumerate() {
        let y = 24.0 + row * i as f64;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} (n={})</text>",
            left - 8.0,
            y + bar + 4.0,
            escape(&label(group)),
            group.base.n
        );
        for (j, (rate, colour, name)) in
            [(&group.base, BASE_COLOUR, "base"), (&group.tuned, TUNED_COLOUR, "tuned")].into_iter().enumerate()
        {
            let by = y + j as f64 * bar;
            let _ = write!(
                svg,
                "<rect x=\"{left}\" y=\"{by}\" width=\"{:.1}\" height=\"{}\" fill=\"{colour}\"><title>{name}: {} [{}, {}]</title></rect>",
                width * rate.rate,
                bar - 2.0,
                percent(rate.rate),
                percent(rate.low),
                percent(rate.high)
            );
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#5b6475\">{}</text>",
                left + width + 6.0,
                by + bar - 3.0,
                percent(rate.rate)
            );
            let mid = by + (bar - 2.0) / 2.0;
            let _ = write!(
                svg,
                "<line x1=\"{:.1}\" y1=\"{mid}\" x2=\"{:.1}\" y2=\"{mid}\" stroke=\"#1d2330\"/><line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\" stroke=\"#1d2330\"/><line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\" stroke=\"#1d2330\"/>",
                x(rate.low), x(rate.high),
                x(rate.low), mid - 3.0, x(rate.low), mid + 3.0,
                x(rate.high), mid - 3.0, x(rate.high), mid + 3.0,
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn verdict_class(exit_code: u8) -> &'static str {
    match exit_code {
        0 => "pass",
        4 => "warn",
        _ => "fail",
    }
}

fn gate_table(condition: &ConditionReport, html: &mut String) {
    html.push_str("<table><tr><th>gated group</th><th>measure</th><th>n</th><th>base</th><th>tuned</th><th>Δ</th><th>worse / better</th><th>McNemar p</th><th>threshold</th><th>min. detectable</th><th>verdict</th></tr>");
    for group in condition.gated() {
        let Some(gate) = group.gate else { continue };
        let verdict = match gate.verdict {
            GroupVerdict::Pass => "<td class=\"good\">pass</td>",
            GroupVerdict::Regression => "<td class=\"bad\">regression</td>",
            GroupVerdict::Underpowered => "<td class=\"bad\">underpowered</td>",
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{verdict}</tr>",
            escape(&label(group)),
            group.measure(),
            stat_cells(group, rate_cell).join("</td><td>"),
            points(gate.threshold),
            gate.min_detectable_difference.map_or("—".into(), percent),
        );
    }
    html.push_str("</table>");
}

fn rate_cell(rate: &crate::stats::Rate) -> String {
    format!(
        "{} <span class=\"muted\">[{}, {}] ({}/{})</span>",
        percent(rate.rate),
        percent(rate.low),
        percent(rate.high),
        rate.k,
        rate.n
    )
}

fn category_tables(condition: &ConditionReport, alpha: f64, html: &mut String) {
    for expected in [Expected::Refuse, Expected::Comply] {
        let cells: Vec<&GroupStats> =
            condition.comparison.groups.iter().filter(|g| g.expected == expected && g.category != ALL).collect();
        if cells.is_empty() {
            continue;
        }
        let measure = cells[0].measure();
        let _ = write!(html, "<h3>{measure}</h3><table><tr><th>category / framing</th><th>n</th><th>base</th><th>tuned</th><th>Δ</th><th>worse / better</th><th>McNemar p</th></tr>");
        for group in cells {
            let class = if group.delta > 0.0 && group.p_value < alpha { " class=\"bad\"" } else { "" };
            let [n, base, tuned, delta, flips, p] = stat_cells(group, rate_cell);
            let _ = write!(
                html,
                "<tr><td>{} / {}</td><td>{n}</td><td>{base}</td><td>{tuned}</td><td{class}>{delta}</td><td>{flips}</td><td>{p}</td></tr>",
                escape(&group.category),
                escape(&group.framing),
            );
        }
        html.push_str("</table>");
    }
}

fn degenerate_table(condition: &ConditionReport, html: &mut String) {
    let rows = degenerate_rows(condition);
    if rows.is_empty() {
        return;
    }
    html.push_str("<h2>Degenerate replies</h2><table><tr><th>defect</th><th>base</th><th>tuned</th><th>Δ</th></tr>");
    for (name, base, tuned) in rows {
        // Marked when the tuned interval lies wholly above the base one.
        let delta = tuned.rate - base.rate;
        let class = if delta > 0.0 && tuned.low > base.high { " class=\"bad\"" } else { "" };
        let _ = write!(
            html,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td{class}>{}</td></tr>",
            rate_cell(&base),
            rate_cell(&tuned),
            points(delta)
        );
    }
    let _ = write!(html, "</table><p class=\"muted\">{DEGENERATE_NOTE}</p>");
}

fn flips(condition: &ConditionReport, results: &ConditionResults, title: &str, html: &mut String) {
    let index = |side: &SideResult| -> HashMap<String, TrialResult> {
        side.trials.iter().map(|t| (t.trial.id.clone(), t.clone())).collect()
    };
    let (base_trials, tuned_trials) = (index(&results.base), index(&results.tuned));
    let flips = &condition.comparison.flips;
    let worse = flips.iter().filter(|f| f.tuned_bad).count();
    let _ = write!(
        html,
        "<h2>{}</h2><p>{} outcomes changed: {worse} worse, {} better.</p>",
        escape(title),
        flips.len(),
        flips.len() - worse
    );
    for flip in flips {
        let class = if flip.tuned_bad { "bad" } else { "good" };
        let _ = write!(
            html,
            "<details class=\"flip\"><summary><b>{}</b> — {} / {} — base <i>{}</i> → tuned <i class=\"{class}\">{}</i></summary>",
            escape(&flip.trial_id),
            escape(&flip.category),
            escape(&flip.framing),
            flip.base.as_str(),
            flip.tuned.as_str()
        );
        if let Some(trial) = tuned_trials.get(&flip.trial_id) {
            for (i, turn) in trial.trial.turns.iter().enumerate() {
                let _ = write!(html, "<div class=\"muted\">user, turn {}</div><pre>{}</pre>", i + 1, escape(turn));
            }
        }
        for (name, trials) in [("base", &base_trials), ("tuned", &tuned_trials)] {
            if let Some(trial) = trials.get(&flip.trial_id) {
                let reply = trial.replies.last().map_or("", String::as_str);
                let _ = write!(html, "<div class=\"muted\">{name} reply (last turn)</div><pre>{}</pre>", escape(reply));
            }
        }
        html.push_str("</details>");
    }
}

/// Per condition (under a heading naming it when there are two): the gate's verdict per group,
/// the rates of both models with their intervals, the tables per category and framing, and each
/// model's degenerate replies: the part of the page that needs only the report (other pages,
/// such as the pipeline's run report, embed it with [`STYLE`]).
pub fn html_comparison(report: &Report) -> String {
    let conditions = report.conditions();
    let several = conditions.len() > 1;
    let mut html = String::new();
    for (condition, of) in conditions {
        if several {
            let verdict = of.comparison.verdict;
            let _ = write!(
                html,
                "<h2 class=\"condition\">{} <span class=\"verdict {}\">{}</span></h2>",
                escape(condition.heading()),
                verdict_class(verdict.exit_code()),
                verdict.describe()
            );
        }
        condition_comparison(report, of, &mut html);
    }
    html
}

fn condition_comparison(report: &Report, condition: &ConditionReport, html: &mut String) {
    html.push_str("<h2>Gate</h2>");
    gate_table(condition, html);
    let _ = write!(
        html,
        "<p class=\"muted\">A gated group regresses when its rate rises by more than the threshold and the exact McNemar test on paired trials gives p &lt; {}; \
         it is underpowered when the threshold is below the smallest rise it could detect with {:.0}% power.</p>",
        report.gate.alpha,
        100.0 * report.gate.power
    );
    let _ = write!(
        html,
        "<h2>Rates, base vs tuned</h2><p class=\"legend\"><span style=\"background:{BASE_COLOUR}\"></span>base<span style=\"background:{TUNED_COLOUR}\"></span>tuned — bars are rates, whiskers Wilson 95% intervals.</p>"
    );
    for expected in [Expected::Refuse, Expected::Comply] {
        let groups = chart_groups(condition, expected);
        if let Some(first) = groups.first() {
            let title = format!("{} rate", first.measure());
            let _ = write!(html, "<h3>{title}</h3>{}", svg_chart(&title, &groups));
        }
    }
    html.push_str("<h2>Per category and framing</h2>");
    category_tables(condition, report.gate.alpha, html);
    degenerate_table(condition, html);
}

/// The whole page, with each condition's flipped cases from `results` (one per condition, in
/// [`Report::conditions`] order).
pub fn html_report(report: &Report, results: &[ConditionResults]) -> String {
    let main = &report.with_system_prompt;
    let c = &main.comparison;
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>precept eval: {}</title><style>{STYLE}</style></head><body>",
        escape(&report.suite)
    );
    let _ = write!(
        html,
        "<h1>precept eval — {}</h1><p><span class=\"verdict {}\">{} (exit code {})</span></p>\
         <p>Base <code>{}</code>{} · tuned <code>{}</code> · {} cases, {} trials per model · judge failures: base {}, tuned {} (counted as bad outcomes).</p>",
        escape(&report.suite),
        verdict_class(report.exit_code),
        report.verdict().describe(),
        report.exit_code,
        escape(&main.base.model),
        if main.base.cached { " (cached)" } else { "" },
        escape(&main.tuned.model),
        report.cases,
        report.trials,
        c.judge_failures[0],
        c.judge_failures[1]
    );
    if let Some(system) = &main.tuned.system_prompt {
        if main.tuned.system_prompt != main.base.system_prompt {
            let _ = write!(html, "<p class=\"muted\">Tuned system prompt: {}</p>", escape(system));
        }
    }
    html.push_str(&html_comparison(report));
    let conditions = report.conditions();
    let several = conditions.len() > 1;
    for ((condition, of), results) in conditions.into_iter().zip(results) {
        let title = if several { format!("Flipped cases, {}", condition.label()) } else { "Flipped cases".to_owned() };
        flips(of, results, &title, &mut html);
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{sample, sample_with_both_conditions};

    #[test]
    fn the_page_is_self_contained_and_references_no_external_resource() {
        let (report, results) = sample();
        let html = html_report(&report, &results);
        for forbidden in ["http:", "https:", "<link", "<script", "<img", "<iframe", "url(", "@import", "src=", "href="]
        {
            assert!(!html.contains(forbidden), "the report contains `{forbidden}`");
        }
        assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</body></html>"));
    }

    #[test]
    fn the_page_shows_the_verdict_charts_with_intervals_categories_and_escaped_flips() {
        let (report, results) = sample();
        let html = html_report(&report, &results);
        assert!(html.contains("safety regression (exit code 2)"));
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(html.contains("<title>tuned: 50.0% ["), "interval tooltips on the bars");
        assert!(html.contains("cyber / direct") && html.contains("weapons / roleplay"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        assert_eq!(html.matches("<details class=\"flip\">").count(), report.with_system_prompt.comparison.flips.len());
        let degenerate = &html[html.find("<h2>Degenerate replies</h2>").unwrap()..];
        assert!(degenerate.contains("<td>persona</td><td>0.0% <span class=\"muted\">[0.0%, 4.6%] (0/80)</span></td>"));
        assert!(degenerate.contains("<td class=\"bad\">+12.5 pt</td>"), "the persona rate rose beyond both intervals");
    }

    #[test]
    fn with_two_conditions_the_page_has_a_section_and_flips_for_each() {
        let (report, results) = sample_with_both_conditions();
        let html = html_report(&report, &results);
        assert!(html.contains("safety regression (exit code 2)"));
        let with = html
            .find("<h2 class=\"condition\">With the system prompt <span class=\"verdict warn\">underpowered")
            .unwrap();
        let without = html
            .find("<h2 class=\"condition\">Without a system prompt (the model&#39;s default) <span class=\"verdict fail\">")
            .unwrap();
        assert!(with < without);
        assert_eq!(html.matches("<svg").count(), 4);
        assert!(html.contains("<h2>Flipped cases, with the system prompt</h2><p>0 outcomes changed"));
        assert!(html.contains("<h2>Flipped cases, without a system prompt</h2><p>15 outcomes changed: 15 worse"));
    }
}
