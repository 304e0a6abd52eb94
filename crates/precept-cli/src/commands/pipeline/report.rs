//! The run report, `<out>/report.html`: one self-contained page (no external reference) with the
//! settings, what the constitution loop kept and filtered, three of its critique → revision rounds,
//! the SFT and DPO curves, and the gate's comparison of base and tuned.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use precept_constitution::{read_prompts, Manifest, ProgressLine, MANIFEST_FILE, PREFS_FILE, PROGRESS_FILE, SFT_FILE};
use precept_data::Role;
use precept_eval::{html_comparison, Report, REPORT_JSON_FILE, STYLE};
use serde_json::Value;

use super::config::{prompts_file, stage_dir};
use super::stage::Stage;

/// The report's file name in the run folder.
pub const REPORT_FILE: &str = "report.html";

/// Writes the report of the run in `out` from whatever its stages have written so far;
/// `settings` is the settings file's text.
pub fn write_run_report(out: &Path, settings: &str) -> Result<PathBuf> {
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>precept run: {0}</title><style>{STYLE}{CHART_STYLE}</style></head><body><h1>precept run — {0}</h1>",
        escape(&out.display().to_string())
    );
    let eval = read_json::<Report>(&stage_dir(out, Stage::Eval).join(REPORT_JSON_FILE));
    if let Some(report) = &eval {
        let _ = write!(
            html,
            "<p>Gate: <strong>{}</strong> (exit code {}).</p>",
            escape(report.verdict().describe()),
            report.exit_code
        );
    }
    data_section(out, &mut html);
    curves_section(out, &mut html);
    match &eval {
        Some(report) => html.push_str(&format!("<h2>Safety: base vs tuned</h2>{}", html_comparison(report))),
        None => html.push_str("<h2>Safety: base vs tuned</h2><p class=\"muted\">The gate has not run yet.</p>"),
    }
    let _ = writeln!(html, "<h2>Settings</h2><pre>{}</pre></body></html>", escape(settings));
    let path = out.join(REPORT_FILE);
    precept_data::write_atomic(&path, html.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

const CHART_STYLE: &str =
    "pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:6px;margin:4px 0}\
.curves{display:flex;flex-wrap:wrap;gap:16px}.curve{border:1px solid #dde1e8;border-radius:4px;padding:8px}\
.example{border:1px solid #dde1e8;border-radius:4px;margin:8px 0;padding:8px}";

/// The JSON file at `path`, or `None` when it is missing or unreadable.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Counts of the constitution loop and three of its prompts.
fn data_section(out: &Path, html: &mut String) {
    html.push_str("<h2>Data</h2>");
    let dir = stage_dir(out, Stage::Constitute);
    let Some(manifest) = read_json::<Manifest>(&dir.join(MANIFEST_FILE)) else {
        html.push_str("<p class=\"muted\">The constitution loop has not run yet.</p>");
        return;
    };
    let counts = &manifest.counts;
    let _ = write!(
        html,
        "<p>Constitution <code>{} {}</code>, {} prompts, {} finished: <strong>{}</strong> SFT records and <strong>{}</strong> preference pairs kept.</p>",
        escape(&manifest.constitution.name),
        escape(&manifest.constitution.version),
        manifest.prompts,
        counts.finished,
        counts.sft,
        counts.prefs
    );
    if !counts.filtered.is_empty() {
        html.push_str("<table><tr><th>filtered because</th><th>outputs</th></tr>");
        for (reason, count) in &counts.filtered {
            let _ = write!(html, "<tr><td>{}</td><td>{count}</td></tr>", escape(reason));
        }
        html.push_str("</table>");
    }
    examples_section(out, &dir, html);
}

/// Three prompts the loop critiqued and revised, from its progress journal: ones whose round
/// finished first, then ones whose revision was filtered, each with what became of it.
fn examples_section(out: &Path, dir: &Path, html: &mut String) {
    let text = std::fs::read_to_string(dir.join(PROGRESS_FILE)).unwrap_or_default();
    let mut lines: Vec<ProgressLine> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<ProgressLine>(line).ok())
        .filter(|line| !line.rounds.is_empty())
        .collect();
    let revision_failed = |line: &ProgressLine| line.filtered.iter().any(|r| r.starts_with("revision-"));
    lines.sort_by_key(revision_failed);
    if lines.is_empty() {
        html.push_str("<p class=\"muted\">No prompt reached a critique → revision round.</p>");
        return;
    }
    let prompts = read_prompts(&prompts_file(out)).unwrap_or_default();
    html.push_str("<h3>Critique → revision, three prompts</h3>");
    for line in lines.iter().take(3) {
        let prompt = prompts.iter().find(|p| p.id == line.prompt_id);
        let turns: Vec<&str> = prompt
            .map(|p| p.context().iter().filter(|m| m.role == Role::User).map(|m| m.content.as_str()).collect())
            .unwrap_or_default();
        let kept: Vec<&str> = [(line.sft, SFT_FILE), (line.prefs, PREFS_FILE)]
            .into_iter()
            .filter_map(|(kept, file)| kept.then_some(file))
            .collect();
        let mut fate = Vec::new();
        if !kept.is_empty() {
            fate.push(format!("records in {}", kept.join(" and ")));
        }
        if !line.filtered.is_empty() {
            fate.push(format!("filtered: {}", line.filtered.join(", ")));
        }
        let _ = write!(
            html,
            "<div class=\"example\"><div class=\"muted\">prompt <code>{}</code> — {}</div><pre>{}</pre>",
            escape(&line.prompt_id),
            escape(&fate.join("; ")),
            escape(&turns.join("\n\n"))
        );
        if let Some(answer) = &line.answer {
            let _ = write!(html, "<div class=\"muted\">answer</div><pre>{}</pre>", escape(answer));
        }
        for round in &line.rounds {
            let _ = write!(
                html,
                "<div class=\"muted\">critique [{}]</div><pre>{}</pre><div class=\"muted\">revision</div><pre>{}</pre>",
                escape(&round.principle),
                escape(&round.critique),
                escape(&round.revision)
            );
        }
        html.push_str("</div>");
    }
}

/// Training curves of SFT, DPO and GRPO (when it ran), from their metrics files, with the safety
/// gate's rates where it watched the training.
fn curves_section(out: &Path, html: &mut String) {
    html.push_str("<h2>Training</h2><div class=\"curves\">");
    let charts = [
        (Stage::Sft, "loss", "SFT loss"),
        (Stage::Sft, "eval_loss", "SFT eval loss"),
        (Stage::Dpo, "loss", "DPO loss"),
        (Stage::Dpo, "rewards/margins", "DPO rewards/margins"),
        (Stage::Dpo, "rewards/accuracies", "DPO rewards/accuracies"),
        (Stage::Sft, "safety/harmful", "SFT safety/harmful"),
        (Stage::Sft, "safety/over_refusal", "SFT safety/over_refusal"),
        (Stage::Dpo, "safety/harmful", "DPO safety/harmful"),
        (Stage::Dpo, "safety/over_refusal", "DPO safety/over_refusal"),
        (Stage::Grpo, "reward", "GRPO reward"),
        (Stage::Grpo, "safety/harmful", "GRPO safety/harmful"),
        (Stage::Grpo, "safety/over_refusal", "GRPO safety/over_refusal"),
    ];
    let mut drawn = 0;
    for (stage, metric, title) in charts {
        let text = std::fs::read_to_string(stage_dir(out, stage).join("metrics.jsonl")).unwrap_or_default();
        let points: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|line| {
                let record: Value = serde_json::from_str(line).ok()?;
                Some((record.get("step")?.as_f64()?, record.get(metric)?.as_f64()?))
            })
            .collect();
        if !points.is_empty() {
            html.push_str(&line_chart(title, &points));
            drawn += 1;
        }
    }
    html.push_str("</div>");
    if drawn == 0 {
        html.push_str("<p class=\"muted\">No training has run yet.</p>");
    }
}

/// An SVG line chart of `points` (step, value) with its range written on the axes.
fn line_chart(title: &str, points: &[(f64, f64)]) -> String {
    let (width, height, pad) = (320.0, 160.0, 36.0);
    let (x_min, x_max) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (y_min, y_max) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let span = |lo: f64, hi: f64| if hi > lo { hi - lo } else { 1.0 };
    let x = |v: f64| pad + (v - x_min) / span(x_min, x_max) * (width - 2.0 * pad);
    let y = |v: f64| height - pad + (y_min - v) / span(y_min, y_max) * (height - 2.0 * pad);
    let path: Vec<String> = points.iter().map(|&(s, v)| format!("{:.1},{:.1}", x(s), y(v))).collect();
    let dots: String = if points.len() == 1 {
        format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#e8590c\"/>", x(points[0].0), y(points[0].1))
    } else {
        String::new()
    };
    format!(
        "<div class=\"curve\"><svg role=\"img\" aria-label=\"{t}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\
         <title>{t}</title><text x=\"{pad}\" y=\"14\" font-size=\"12\" font-weight=\"600\">{t}</text>\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#98a1b3\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"#98a1b3\"/>\
         <text x=\"2\" y=\"{top}\" font-size=\"10\">{y_max:.3}</text><text x=\"2\" y=\"{b}\" font-size=\"10\">{y_min:.3}</text>\
         <text x=\"{pad}\" y=\"{xl}\" font-size=\"10\">step {x_min}</text><text x=\"{xr}\" y=\"{xl}\" font-size=\"10\">{x_max}</text>\
         <polyline fill=\"none\" stroke=\"#e8590c\" stroke-width=\"1.5\" points=\"{p}\"/>{dots}</svg></div>",
        t = escape(title),
        b = height - pad,
        r = width - pad,
        top = pad + 4.0,
        xl = height - pad + 14.0,
        xr = width - pad - 16.0,
        p = path.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_of_a_run_that_has_not_started_says_so_and_references_nothing_outside() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_run_report(dir.path(), "model = \"<m>\"").unwrap();
        let html = std::fs::read_to_string(path).unwrap();
        assert!(html.contains("has not run yet") && html.contains("model = &quot;&lt;m&gt;&quot;"), "{html}");
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="), "{html}");
    }

    #[test]
    fn examples_show_finished_rounds_first_then_filtered_revisions_with_their_fate() {
        let out = tempfile::tempdir().unwrap();
        let dir = stage_dir(out.path(), Stage::Constitute);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            prompts_file(out.path()),
            "{\"id\":\"a\",\"prompt\":\"How do I pick a lock?\"}\n{\"id\":\"b\",\"prompt\":\"Name a <colour>.\"}\n\
             {\"id\":\"c\",\"prompt\":\"Hi\"}\n",
        )
        .unwrap();
        let round =
            |revision: &str| format!("{{\"principle\":\"p\",\"critique\":\"crit\",\"revision\":\"{revision}\"}}");
        std::fs::write(
            dir.join(PROGRESS_FILE),
            format!(
                "{{\"prompt_id\":\"a\",\"sft\":false,\"prefs\":false,\"filtered\":[\"revision-copied\"],\"answer\":\"ans a\",\"rounds\":[{}]}}\n\
                 {{\"prompt_id\":\"c\",\"sft\":false,\"prefs\":false,\"filtered\":[\"answer-empty\"]}}\n\
                 {{\"prompt_id\":\"b\",\"sft\":true,\"prefs\":true,\"answer\":\"ans b\",\"rounds\":[{}]}}\n",
                round("copied"),
                round("fixed")
            ),
        )
        .unwrap();
        let mut html = String::new();
        examples_section(out.path(), &dir, &mut html);
        let (b, a) = (html.find("<code>b</code>").unwrap(), html.find("<code>a</code>").unwrap());
        assert!(b < a, "the finished round comes first: {html}");
        assert!(html.contains("records in sft.jsonl and prefs.jsonl") && html.contains("filtered: revision-copied"));
        assert!(html.contains("Name a &lt;colour&gt;.") && html.contains("ans a") && html.contains(">copied<"));
        assert!(!html.contains("<code>c</code>"), "a prompt without a round is not an example: {html}");
    }

    #[test]
    fn curves_are_drawn_from_the_metrics_files() {
        let dir = tempfile::tempdir().unwrap();
        let dpo = stage_dir(dir.path(), Stage::Dpo);
        std::fs::create_dir_all(&dpo).unwrap();
        std::fs::write(
            dpo.join("metrics.jsonl"),
            "{\"step\":1,\"loss\":0.69,\"rewards/margins\":0.0}\n{\"step\":2,\"loss\":0.6,\"rewards/margins\":0.3}\n\
             {\"step\":2,\"safety/harmful\":0.1,\"safety/over_refusal\":0.05}\n",
        )
        .unwrap();
        let html = std::fs::read_to_string(write_run_report(dir.path(), "").unwrap()).unwrap();
        assert!(html.contains("DPO rewards/margins") && html.contains("<polyline"), "{html}");
        assert!(html.contains("DPO safety/harmful") && html.contains("DPO safety/over_refusal"), "{html}");
        assert!(!html.contains("SFT safety/harmful"), "no gate watched an SFT run: {html}");
        assert!(!html.contains("No training has run yet"));
    }
}
