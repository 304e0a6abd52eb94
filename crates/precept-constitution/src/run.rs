//! [`constitute`]: prompts in batches through the loop (and AI feedback), records appended as each
//! prompt finishes, and a run manifest kept current.
//!
//! `manifest.json` holds the settings, written atomically before any work and after each batch
//! with the counts; a rerun into the same folder checks that the settings match, skips finished
//! prompts and carries on.

use std::path::{Path, PathBuf};

use precept_data::{write_atomic, Generate, GenerateSettings, Message};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::constitution::Constitution;
use crate::critique::{critique_and_revise, LoopConfig, Revised};
use crate::error::{ConstitutionError, Result};
use crate::feedback::{label_pairs, Feedback, FeedbackConfig};
use crate::journal::{Counts, Outputs, PREFS_FILE, PROGRESS_FILE, SFT_FILE};
use crate::prompts::PromptRecord;
use crate::records::{ConstitutionRef, PairSource, PrefsLine, ProgressLine, Provenance, SftLine};

/// Name of the run manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What decides the content of the outputs; a resumed run must use the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Critique → revision rounds.
    pub rounds: usize,
    /// Seed of principle and comparison sampling and of generation.
    pub seed: u64,
    /// Whether the constitution's examples are shown as prior turns.
    pub few_shot: bool,
    /// Decoding settings of the loop.
    pub generation: GenerateSettings,
    /// AI feedback, when asked for.
    pub feedback: Option<FeedbackConfig>,
    /// A system message given to every prompt that has none.
    #[serde(default)]
    pub system: Option<String>,
}

/// A run of [`constitute`].
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Output folder.
    pub out: PathBuf,
    /// The model's name or folder, recorded in provenance.
    pub model: String,
    /// The prompts file, recorded in the manifest.
    pub prompts_file: String,
    /// Prompts per generation batch.
    pub batch: usize,
    /// What decides the outputs.
    pub settings: RunSettings,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The constitution.
    pub constitution: ConstitutionRef,
    /// The model.
    pub model: String,
    /// The prompts file.
    pub prompts_file: String,
    /// Prompts in it.
    pub prompts: usize,
    /// Prompts per generation batch (does not change the outputs).
    pub batch: usize,
    /// What decides the outputs.
    pub settings: RunSettings,
    /// Counts over every finished prompt.
    pub counts: Counts,
    /// Whether every prompt has finished.
    pub complete: bool,
}

/// Progress reported after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunProgress {
    /// Prompts finished so far, earlier sessions included.
    pub finished: usize,
    /// Prompts finished in this session.
    pub finished_now: usize,
    /// Prompts in the file.
    pub total: usize,
}

impl RunConfig {
    /// Checks the settings against each other and the constitution.
    ///
    /// # Errors
    /// [`ConstitutionError::Setting`] or [`ConstitutionError::NoComparisons`].
    pub fn validate(&self, constitution: &Constitution) -> Result<()> {
        if self.settings.rounds == 0 {
            return Err(ConstitutionError::Setting { setting: "rounds", problem: "must be at least 1".into() });
        }
        if self.batch == 0 {
            return Err(ConstitutionError::Setting { setting: "batch", problem: "must be at least 1".into() });
        }
        if let Some(feedback) = &self.settings.feedback {
            feedback.validate()?;
            if constitution.comparisons.is_empty() {
                return Err(ConstitutionError::NoComparisons { constitution: constitution.name.clone() });
            }
        }
        Ok(())
    }

    fn loop_config(&self) -> LoopConfig {
        LoopConfig {
            rounds: self.settings.rounds,
            seed: self.settings.seed,
            settings: GenerateSettings { seed: self.settings.seed, ..self.settings.generation.clone() },
            few_shot: self.settings.few_shot,
            principle: None,
        }
    }
}

/// Runs the constitution over `prompts` into `config.out`, resuming what is there, and calls
/// `progress` after each batch. Returns the final manifest.
///
/// # Errors
/// Settings errors before any work; [`ConstitutionError::ResumeMismatch`] when the folder holds a
/// run with other settings; generator and file errors as they happen (finished prompts are kept).
pub fn constitute<G: Generate>(
    generator: &mut G,
    constitution: &Constitution,
    prompts: &[PromptRecord],
    config: &RunConfig,
    progress: &mut dyn FnMut(RunProgress),
) -> Result<Manifest> {
    config.validate(constitution)?;
    let manifest_path = config.out.join(MANIFEST_FILE);
    let mut manifest = Manifest {
        constitution: constitution.into(),
        model: config.model.clone(),
        prompts_file: config.prompts_file.clone(),
        prompts: prompts.len(),
        batch: config.batch,
        settings: config.settings.clone(),
        counts: Counts::default(),
        complete: false,
    };
    check_resumable(&manifest_path, &manifest)?;
    if !manifest_path.exists() {
        for name in [SFT_FILE, PREFS_FILE, PROGRESS_FILE] {
            let path = config.out.join(name);
            if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
                return Err(ConstitutionError::ForeignOutput { path, manifest: manifest_path });
            }
        }
    }
    let mut outputs = Outputs::open(&config.out)?;
    let todo: Vec<PromptRecord> = prompts
        .iter()
        .filter(|p| !outputs.is_finished(&p.id))
        .map(|p| match &config.settings.system {
            Some(system) => p.with_default_system(system),
            None => p.clone(),
        })
        .collect();
    if todo.len() < prompts.len() {
        tracing::info!("resuming: {} of {} prompts already finished", prompts.len() - todo.len(), prompts.len());
    }
    manifest.counts = outputs.counts().clone();
    write_manifest(&manifest_path, &manifest)?;
    let provenance = Provenance {
        constitution: constitution.into(),
        model: config.model.clone(),
        seed: config.settings.seed,
        source: None,
        answer: None,
        rounds: Vec::new(),
        feedback: None,
    };
    let loop_config = config.loop_config();
    let mut finished_now = 0;
    for batch in todo.chunks(config.batch) {
        let revised = critique_and_revise(generator, constitution, batch, &loop_config)?;
        let feedback = match &config.settings.feedback {
            Some(feedback) => {
                let feedback = FeedbackConfig { seed: config.settings.seed, ..feedback.clone() };
                Some(label_pairs(generator, constitution, batch, &feedback)?)
            }
            None => None,
        };
        for (i, (prompt, outcome)) in batch.iter().zip(revised).enumerate() {
            let pair = feedback.as_ref().and_then(|f| f.get(i));
            let (line, sft, prefs) = records(prompt, outcome, pair, &provenance);
            outputs.append(line, sft.as_ref(), prefs.as_ref())?;
            finished_now += 1;
        }
        manifest.counts = outputs.counts().clone();
        write_manifest(&manifest_path, &manifest)?;
        progress(RunProgress { finished: manifest.counts.finished, finished_now, total: prompts.len() });
    }
    outputs.sync()?;
    manifest.complete = prompts.iter().all(|p| outputs.is_finished(&p.id));
    write_manifest(&manifest_path, &manifest)?;
    Ok(manifest)
}

/// The progress line and output records of one finished prompt.
fn records(
    prompt: &PromptRecord,
    outcome: Revised,
    feedback: Option<&Feedback>,
    provenance: &Provenance,
) -> (ProgressLine, Option<SftLine>, Option<PrefsLine>) {
    let context = prompt.context().to_vec();
    let (mut filtered, mut filtered_reply) = (Vec::new(), None);
    let (mut sft, mut prefs) = (None, None);
    match outcome {
        Revised::Done { answer, rounds } => {
            let revision = rounds.last().map(|r| r.revision.clone()).unwrap_or_default();
            let mut messages = context.clone();
            messages.push(Message::assistant(&revision));
            let with_rounds = Provenance { rounds, ..provenance.clone() };
            if feedback.is_none() {
                prefs = Some(PrefsLine {
                    prompt_id: prompt.id.clone(),
                    prompt: context.clone(),
                    chosen: vec![Message::assistant(&revision)],
                    rejected: vec![Message::assistant(&answer)],
                    score: 1.0,
                    provenance: Provenance { source: Some(PairSource::Revision), ..with_rounds.clone() },
                });
            }
            let answer = Some(answer);
            sft = Some(SftLine {
                prompt_id: prompt.id.clone(),
                messages,
                provenance: Provenance { answer, ..with_rounds },
            });
        }
        Revised::Filtered { stage, reason, text, .. } => {
            filtered.push(format!("{}-{reason}", stage.as_str()));
            filtered_reply = Some(text);
        }
    }
    match feedback {
        Some(Feedback::Pair { chosen, rejected, score, judgement }) => {
            prefs = Some(PrefsLine {
                prompt_id: prompt.id.clone(),
                prompt: context,
                chosen: vec![Message::assistant(chosen)],
                rejected: vec![Message::assistant(rejected)],
                score: *score,
                provenance: Provenance {
                    source: Some(PairSource::Feedback),
                    feedback: Some(judgement.clone()),
                    ..provenance.clone()
                },
            });
        }
        Some(Feedback::Filtered(reason)) => filtered.push(reason.reason()),
        None => {}
    }
    let line = ProgressLine {
        prompt_id: prompt.id.clone(),
        sft: sft.is_some(),
        prefs: prefs.is_some(),
        filtered,
        filtered_reply,
    };
    (line, sft, prefs)
}

/// Refuses to resume into a folder whose manifest has other settings, constitution or model.
fn check_resumable(path: &Path, current: &Manifest) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ConstitutionError::io(path, e)),
    };
    let previous: Value = serde_json::from_str(&text).map_err(|error| ConstitutionError::Json {
        path: path.to_owned(),
        line: error.line(),
        error,
    })?;
    // Through text, as the manifest was: an f32 like 0.7 reads back as 0.7 from JSON but becomes
    // 0.699999988… when converted to a JSON value directly.
    let current: Value = serde_json::to_string(current)
        .and_then(|text| serde_json::from_str(&text))
        .map_err(|error| ConstitutionError::Json { path: path.to_owned(), line: 0, error })?;
    let mut fields = vec!["/constitution/hash".to_owned(), "/model".to_owned()];
    if let Some(settings) = current["settings"].as_object() {
        fields.extend(settings.keys().map(|k| format!("/settings/{k}")));
    }
    for field in fields {
        let (before, now) = (previous.pointer(&field), current.pointer(&field));
        if before != now {
            return Err(ConstitutionError::ResumeMismatch {
                path: path.to_owned(),
                field: field.trim_start_matches('/').replace('/', "."),
                previous: before.map_or("absent".into(), Value::to_string),
                current: now.map_or("absent".into(), Value::to_string),
            });
        }
    }
    Ok(())
}

fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(manifest).map_err(|error| ConstitutionError::Json {
        path: path.to_owned(),
        line: 0,
        error,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|e| ConstitutionError::io(path, e))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use precept_data::SftReader;

    use super::*;
    use crate::testing::{eos, small_constitution as constitution, Scripted};

    /// Revisions differ from answers; the answer to `bad` is empty, so it is filtered.
    fn script(messages: &[Message]) -> precept_data::Reply {
        let last = &messages[messages.len() - 1].content;
        let prompt = &messages[0].content;
        match last.as_str() {
            "CRITIQUE" => eos(&format!("critique of {prompt}")),
            "REVISE" => eos(&format!("revision of {prompt}")),
            "bad" => eos(""),
            _ => eos(&format!("answer to {prompt}")),
        }
    }

    fn prompts(n: usize) -> Vec<PromptRecord> {
        let mut prompts: Vec<PromptRecord> =
            (0..n).map(|i| PromptRecord::user(format!("p{i}"), format!("Q{i}"))).collect();
        prompts.push(PromptRecord::user("bad", "bad"));
        prompts
    }

    fn config(out: &Path, batch: usize) -> RunConfig {
        RunConfig {
            out: out.to_owned(),
            model: "scripted".into(),
            prompts_file: "prompts.jsonl".into(),
            batch,
            settings: RunSettings {
                rounds: 1,
                seed: 9,
                few_shot: true,
                generation: GenerateSettings::default(),
                feedback: None,
                system: None,
            },
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn a_run_writes_trl_records_with_provenance_and_a_manifest_with_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut generator = Scripted::new(script);
        let manifest =
            constitute(&mut generator, &constitution(), &prompts(3), &config(dir.path(), 2), &mut |_| {}).unwrap();
        assert!(manifest.complete);
        assert_eq!((manifest.counts.finished, manifest.counts.sft, manifest.counts.prefs), (4, 3, 3));
        assert_eq!(manifest.counts.filtered["answer-empty"], 1);
        let progress = lines(&dir.path().join(PROGRESS_FILE));
        assert_eq!(progress[3]["filtered"][0], "answer-empty");
        assert_eq!(progress[3]["filtered_reply"], "");
        let sft_text = std::fs::read_to_string(dir.path().join(SFT_FILE)).unwrap();
        for (_, record) in SftReader::new(Cursor::new(sft_text), Path::new(SFT_FILE)) {
            record.unwrap();
        }
        let sft = lines(&dir.path().join(SFT_FILE));
        assert_eq!(sft[0]["prompt_id"], "p0");
        assert_eq!(sft[0]["messages"][1]["content"], "revision of Q0");
        assert_eq!(sft[0]["provenance"]["rounds"][0]["principle"], "p");
        assert_eq!(sft[0]["provenance"]["rounds"][0]["critique"], "critique of Q0");
        assert_eq!(sft[0]["provenance"]["constitution"]["hash"], constitution().hash);
        assert_eq!(sft[0]["provenance"]["seed"], 9);
        let prefs = lines(&dir.path().join(PREFS_FILE));
        assert_eq!(prefs[1]["chosen"][0]["content"], "revision of Q1");
        assert_eq!(prefs[1]["rejected"][0]["content"], "answer to Q1");
        assert_eq!(prefs[1]["score"], 1.0);
        let on_disk: Manifest =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(on_disk, manifest);
    }

    #[test]
    fn a_failed_run_resumes_without_losing_or_repeating_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let mut failing = Scripted::new(script);
        // Batches of 2: calls 0-2 finish p0 and p1, call 3 (the answers of p2 and p3) fails.
        failing.fail_at = Some(3);
        let err = constitute(&mut failing, &constitution(), &prompts(3), &config(dir.path(), 2), &mut |_| {});
        assert!(err.unwrap_err().to_string().contains("scripted failure"));
        assert_eq!(lines(&dir.path().join(SFT_FILE)).len(), 2);
        let mut generator = Scripted::new(script);
        let manifest =
            constitute(&mut generator, &constitution(), &prompts(3), &config(dir.path(), 2), &mut |_| {}).unwrap();
        // Only the two unfinished prompts were generated again.
        assert_eq!(generator.batches[0].len(), 2);
        assert!(manifest.complete);
        let ids: Vec<Value> = lines(&dir.path().join(SFT_FILE)).iter().map(|l| l["prompt_id"].clone()).collect();
        assert_eq!(ids, ["p0", "p1", "p2"]);
        assert_eq!(manifest.counts.finished, 4);
    }

    #[test]
    fn resuming_with_other_settings_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &config(dir.path(), 2), &mut |_| {})
            .unwrap();
        let mut other = config(dir.path(), 2);
        other.settings.seed = 10;
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &other, &mut |_| {});
        let err = err.unwrap_err().to_string();
        assert!(
            err.ends_with("written by a run with different settings (settings.seed was 9, now 10); use another --out"),
            "{err}"
        );
        // Settings that are not exact in binary (temperature 0.7) compare equal on resume.
        let mut sampled = config(dir.path(), 2);
        sampled.settings.generation.temperature = 0.7;
        sampled.out = dir.path().join("sampled");
        for _ in 0..2 {
            constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &sampled, &mut |_| {}).unwrap();
        }
        // The batch size does not change the outputs, so it may change on resume.
        constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &config(dir.path(), 1), &mut |_| {})
            .unwrap();
    }

    #[test]
    fn with_feedback_the_pairs_come_from_the_judge() {
        let dir = tempfile::tempdir().unwrap();
        let mut generator = Scripted::new(script);
        let mut calls = 0;
        generator.reply = Box::new(move |messages| {
            calls += 1;
            if messages.len() == 1 && messages[0].content.starts_with('Q') {
                // Feedback samples: two different answers per prompt.
                return eos(&format!("sample {calls}"));
            }
            script(messages)
        });
        generator.options = Box::new(|_, _| vec![0.8, 0.2]);
        let mut config = config(dir.path(), 4);
        config.settings.feedback = Some(FeedbackConfig::default());
        config.settings.few_shot = false;
        let manifest = constitute(&mut generator, &constitution(), &prompts(2), &config, &mut |_| {}).unwrap();
        let prefs = lines(&dir.path().join(PREFS_FILE));
        assert_eq!(prefs.len(), 2);
        assert_eq!(prefs[0]["provenance"]["source"], "feedback");
        assert_eq!(prefs[0]["provenance"]["feedback"]["comparison"], "q");
        // A model that always says (A) with 0.8 has no preference: label 0.5.
        assert_eq!(prefs[0]["score"], 0.5);
        assert_eq!(manifest.counts.sft, 2);
    }

    #[test]
    fn output_files_without_a_manifest_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SFT_FILE), "{\"messages\":[]}\n").unwrap();
        let err =
            constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &config(dir.path(), 1), &mut |_| {});
        let err = err.unwrap_err().to_string();
        assert!(err.ends_with("was not written by precept constitute, so choose another --out"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join(SFT_FILE)).unwrap(), "{\"messages\":[]}\n");
    }

    #[test]
    fn bad_settings_fail_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut zero = config(dir.path(), 0);
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut |_| {});
        assert_eq!(err.unwrap_err().to_string(), "setting `batch` must be at least 1");
        zero.batch = 1;
        zero.settings.rounds = 0;
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut |_| {});
        assert_eq!(err.unwrap_err().to_string(), "setting `rounds` must be at least 1");
        assert!(!dir.path().join(MANIFEST_FILE).exists());
    }
}
