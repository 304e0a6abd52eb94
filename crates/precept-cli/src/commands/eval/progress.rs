//! Progress of an eval run: an indicatif bar on a terminal, plain log lines otherwise.

use std::cell::RefCell;

use indicatif::ProgressBar;
use precept_eval::Progress;

use crate::progress::progress_bar;

/// Shows each stage (generating, judging) of one side.
pub struct EvalProgress {
    side: &'static str,
    bar: RefCell<Option<ProgressBar>>,
    logged: RefCell<(usize, usize, usize)>,
    quiet: bool,
}

impl EvalProgress {
    /// Progress of the `side` (`base` or `tuned`) run.
    pub fn new(side: &'static str, quiet: bool) -> Self {
        Self { side, bar: RefCell::new(None), logged: RefCell::new((0, 0, 0)), quiet }
    }
}

impl Progress for EvalProgress {
    fn start(&self, stage: &str, total: usize) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
        *self.logged.borrow_mut() = (0, total, 0);
        if self.quiet {
            return;
        }
        let bar = progress_bar(total as u64, "replies", self.quiet);
        if !bar.is_hidden() {
            bar.set_message(format!("{} {stage}", self.side));
            *self.bar.borrow_mut() = Some(bar);
        } else {
            tracing::info!("{} {stage}: {total} replies", self.side);
        }
    }

    fn advance(&self, done: usize) {
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.inc(done as u64);
            if bar.position() >= bar.length().unwrap_or(0) {
                bar.finish_and_clear();
            }
            return;
        }
        let mut logged = self.logged.borrow_mut();
        logged.0 += done;
        let (finished, total, last_decile) = *logged;
        let decile = (finished * 10).checked_div(total).unwrap_or(10);
        if decile > last_decile && !self.quiet {
            logged.2 = decile;
            tracing::info!("{}: {finished}/{total}", self.side);
        }
    }
}
