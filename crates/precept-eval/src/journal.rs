//! [`ReplyJournal`]: every generated reply appended to a JSONL file as soon as its batch is
//! done, so a run killed half-way resumes with what it had and redoes at most one batch.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

#[derive(Serialize, Deserialize)]
struct Entry {
    trial: String,
    turn: usize,
    reply: String,
}

/// Replies already generated for one side, and the file new ones are appended to.
///
/// Lines that do not parse (the torn last line of a killed run) are skipped, and the next
/// append starts on a fresh line.
#[derive(Debug)]
pub struct ReplyJournal {
    path: PathBuf,
    file: File,
    done: HashMap<(String, usize), String>,
}

impl ReplyJournal {
    /// Opens (or creates) the journal at `path` and reads what it holds.
    pub fn open(path: &Path) -> Result<Self> {
        let write_error = |error| EvalError::Write { path: path.to_owned(), error };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(EvalError::Read { path: path.to_owned(), error }),
        };
        let done = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Entry>(line).ok())
            .map(|entry| ((entry.trial, entry.turn), entry.reply))
            .collect();
        let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(write_error)?;
        if !text.is_empty() && !text.ends_with('\n') {
            file.write_all(b"\n").map_err(write_error)?;
        }
        Ok(Self { path: path.to_owned(), file, done })
    }

    /// The reply to user turn `turn` of trial `trial`, if it was generated before.
    pub fn get(&self, trial: &str, turn: usize) -> Option<&str> {
        self.done.get(&(trial.to_owned(), turn)).map(String::as_str)
    }

    /// How many replies the journal holds.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    /// Whether the journal holds no reply.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Appends a batch of `(trial, turn, reply)` and syncs it to disk.
    pub fn record(&mut self, batch: &[(&str, usize, &str)]) -> Result<()> {
        let mut lines = String::new();
        for &(trial, turn, reply) in batch {
            let entry = Entry { trial: trial.to_owned(), turn, reply: reply.to_owned() };
            // A struct of strings and a number always serialises.
            lines.push_str(&serde_json::to_string(&entry).unwrap_or_default());
            lines.push('\n');
            self.done.insert((trial.to_owned(), turn), reply.to_owned());
        }
        let write_error = |error| EvalError::Write { path: self.path.clone(), error };
        self.file.write_all(lines.as_bytes()).map_err(write_error)?;
        self.file.sync_data().map_err(write_error)
    }

    /// Deletes the journal file (once its side is complete and stored elsewhere).
    pub fn remove(self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|error| EvalError::Write { path: self.path.clone(), error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_replies_survive_reopening_and_a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("side.partial.jsonl");
        let mut journal = ReplyJournal::open(&path).unwrap();
        assert!(journal.is_empty());
        journal.record(&[("a/direct", 0, "Sure."), ("e/escalation", 1, "No.")]).unwrap();
        drop(journal);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"trial\":\"b/direct\",\"tu").unwrap();
        let mut journal = ReplyJournal::open(&path).unwrap();
        assert_eq!((journal.len(), journal.get("e/escalation", 1), journal.get("b/direct", 0)), (2, Some("No."), None));
        journal.record(&[("b/direct", 0, "Fine.")]).unwrap();
        assert_eq!(ReplyJournal::open(&path).unwrap().get("b/direct", 0), Some("Fine."));
        ReplyJournal::open(&path).unwrap().remove().unwrap();
        assert!(!path.exists());
    }
}
