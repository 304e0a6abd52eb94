//! The pipeline's stages, and the marker each stage folder carries: the hash of the settings it
//! runs with and whether it finished, written atomically, so a rerun skips finished stages and
//! resumes a killed one.

use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// A pipeline stage, in running order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Critique → revision and AI feedback: SFT records and preference pairs.
    Constitute,
    /// Supervised fine-tuning on the revisions.
    Sft,
    /// Preference training on the pairs.
    Dpo,
    /// Online RL on prompts (only when the settings have a `[grpo]` table).
    Grpo,
    /// The safety regression gate, tuned against base.
    Eval,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 5] = [Stage::Constitute, Stage::Sft, Stage::Dpo, Stage::Grpo, Stage::Eval];

    /// The stage's folder name in the run folder.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Constitute => "constitute",
            Stage::Sft => "sft",
            Stage::Dpo => "dpo",
            Stage::Grpo => "grpo",
            Stage::Eval => "eval",
        }
    }
}

/// The marker file of a stage folder.
pub const MARKER_FILE: &str = "stage.json";

/// What a stage folder holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Hash of the stage's settings and of every upstream stage's settings.
    pub hash: String,
    /// Whether the stage finished.
    pub complete: bool,
}

/// The marker of `dir`, when it has a readable one.
pub fn read_marker(dir: &Path) -> Option<Marker> {
    let text = std::fs::read_to_string(dir.join(MARKER_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `marker` into `dir` atomically.
pub fn write_marker(dir: &Path, marker: &Marker) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(MARKER_FILE);
    let text = serde_json::to_string_pretty(marker)?;
    precept_data::write_atomic(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// What to do with a stage before running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Finished with the same settings: nothing to do.
    Skip,
    /// Started with the same settings and killed: continue it.
    Resume,
    /// Never started, or started with other settings (its folder is cleared first).
    Start,
}

/// The action for a stage whose folder holds `marker`, given the settings `hash` it would run
/// with; `forced` reruns a finished stage.
pub fn action(marker: Option<&Marker>, hash: &str, forced: bool) -> Action {
    match marker {
        Some(marker) if marker.hash == hash && marker.complete && !forced => Action::Skip,
        Some(marker) if marker.hash == hash && !marker.complete => Action::Resume,
        _ => Action::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_stages_are_skipped_killed_ones_resumed_and_changed_ones_restarted() {
        let done = Marker { hash: "a".into(), complete: true };
        let killed = Marker { hash: "a".into(), complete: false };
        assert_eq!(action(Some(&done), "a", false), Action::Skip);
        assert_eq!(action(Some(&done), "a", true), Action::Start);
        assert_eq!(action(Some(&done), "b", false), Action::Start);
        assert_eq!(action(Some(&killed), "a", false), Action::Resume);
        assert_eq!(action(Some(&killed), "a", true), Action::Resume);
        assert_eq!(action(Some(&killed), "b", false), Action::Start);
        assert_eq!(action(None, "a", false), Action::Start);
    }

    #[test]
    fn markers_round_trip_and_a_corrupt_one_counts_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let marker = Marker { hash: "abc".into(), complete: false };
        write_marker(dir.path(), &marker).unwrap();
        assert_eq!(read_marker(dir.path()), Some(marker));
        std::fs::write(dir.path().join(MARKER_FILE), "{").unwrap();
        assert_eq!(read_marker(dir.path()), None);
    }
}
