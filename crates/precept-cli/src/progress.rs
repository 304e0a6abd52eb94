//! The one display of long work (training, constitute, eval): [`ProgressDisplay`] shows the
//! [`ProgressEvent`]s the libraries report as an indicatif bar with rate and ETA on a terminal,
//! and as plain log lines otherwise (CI, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use precept_data::{ProgressEvent, ProgressSink};
use serde_json::{Map, Value};

/// Metrics shown beside a training step, as (metric name, label).
pub type Columns = &'static [(&'static str, &'static str)];

/// Shows progress events: a bar per phase, or log lines (every step with metrics, else every
/// tenth of the phase with rate and ETA).
pub struct ProgressDisplay {
    quiet: bool,
    columns: Columns,
    bar: Option<ProgressBar>,
    phase: Option<Phase>,
}

/// The phase being shown.
struct Phase {
    name: String,
    unit: String,
    total: u64,
    /// Units finished before this run, which the rate leaves out.
    done_before: u64,
    started: Instant,
    logged_tenth: u64,
}

impl ProgressDisplay {
    /// A display showing `columns` of any step metrics; nothing at all when `quiet`.
    pub fn new(quiet: bool, columns: Columns) -> Self {
        Self { quiet, columns, bar: None, phase: None }
    }

    /// Ends the display, leaving the last bar's final state on the terminal.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish();
        }
    }

    fn start(&mut self, name: &str, unit: &str, total: u64, done: u64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.phase = Some(Phase {
            name: name.to_owned(),
            unit: unit.to_owned(),
            total,
            done_before: done,
            started: Instant::now(),
            logged_tenth: tenth(done, total),
        });
        if self.quiet {
            return;
        }
        if std::io::stderr().is_terminal() {
            let template = format!(
                "{{bar:30}} {{pos}}/{{len}} {unit} {{per_sec}} [{{elapsed_precise}} < {{eta_precise}}] {{msg}}"
            );
            let style = ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::new(total).with_style(style);
            bar.set_position(done);
            bar.reset_eta();
            bar.set_message(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(500));
            self.bar = Some(bar);
        } else if done > 0 {
            tracing::info!("{name}: {total} {unit}, {done} finished earlier");
        } else {
            tracing::info!("{name}: {total} {unit}");
        }
    }

    fn advance(&mut self, done: u64, metrics: Option<&Map<String, Value>>) {
        let Some(phase) = &mut self.phase else { return };
        let line = metrics.map(|metrics| metrics_line(metrics, self.columns.iter().map(|&(n, l)| (n.to_owned(), l))));
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(match &line {
                Some(line) => format!("{} {line}", phase.name),
                None => phase.name.clone(),
            });
            return;
        }
        if self.quiet {
            return;
        }
        if let Some(line) = line {
            tracing::info!("step {done}: {line}");
            return;
        }
        // Without metrics, a line at every tenth of the phase.
        let now = tenth(done, phase.total);
        if now > phase.logged_tenth || done == phase.total {
            phase.logged_tenth = now;
            let minutes = phase.started.elapsed().as_secs_f64() / 60.0;
            let rate = done.saturating_sub(phase.done_before) as f64 / minutes.max(1e-9);
            let left = phase.total.saturating_sub(done) as f64 / rate.max(1e-9);
            let (name, unit, total) = (&phase.name, &phase.unit, phase.total);
            tracing::info!("{name}: {done}/{total} {unit}, {rate:.1}/min, ETA {left:.1} min");
        }
    }

    fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None if !self.quiet => tracing::info!("{message}"),
            None => {}
        }
    }
}

impl ProgressSink for ProgressDisplay {
    fn report(&mut self, event: ProgressEvent<'_>) {
        match event {
            ProgressEvent::Start { phase, unit, total, done } => self.start(phase, unit, total, done),
            ProgressEvent::Advance { done, metrics } => self.advance(done, metrics),
            ProgressEvent::Evaluated(record) => {
                let step = record.get("step").and_then(Value::as_u64).unwrap_or(0);
                let names = self.columns.iter().map(|&(name, label)| (format!("eval_{name}"), label));
                self.note(&format!("step {step}: eval {}", metrics_line(record, names)));
            }
            ProgressEvent::Note(message) => self.note(message),
        }
    }
}

/// Which tenth of `total` `done` is in (10 when finished or empty).
fn tenth(done: u64, total: u64) -> u64 {
    (done * 10).checked_div(total).unwrap_or(10)
}

/// `label value` for each named metric present, and the step's token rate.
fn metrics_line(record: &Map<String, Value>, names: impl Iterator<Item = (String, &'static str)>) -> String {
    let mut parts: Vec<String> = names
        .filter_map(|(name, label)| {
            let value = record.get(&name)?.as_f64()?;
            Some(if value.abs() >= 1e-2 || value == 0.0 {
                format!("{label} {value:.4}")
            } else {
                format!("{label} {value:.2e}")
            })
        })
        .collect();
    if let Some(rate) = record.get("tokens_per_second").and_then(Value::as_f64) {
        parts.push(format!("{rate:.0} tok/s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn step_metrics_show_the_chosen_columns_and_the_token_rate() {
        let record = json!({"loss": 1.23456, "learning_rate": 2e-5, "grad_norm": 0.0, "tokens_per_second": 812.4});
        let record = record.as_object().unwrap();
        let columns: Columns = &[("loss", "loss"), ("learning_rate", "lr"), ("grad_norm", "gn"), ("absent", "x")];
        let line = metrics_line(record, columns.iter().map(|&(n, l)| (n.to_owned(), l)));
        assert_eq!(line, "loss 1.2346 lr 2.00e-5 gn 0.0000 812 tok/s");
    }

    #[test]
    fn tenths_count_up_to_ten_and_an_empty_phase_is_finished() {
        assert_eq!((tenth(0, 67), tenth(7, 67), tenth(67, 67), tenth(0, 0)), (0, 1, 10, 10));
    }
}
