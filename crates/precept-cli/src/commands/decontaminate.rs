//! `precept data decontaminate`, and the same check before `precept constitute` and
//! `precept pipeline` run: every user turn of the training files against eval suites (their case
//! files) and benchmark files, by normalised whole texts and shared word n-grams
//! ([`precept_data::decontaminate()`]). Contamination exits with [`CONTAMINATED_EXIT_CODE`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use precept_data::{decontaminate, DecontaminateSettings, Decontamination};
use precept_eval::Suite;

use crate::args::DataDecontaminateArgs;
use crate::output::{print_json, write_stdout};

/// The exit code of a run stopped because a training text contains evaluation text.
pub const CONTAMINATED_EXIT_CODE: u8 = 5;

/// Hits listed in the error message; the rest are counted (all are in the JSON report).
const LISTED_HITS: usize = 20;

/// Training texts share text with evaluation data: `main` exits with
/// [`CONTAMINATED_EXIT_CODE`] instead of 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Contaminated {
    /// What was found.
    pub report: Decontamination,
}

impl fmt::Display for Contaminated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hits = &self.report.hits;
        writeln!(f, "decontamination: {} training text(s) share text with evaluation data:", hits.len())?;
        for hit in hits.iter().take(LISTED_HITS) {
            writeln!(f, "  {hit}")?;
        }
        if hits.len() > LISTED_HITS {
            writeln!(f, "  … and {} more", hits.len() - LISTED_HITS)?;
        }
        write!(f, "remove them from the training data (exit code {CONTAMINATED_EXIT_CODE})")
    }
}

impl std::error::Error for Contaminated {}

/// The files `against` names, each once (suites often share case files): a suite (`.toml`)
/// gives its case files, any other path itself.
///
/// # Errors
/// A suite that does not load.
pub fn reference_files(against: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for path in against {
        let named = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml")) {
            Suite::load(path).with_context(|| format!("reading the suite {}", path.display()))?.case_files
        } else {
            vec![path.clone()]
        };
        for file in named {
            let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
            if !files.iter().any(|seen| canonical(seen) == canonical(&file)) {
                files.push(file);
            }
        }
    }
    Ok(files)
}

/// Checks the `train` files against the `against` suites and files, logging what was checked
/// and how long it took.
///
/// # Errors
/// An unreadable or malformed file; contamination is in the report, not an error.
pub fn check(train: &[PathBuf], against: &[PathBuf], settings: &DecontaminateSettings) -> Result<Decontamination> {
    let started = Instant::now();
    let report = decontaminate(train, &reference_files(against)?, settings)?;
    let count = |files: &[precept_data::decontaminate::FileTexts]| files.iter().map(|f| f.texts).sum::<usize>();
    tracing::info!(
        "decontamination: {} prompts of {} file(s) against {} of {} file(s), {}-grams, in {:.1} ms: {}",
        count(&report.checked),
        report.checked.len(),
        count(&report.against),
        report.against.len(),
        report.settings.ngram,
        started.elapsed().as_secs_f64() * 1e3,
        if report.clean { "clean".to_owned() } else { format!("{} hit(s)", report.hits.len()) }
    );
    Ok(report)
}

/// `Ok` when `report` is clean, else the [`Contaminated`] error listing its hits.
pub fn verdict(report: Decontamination) -> Result<()> {
    if report.clean {
        Ok(())
    } else {
        Err(Contaminated { report }.into())
    }
}

/// Writes `report` as pretty JSON to `path` (creating its folder), atomically.
pub fn write_report(report: &Decontamination, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report)?;
    precept_data::write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// `precept data decontaminate`: prints every hit (or the JSON report) and fails with
/// [`CONTAMINATED_EXIT_CODE`] when there is one.
pub fn run(args: &DataDecontaminateArgs) -> Result<()> {
    let settings = DecontaminateSettings { ngram: args.ngram, min_overlap: args.min_overlap };
    let report = check(&args.train, &args.against, &settings)?;
    if args.json {
        print_json(&report)?;
    } else {
        let mut text: String = report.hits.iter().map(|hit| format!("{hit}\n")).collect();
        let texts: usize = report.checked.iter().map(|f| f.texts).sum();
        text.push_str(&format!("{} hit(s) in {texts} training prompts\n", report.hits.len()));
        write_stdout(&text)?;
    }
    verdict(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_training_data_share_no_text_with_the_shipped_suites() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut train = Vec::new();
        for dir in ["data/redteam", "data/sft", "data/prefs"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "jsonl") {
                    train.push(path);
                }
            }
        }
        train.sort();
        assert!(train.len() >= 8, "{train:?}");
        let suites = ["safety.toml", "quickstart.toml", "harmful-direct.toml"].map(|s| root.join("suites").join(s));
        let started = Instant::now();
        let report = check(&train, &suites, &DecontaminateSettings::default()).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let relative = |p: &Path| p.strip_prefix(&root).unwrap().display().to_string();
        let hits: Vec<String> = report
            .hits
            .iter()
            .map(|h| {
                format!(
                    "{}:{} ↔ {}:{}",
                    relative(&h.text.path),
                    h.text.line,
                    relative(&h.reference.path),
                    h.reference.line
                )
            })
            .collect();
        assert_eq!(hits, Vec::<String>::new(), "{:#?}", report.hits);
        // The three suites share their case files, each read once.
        assert_eq!(report.against.len(), 3);
        assert!(report.against.iter().all(|f| f.texts > 0));
        assert!(seconds < 1.0, "{seconds} s");
        // `heldout.jsonl` is an eval split itself: the training files share nothing with it.
        let (heldout, training): (Vec<PathBuf>, Vec<PathBuf>) =
            train.into_iter().partition(|p| p.ends_with("data/redteam/heldout.jsonl"));
        let report = check(&training, &heldout, &DecontaminateSettings::default()).unwrap();
        assert!(report.clean && report.against[0].texts > 0, "{:#?}", report.hits);
    }

    #[test]
    fn a_contamination_error_lists_the_hits_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let cases = dir.path().join("cases.jsonl");
        std::fs::write(&cases, "{\"id\":\"c\",\"prompt\":\"Name three primary colours.\"}\n").unwrap();
        let train = dir.path().join("train.txt");
        std::fs::write(&train, "name three primary colours\n".repeat(LISTED_HITS + 2)).unwrap();
        let report = check(&[train], &[cases], &DecontaminateSettings::default()).unwrap();
        let message = verdict(report).unwrap_err().to_string();
        assert!(message.starts_with("decontamination: 22 training text(s) share text with evaluation data:\n  "));
        assert!(message.contains("train.txt:1 line ↔ ") && message.contains("cases.jsonl:1 (id c) prompt: same text"));
        assert!(message.ends_with("… and 2 more\nremove them from the training data (exit code 5)"), "{message}");
    }
}
