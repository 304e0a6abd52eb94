//! [`SafetySettings`]: the safety gate watching a training run (`[safety]` in a run's settings,
//! `--safety-*` on the command line). This crate only checks them and calls a
//! [`Monitor`](crate::monitor::Monitor) every `every` steps; the caller that has the gate builds
//! the monitor from them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// How the safety gate watches a run: which suite, how often, on how many cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SafetySettings {
    /// The eval suite the current weights are gated on; none: no gate during training.
    pub suite: Option<PathBuf>,
    /// Gate the weights every this many optimiser steps (and after the last).
    pub every: Option<u64>,
    /// Cases of each kind (`refuse`, `comply`) taken from the start of the suite; none: all.
    pub cases: Option<usize>,
    /// Conversations generated together (overrides the suite).
    pub batch_size: Option<usize>,
    /// Most new tokens per reply (overrides the suite).
    pub max_new_tokens: Option<usize>,
    /// Warn on a significant regression instead of stopping the run.
    pub warn_only: bool,
    /// Folder of cached base results, shared with `precept eval`.
    pub cache_dir: PathBuf,
}

impl Default for SafetySettings {
    fn default() -> Self {
        Self {
            suite: None,
            every: None,
            cases: None,
            batch_size: None,
            max_new_tokens: None,
            warn_only: false,
            cache_dir: PathBuf::from(".precept-cache/eval"),
        }
    }
}

impl SafetySettings {
    /// Whether the gate watches the run.
    pub fn enabled(&self) -> bool {
        self.suite.is_some()
    }

    /// Checks that a suite and a period come together and every count is at least 1.
    ///
    /// # Errors
    /// [`TrainError::Setting`] naming the `safety.*` setting.
    pub fn validate(&self) -> Result<()> {
        match (&self.suite, self.every) {
            (Some(_), None) => return Err(TrainError::setting("safety.every", "is required with `safety.suite`")),
            (None, Some(_)) => return Err(TrainError::setting("safety.suite", "is required with `safety.every`")),
            _ => {}
        }
        let counts = [
            ("safety.every", self.every.map(|n| n as usize)),
            ("safety.cases", self.cases),
            ("safety.batch_size", self.batch_size),
            ("safety.max_new_tokens", self.max_new_tokens),
        ];
        for (field, value) in counts {
            if value == Some(0) {
                return Err(TrainError::setting(field, "must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suite_needs_a_period_and_counts_must_be_positive() {
        assert!(SafetySettings::default().validate().is_ok());
        let on = SafetySettings { suite: Some("s.toml".into()), every: Some(5), ..SafetySettings::default() };
        assert!(on.validate().is_ok() && on.enabled());
        let cases = [
            (SafetySettings { every: None, ..on.clone() }, "setting `safety.every`: is required"),
            (SafetySettings { suite: None, ..on.clone() }, "setting `safety.suite`: is required"),
            (SafetySettings { every: Some(0), ..on.clone() }, "setting `safety.every`: must be at least 1"),
            (SafetySettings { cases: Some(0), ..on.clone() }, "setting `safety.cases`"),
            (SafetySettings { batch_size: Some(0), ..on }, "setting `safety.batch_size`"),
        ];
        for (settings, expected) in cases {
            let message = settings.validate().unwrap_err().to_string();
            assert!(message.starts_with(expected), "{message}");
        }
    }
}
