//! The metrics log: one JSON object per logged step, with TRL's names (`loss`, `eval_loss`,
//! `learning_rate`, `grad_norm`, `mean_token_accuracy`, `num_tokens`, `epoch`, `step`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Result, TrainError};

/// The metrics file's name in a run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// An append-only JSONL log that a resumed run continues without duplicated steps.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `run_dir/metrics.jsonl`, keeping only the records of steps up to `resumed_step`
    /// (all of them are dropped for a fresh run, `resumed_step = 0`). A torn last line from a
    /// killed run is dropped too.
    pub fn open(run_dir: &Path, resumed_step: u64) -> Result<Self> {
        Self::open_file(run_dir.join(METRICS_FILE), resumed_step)
    }

    /// Opens the JSONL log `path` whose records carry a `step`, keeping those of steps up to
    /// `resumed_step` as [`MetricsLog::open`] does.
    pub fn open_file(path: PathBuf, resumed_step: u64) -> Result<Self> {
        let kept = match std::fs::read(&path) {
            Ok(bytes) => kept_lines(&bytes, resumed_step),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(TrainError::io(&path, error)),
        };
        precept_data::write_atomic(&path, kept.as_bytes()).map_err(|e| TrainError::io(&path, e))?;
        let file = OpenOptions::new().append(true).open(&path).map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// Appends one record and flushes it to the file.
    pub fn log(&mut self, record: &Map<String, Value>) -> Result<()> {
        let mut line = serde_json::to_string(record).unwrap_or_default();
        line.push('\n');
        self.file.write_all(line.as_bytes()).and_then(|()| self.file.flush()).map_err(|e| TrainError::io(&self.path, e))
    }
}

/// The complete lines of `bytes` whose `step` is at most `last_step`.
fn kept_lines(bytes: &[u8], last_step: u64) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut kept = String::new();
    for line in text.split_inclusive('\n').filter(|line| line.ends_with('\n')) {
        let step = serde_json::from_str::<Value>(line).ok().and_then(|record| record.get("step")?.as_u64());
        if step.is_some_and(|step| step <= last_step) {
            kept.push_str(line);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(step: u64) -> Map<String, Value> {
        match json!({ "step": step, "loss": 1.5 }) {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_resumed_log_keeps_earlier_steps_and_drops_later_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), 0).unwrap();
        for step in 1..=4 {
            log.log(&record(step)).unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(METRICS_FILE))
            .unwrap()
            .write_all(b"{\"step\": 5, \"lo")
            .unwrap();
        let mut log = MetricsLog::open(dir.path(), 2).unwrap();
        log.log(&record(3)).unwrap();
        let text = std::fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap();
        let steps: Vec<u64> =
            text.lines().map(|line| serde_json::from_str::<Value>(line).unwrap()["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, [1, 2, 3]);
    }
}
