//! One progress event type for all long work — training, the constitution loop, the gate — so
//! one display shows them all: [`ProgressEvent`]s reported to a [`ProgressSink`].
//!
//! Work is a sequence of phases (training steps, prompts of the loop, replies generated, replies
//! judged); each starts with [`ProgressEvent::Start`] and advances with cumulative counts.

use serde_json::{Map, Value};

/// Something long work reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProgressEvent<'a> {
    /// A phase of `total` units (`unit`: steps, prompts, replies) begins; `done` of them were
    /// finished earlier (a resumed run), so rates count only the rest.
    Start {
        /// What the phase does (`training`, `base: generating`, …).
        phase: &'a str,
        /// What is counted.
        unit: &'a str,
        /// Units in the phase.
        total: u64,
        /// Units finished before this run.
        done: u64,
    },
    /// `done` units of the current phase are finished in all.
    Advance {
        /// Units finished, earlier ones included.
        done: u64,
        /// The latest step's metrics (TRL names), where the work has them.
        metrics: Option<&'a Map<String, Value>>,
    },
    /// An evaluation during the phase finished with these metrics (`eval_loss`, …, `step`).
    Evaluated(&'a Map<String, Value>),
    /// A line worth showing the user (where cached work was found, what a phase produced).
    Note(&'a str),
}

/// Receives [`ProgressEvent`]s: a progress bar, log lines, a test's record, or nothing.
pub trait ProgressSink {
    /// Shows or records `event`.
    fn report(&mut self, event: ProgressEvent<'_>);
}

/// A [`ProgressSink`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl ProgressSink for Silent {
    fn report(&mut self, _: ProgressEvent<'_>) {}
}

/// Counts units of one phase and reports each advance as the cumulative count.
#[derive(Debug, Default)]
pub struct Counter {
    done: u64,
}

impl Counter {
    /// Starts `phase` of `total` units on `sink`, none finished.
    pub fn start(sink: &mut dyn ProgressSink, phase: &str, unit: &str, total: usize) -> Self {
        sink.report(ProgressEvent::Start { phase, unit, total: total as u64, done: 0 });
        Self::default()
    }

    /// `more` units finished.
    pub fn advance(&mut self, sink: &mut dyn ProgressSink, more: usize) {
        self.done += more as u64;
        sink.report(ProgressEvent::Advance { done: self.done, metrics: None });
    }
}
