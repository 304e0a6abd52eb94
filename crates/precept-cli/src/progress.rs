//! Progress of long work: an indicatif bar with rate and ETA on a terminal, plain log lines
//! otherwise (CI, pipes).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` units named `unit`, or a hidden one when stderr is not a terminal or the
/// run is quiet.
pub fn progress_bar(len: u64, unit: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template =
        format!("{{bar:30}} {{pos}}/{{len}} {unit} {{per_sec}} [{{elapsed_precise}} < {{eta_precise}}] {{msg}}");
    let style = ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style)
}
