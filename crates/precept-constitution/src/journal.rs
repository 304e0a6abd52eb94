//! [`Outputs`]: the appended JSONL files of a run, repaired and reopened on resume.
//!
//! A finished prompt appends its `sft.jsonl` and `prefs.jsonl` lines, then its
//! `progress.jsonl` line, each flushed as it is written. A kill can therefore leave a torn last
//! line, or output lines of a prompt whose progress line never made it. On open, torn last lines
//! are dropped, output lines of unfinished prompts and repeated lines are removed (each file is
//! rewritten atomically when anything changed), and the finished prompt ids are loaded so the
//! run skips them: no finished record is lost and none is duplicated.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use precept_data::write_atomic;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ConstitutionError, Result};
use crate::records::{PrefsLine, ProgressLine, SftLine};

/// Name of the SFT output.
pub const SFT_FILE: &str = "sft.jsonl";
/// Name of the preference output.
pub const PREFS_FILE: &str = "prefs.jsonl";
/// Name of the finished-prompt ledger.
pub const PROGRESS_FILE: &str = "progress.jsonl";

/// Counts over every finished prompt of the run (earlier sessions included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Prompts finished.
    pub finished: usize,
    /// Records in `sft.jsonl`.
    pub sft: usize,
    /// Records in `prefs.jsonl`.
    pub prefs: usize,
    /// Filtered outputs by reason.
    pub filtered: BTreeMap<String, usize>,
}

impl Counts {
    fn add(&mut self, line: &ProgressLine) {
        self.finished += 1;
        self.sft += usize::from(line.sft);
        self.prefs += usize::from(line.prefs);
        for reason in &line.filtered {
            *self.filtered.entry(reason.clone()).or_default() += 1;
        }
    }
}

/// The three appended files of an output folder.
pub struct Outputs {
    sft: File,
    prefs: File,
    progress: File,
    dir: PathBuf,
    finished: HashSet<String>,
    counts: Counts,
}

impl Outputs {
    /// Creates `dir` if needed, repairs what a kill left behind and opens the files for appending.
    ///
    /// # Errors
    /// [`ConstitutionError::Io`] for file errors, [`ConstitutionError::Json`] for a line, other
    /// than a torn last one, that is not a record.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| ConstitutionError::io(dir, e))?;
        let progress_path = dir.join(PROGRESS_FILE);
        let progress_lines = repair(&progress_path, &|_| true)?;
        let mut finished = HashSet::new();
        let mut counts = Counts::default();
        for (line, text) in &progress_lines {
            let record: ProgressLine = serde_json::from_str(text).map_err(|error| ConstitutionError::Json {
                path: progress_path.clone(),
                line: *line,
                error,
            })?;
            finished.insert(record.prompt_id.clone());
            counts.add(&record);
        }
        for name in [SFT_FILE, PREFS_FILE] {
            repair(&dir.join(name), &|id| finished.contains(id))?;
        }
        let append = |name: &str| {
            let path = dir.join(name);
            OpenOptions::new().create(true).append(true).open(&path).map_err(|e| ConstitutionError::io(path, e))
        };
        Ok(Self {
            sft: append(SFT_FILE)?,
            prefs: append(PREFS_FILE)?,
            progress: append(PROGRESS_FILE)?,
            dir: dir.to_owned(),
            finished,
            counts,
        })
    }

    /// Whether `prompt_id` finished in this or an earlier session.
    pub fn is_finished(&self, prompt_id: &str) -> bool {
        self.finished.contains(prompt_id)
    }

    /// Counts over every finished prompt.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Appends one finished prompt: its records, then its `progress` line, each flushed.
    ///
    /// # Errors
    /// [`ConstitutionError::Io`] when a write fails.
    pub fn append(&mut self, progress: ProgressLine, sft: Option<&SftLine>, prefs: Option<&PrefsLine>) -> Result<()> {
        if let Some(line) = sft {
            write_line(&mut self.sft, &self.dir.join(SFT_FILE), line)?;
        }
        if let Some(line) = prefs {
            write_line(&mut self.prefs, &self.dir.join(PREFS_FILE), line)?;
        }
        write_line(&mut self.progress, &self.dir.join(PROGRESS_FILE), &progress)?;
        self.counts.add(&progress);
        self.finished.insert(progress.prompt_id);
        Ok(())
    }

    /// Forces the appended data to disk (flushing already protects it from a killed process).
    ///
    /// # Errors
    /// [`ConstitutionError::Io`] when the sync fails.
    pub fn sync(&self) -> Result<()> {
        for (file, name) in [(&self.sft, SFT_FILE), (&self.prefs, PREFS_FILE), (&self.progress, PROGRESS_FILE)] {
            file.sync_data().map_err(|e| ConstitutionError::io(self.dir.join(name), e))?;
        }
        Ok(())
    }
}

/// Writes `record` and a newline in one write, then flushes.
fn write_line(file: &mut File, path: &Path, record: &impl Serialize) -> Result<()> {
    let mut bytes = serde_json::to_vec(record)
        .map_err(|error| ConstitutionError::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, error)))?;
    bytes.push(b'\n');
    file.write_all(&bytes).and_then(|()| file.flush()).map_err(|e| ConstitutionError::io(path, e))
}

/// Reads `path` (absent = empty) and keeps complete lines whose `prompt_id` passes `keep`, first
/// occurrence only; rewrites the file atomically when anything was dropped. Returns the kept
/// lines with their original line numbers.
fn repair(path: &Path, keep: &dyn Fn(&str) -> bool) -> Result<Vec<(usize, String)>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConstitutionError::io(path, e)),
    };
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |end| end + 1);
    let torn = complete < text.len();
    let text = String::from_utf8_lossy(&text[..complete]);
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    let mut dropped = usize::from(torn);
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            dropped += 1;
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|error| ConstitutionError::Json {
            path: path.to_owned(),
            line: index + 1,
            error,
        })?;
        let id = value.get("prompt_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        if keep(&id) && seen.insert(id) {
            kept.push((index + 1, line.to_owned()));
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        tracing::warn!("{}: removing {dropped} torn, unfinished or repeated line(s) before resuming", path.display());
        let mut bytes = Vec::with_capacity(complete);
        for (_, line) in &kept {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        write_atomic(path, &bytes).map_err(|e| ConstitutionError::io(path, e))?;
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(id: &str, sft: bool) -> String {
        format!("{{\"prompt_id\":\"{id}\",\"sft\":{sft},\"prefs\":false}}\n")
    }

    #[test]
    fn a_torn_last_line_and_records_of_unfinished_prompts_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let sft =
            "{\"prompt_id\":\"a\",\"messages\":[]}\n{\"prompt_id\":\"b\",\"messages\":[]}\n{\"prompt_id\":\"c\",\"mess";
        std::fs::write(dir.path().join(SFT_FILE), sft).unwrap();
        std::fs::write(dir.path().join(PROGRESS_FILE), progress("a", true) + "{\"prompt_id\":\"b\",\"sf").unwrap();
        let outputs = Outputs::open(dir.path()).unwrap();
        assert!(outputs.is_finished("a") && !outputs.is_finished("b"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SFT_FILE)).unwrap(),
            "{\"prompt_id\":\"a\",\"messages\":[]}\n"
        );
        assert_eq!(std::fs::read_to_string(dir.path().join(PROGRESS_FILE)).unwrap(), progress("a", true));
        assert_eq!(outputs.counts().finished, 1);
        assert_eq!(outputs.counts().sft, 1);
    }

    #[test]
    fn repeated_lines_are_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PROGRESS_FILE), progress("a", false).repeat(2)).unwrap();
        let outputs = Outputs::open(dir.path()).unwrap();
        assert_eq!(outputs.counts().finished, 1);
        assert_eq!(std::fs::read_to_string(dir.path().join(PROGRESS_FILE)).unwrap(), progress("a", false));
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PROGRESS_FILE), progress("a", false) + "garbage\n" + &progress("b", false))
            .unwrap();
        let err = Outputs::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("progress.jsonl:2: invalid JSON"), "{err}");
    }

    #[test]
    fn appended_prompts_count_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut outputs = Outputs::open(dir.path()).unwrap();
        let line = ProgressLine {
            prompt_id: "x".into(),
            sft: false,
            prefs: false,
            filtered: vec!["answer-empty".into()],
            filtered_reply: Some(String::new()),
            answer: None,
            rounds: Vec::new(),
        };
        outputs.append(line, None, None).unwrap();
        drop(outputs);
        let outputs = Outputs::open(dir.path()).unwrap();
        assert!(outputs.is_finished("x"));
        assert_eq!(outputs.counts().filtered["answer-empty"], 1);
    }
}
