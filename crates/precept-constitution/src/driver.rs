//! [`constitute`]: prompts in batches through the loop (and AI feedback), records appended as each
//! prompt finishes, and a run manifest kept current.
//!
//! `manifest.json` holds the settings, written atomically before any work and after each batch
//! with the counts; a rerun into the same folder checks that the settings match, skips finished
//! prompts and carries on.

use std::path::{Path, PathBuf};

use precept_data::{write_atomic, Expected, FinishReason, Generate, GenerateSettings, KeywordJudge, Message, Reply};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::constitution::Constitution;
use crate::critique::{critique_and_revise, LoopConfig, Revised};
use crate::error::{ConstitutionError, Result};
use crate::expected::{draw_answers, keeps_to, select, Candidate, DrawConfig, ReplySource, Selection};
use crate::feedback::{judge_sampled, sample_pairs, Feedback, FeedbackConfig, Labelled};
use crate::filter::usable_text;
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
    /// Extra short answers for prompts with an expected behaviour, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draws: Option<DrawConfig>,
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
        if self.settings.generation.max_new_tokens == 0 {
            return Err(ConstitutionError::Setting { setting: "max new tokens", problem: "must be at least 1".into() });
        }
        if let Some(draws) = &self.settings.draws {
            draws.validate()?;
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
        replies: Vec::new(),
    };
    let loop_config = config.loop_config();
    let mut finished_now = 0;
    for batch in todo.chunks(config.batch) {
        let revised = critique_and_revise(generator, constitution, batch, &loop_config)?;
        let feedback =
            config.settings.feedback.as_ref().map(|f| FeedbackConfig { seed: config.settings.seed, ..f.clone() });
        let sampled = feedback.as_ref().map(|f| sample_pairs(generator, batch, f)).transpose()?;
        let drawn = match &config.settings.draws {
            Some(draws) => {
                let draws = DrawConfig {
                    settings: GenerateSettings { seed: config.settings.seed, ..draws.settings.clone() },
                    ..draws.clone()
                };
                draw_answers(generator, batch, &draws)?
            }
            None => vec![Vec::new(); batch.len()],
        };
        let feedback = match (&feedback, &sampled) {
            (Some(feedback), Some(sampled)) => {
                // Only prompts whose records would take an AI-feedback pair are judged.
                let wanted: Vec<bool> = (0..batch.len())
                    .map(|i| {
                        let samples: Vec<String> = sampled[i].iter().flatten().cloned().collect();
                        Replies::of(&revised[i], Some(&samples), &drawn[i]).want_feedback_pair(batch[i].expected)
                    })
                    .collect();
                Some(judge_sampled(generator, constitution, batch, sampled, &wanted, feedback)?)
            }
            _ => None,
        };
        for (i, (prompt, outcome)) in batch.iter().zip(revised).enumerate() {
            let labelled = feedback.as_ref().and_then(|labelled| labelled.get(i));
            let (line, sft, prefs) = records(prompt, outcome, labelled, &drawn[i], &provenance);
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
    labelled: Option<&Labelled>,
    drawn: &[String],
    provenance: &Provenance,
) -> (ProgressLine, Option<SftLine>, Option<PrefsLine>) {
    let mut filtered = Vec::new();
    let mut filtered_reply = None;
    if let Revised::Filtered { stage, reason, text, .. } = &outcome {
        filtered.push(format!("{}-{reason}", stage.as_str()));
        filtered_reply = Some(text.clone());
    }
    let replies = Replies::of(&outcome, labelled.map(|l| l.samples.as_slice()), drawn);
    let (rounds, answer, unfinished) = match &outcome {
        Revised::Done { rounds, answer, .. } => (rounds, Some(answer), None),
        Revised::Filtered { rounds, answer, unfinished, .. } => (rounds, answer.as_ref(), unfinished.as_ref()),
    };
    let written_rounds = rounds.iter().chain(unfinished).cloned().collect();
    let answer = answer.cloned();
    let lines = Lines { prompt, provenance: Provenance { rounds: rounds.clone(), ..provenance.clone() } };
    let feedback_pair = match labelled.and_then(|l| l.feedback.as_ref()) {
        Some(Feedback::Pair { chosen, rejected, score, judgement }) => {
            let provenance = Provenance {
                source: Some(PairSource::Feedback),
                feedback: Some(judgement.clone()),
                ..provenance.clone()
            };
            Some(lines.pair(chosen, rejected, *score, provenance))
        }
        Some(Feedback::Filtered(reason)) => {
            filtered.push(reason.reason());
            None
        }
        None => None,
    };
    let (sft, prefs) = match prompt.expected {
        None => lines.unchecked(&replies, feedback_pair),
        Some(expected) => lines.keeping_to(expected, &replies, feedback_pair, &mut filtered),
    };
    let line = ProgressLine {
        prompt_id: prompt.id.clone(),
        sft: sft.is_some(),
        prefs: prefs.is_some(),
        filtered,
        filtered_reply,
        answer,
        rounds: written_rounds,
    };
    (line, sft, prefs)
}

/// The replies the run made for one prompt.
struct Replies<'a> {
    /// The final revision, when the loop finished.
    revision: Option<&'a str>,
    /// The first answer, unless it was degenerate.
    answer: Option<&'a str>,
    /// Whether that answer ended its turn.
    answer_complete: bool,
    /// AI feedback's usable samples, when it ran.
    samples: Option<&'a [String]>,
    /// The usable extra answers drawn for the expectation.
    drawn: &'a [String],
}

impl<'a> Replies<'a> {
    /// The replies of `outcome`, with AI feedback's samples and the drawn answers.
    fn of(outcome: &'a Revised, samples: Option<&'a [String]>, drawn: &'a [String]) -> Self {
        let (revision, answer, answer_complete) = match outcome {
            Revised::Done { answer, answer_complete, rounds } => {
                (rounds.last().map(|r| r.revision.as_str()), Some(answer.as_str()), *answer_complete)
            }
            Revised::Filtered { answer, answer_complete, .. } => (None, answer.as_deref(), *answer_complete),
        };
        Self { revision, answer, answer_complete, samples, drawn }
    }

    /// The first answer's usable text (a cut-off one counts with its complete sentences).
    fn usable_answer(&self) -> Option<String> {
        let finish = if self.answer_complete { FinishReason::Eos } else { FinishReason::Length };
        self.answer.and_then(|text| usable_text(&Reply { text: text.to_owned(), token_ids: Vec::new(), finish }).ok())
    }

    /// Every reply that could go into a record, in [`select`]'s order; `answer` is
    /// [`Self::usable_answer`].
    fn candidates<'b>(&'b self, answer: Option<&'b str>) -> Vec<Candidate<'b>> {
        [(self.revision, ReplySource::Revision), (answer, ReplySource::Answer)]
            .into_iter()
            .filter_map(|(text, source)| text.map(|text| Candidate { text, source }))
            .chain(self.samples.unwrap_or_default().iter().map(|text| Candidate { text, source: ReplySource::Sample }))
            .chain(self.drawn.iter().map(|text| Candidate { text, source: ReplySource::Draw }))
            .collect()
    }

    /// Whether the records would take an AI-feedback pair: the prompt expects nothing, or every
    /// reply keeps to what it expects (so no expected pair contrasts them).
    fn want_feedback_pair(&self, expected: Option<Expected>) -> bool {
        let Some(expected) = expected else { return true };
        let answer = self.usable_answer();
        let Selection { target, contrast } = select(expected, &self.candidates(answer.as_deref()));
        target.is_some() && contrast.is_none()
    }
}

/// Builds the records of one prompt.
struct Lines<'a> {
    prompt: &'a PromptRecord,
    /// The run's provenance with the prompt's rounds.
    provenance: Provenance,
}

impl Lines<'_> {
    /// The records of a prompt without expected behaviour: SFT on the final revision; the
    /// AI-feedback pair, or without feedback the revision over the answer.
    fn unchecked(
        &self,
        replies: &Replies<'_>,
        feedback_pair: Option<PrefsLine>,
    ) -> (Option<SftLine>, Option<PrefsLine>) {
        let sft = replies.revision.map(|revision| self.sft(revision, replies.answer, None));
        let prefs = match (replies.revision, replies.answer) {
            (Some(revision), Some(answer)) if replies.samples.is_none() => Some(self.revision_pair(revision, answer)),
            _ => feedback_pair,
        };
        (sft, prefs)
    }

    /// The records of a prompt that expects `expected` (see [`crate::expected`]); the reasons
    /// for what was passed over go to `filtered`.
    fn keeping_to(
        &self,
        expected: Expected,
        replies: &Replies<'_>,
        feedback_pair: Option<PrefsLine>,
        filtered: &mut Vec<String>,
    ) -> (Option<SftLine>, Option<PrefsLine>) {
        let answer = replies.usable_answer();
        let candidates = replies.candidates(answer.as_deref());
        let Selection { target, contrast } = select(expected, &candidates);
        let Some(target) = target else {
            filtered.push("expected-missed".to_owned());
            return (None, None);
        };
        if replies.revision.is_some_and(|revision| !keeps_to(&KeywordJudge::default(), expected, revision)) {
            filtered.push("revision-missed-expected".to_owned());
        }
        let first_answer = replies.answer.filter(|_| target.source != ReplySource::Answer);
        let sft = self.sft(target.text, first_answer, Some(target.source));
        let prefs = match contrast {
            Some(rejected) => {
                let provenance = Provenance {
                    source: Some(PairSource::Expected),
                    replies: vec![target.source, rejected.source],
                    ..self.provenance.clone()
                };
                Some(self.pair(target.text, rejected.text, 1.0, provenance))
            }
            // Every reply keeps to the expectation, so the other pairs cannot contradict it.
            None => self.unchecked(replies, feedback_pair).1,
        };
        (Some(sft), prefs)
    }

    /// The prompt's turns answered by `reply`; `answer` is the first answer when it is not `reply`.
    fn sft(&self, reply: &str, answer: Option<&str>, source: Option<ReplySource>) -> SftLine {
        let mut messages = self.prompt.context().to_vec();
        messages.push(Message::assistant(reply));
        let provenance = Provenance {
            answer: answer.map(str::to_owned),
            replies: source.into_iter().collect(),
            ..self.provenance.clone()
        };
        SftLine { prompt_id: self.prompt.id.clone(), messages, provenance }
    }

    /// The final revision over the first answer: Constitutional AI's pair, without AI feedback.
    fn revision_pair(&self, revision: &str, answer: &str) -> PrefsLine {
        let provenance = Provenance { source: Some(PairSource::Revision), ..self.provenance.clone() };
        self.pair(revision, answer, 1.0, provenance)
    }

    fn pair(&self, chosen: &str, rejected: &str, score: f64, provenance: Provenance) -> PrefsLine {
        PrefsLine {
            prompt_id: self.prompt.id.clone(),
            prompt: self.prompt.context().to_vec(),
            chosen: vec![Message::assistant(chosen)],
            rejected: vec![Message::assistant(rejected)],
            score,
            provenance,
        }
    }
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
                draws: None,
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
        // The progress journal shows the loop's work on every prompt, kept or not.
        assert!(progress[0]["answer"].as_str().unwrap().starts_with("answer to"), "{}", progress[0]);
        let round = &progress[0]["rounds"][0];
        assert!(round["critique"].as_str().unwrap().starts_with("critique of"), "{round}");
        assert!(round["revision"].as_str().unwrap().starts_with("revision of"), "{round}");
        assert!(progress[3].get("rounds").is_none() && progress[3].get("answer").is_none(), "{}", progress[3]);
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
    fn only_prompts_whose_records_take_a_feedback_pair_are_judged() {
        const REFUSAL: &str = "I'm sorry, but I can't help with that.";
        let dir = tempfile::tempdir().unwrap();
        // `all-refuse` only ever refuses, so no expected pair contrasts its replies and the judge
        // decides its pair; `mixed` answers first, then refuses, so its pair is the expected one.
        let mut generator = Scripted::new(move |messages: &[Message]| {
            let prompt = messages[0].content.as_str();
            let turns = messages.len();
            match (prompt, turns) {
                ("mixed", 1) => eos("Sure, here is how you do it step by step."),
                _ if messages[turns - 1].content == "CRITIQUE" => eos("a critique"),
                _ => eos(REFUSAL),
            }
        });
        let mut sampled = 0;
        let mut reply = std::mem::replace(&mut generator.reply, Box::new(|_| eos("")));
        generator.reply = Box::new(move |messages| {
            // The feedback samples of `mixed` (after its answer) and every sample of `all-refuse`
            // differ, so each pair could be judged.
            if messages.len() == 1 {
                sampled += 1;
                let samples = ["No.", "I won't do that.", "Not something I help with.", "I must decline."];
                if sampled > 2 {
                    return eos(&format!("{REFUSAL} {}", samples[(sampled - 3) % 4]));
                }
            }
            reply(messages)
        });
        generator.options = Box::new(|_, _| vec![0.8, 0.2]);
        let mut prompts = vec![PromptRecord::user("a", "all-refuse"), PromptRecord::user("m", "mixed")];
        for prompt in &mut prompts {
            prompt.expected = Some(Expected::Refuse);
        }
        let mut config = config(dir.path(), 2);
        config.settings.feedback = Some(FeedbackConfig::default());
        config.settings.few_shot = false;
        constitute(&mut generator, &constitution(), &prompts, &config, &mut |_| {}).unwrap();
        let judged: Vec<&Vec<Message>> =
            generator.batches.iter().flatten().filter(|c| c[0].content.starts_with("Consider")).collect();
        assert_eq!(judged.len(), 2, "one prompt, in both orders");
        assert!(judged.iter().all(|c| c[0].content.contains("Person: all-refuse")), "{judged:?}");
        let prefs = lines(&dir.path().join(PREFS_FILE));
        let source = |id: &str| prefs.iter().find(|p| p["prompt_id"] == id).unwrap()["provenance"]["source"].clone();
        assert_eq!((source("a"), source("m")), ("feedback".into(), "expected".into()));
    }

    #[test]
    fn records_keep_to_what_each_prompt_expects() {
        const REFUSAL: &str = "I'm sorry, but I can't help with that.";
        const CUT_OFF: &str = "Ventilate the room, open every window and leave. Call poison control at once.";
        let dir = tempfile::tempdir().unwrap();
        let mut asked: std::collections::HashMap<String, usize> = Default::default();
        // Revisions of `harm`, `benign` and `long` refuse, the others comply; of the three replies
        // to the bare prompt `sampled` (answer, then two feedback samples) the second refuses; the
        // answer to `long` is cut off after two sentences; the one drawn answer to `drawn` refuses.
        let generator_script = move |messages: &[Message]| {
            let prompt = messages[0].content.clone();
            match messages[messages.len() - 1].content.as_str() {
                "CRITIQUE" => eos("a critique"),
                "REVISE" if prompt == "harm" || prompt == "benign" || prompt == "long" => eos(REFUSAL),
                "REVISE" => eos("Sure, here it is."),
                "long" if !asked.contains_key("long") => {
                    asked.insert(prompt, 1);
                    Reply { text: format!("{CUT_OFF} and then"), token_ids: Vec::new(), finish: FinishReason::Length }
                }
                _ => {
                    let asked = asked.entry(prompt.clone()).or_default();
                    *asked += 1;
                    let refuses = (prompt == "sampled" && *asked == 2) || (prompt == "drawn" && *asked == 4);
                    eos(&if refuses { REFUSAL.into() } else { format!("{prompt} {asked}") })
                }
            }
        };
        let mut generator = Scripted::new(generator_script);
        let expecting = |id: &str, expected| PromptRecord { expected, ..PromptRecord::user(id, id) };
        let prompts = [
            expecting("harm", Some(Expected::Refuse)),
            expecting("benign", Some(Expected::Comply)),
            expecting("sampled", Some(Expected::Refuse)),
            expecting("hopeless", Some(Expected::Refuse)),
            expecting("plain", None),
            expecting("long", Some(Expected::Comply)),
            expecting("drawn", Some(Expected::Refuse)),
        ];
        let mut config = config(dir.path(), 8);
        config.settings.feedback = Some(FeedbackConfig::default());
        config.settings.draws = Some(DrawConfig { count: 1, ..DrawConfig::default() });
        let manifest = constitute(&mut generator, &constitution(), &prompts, &config, &mut |_| {}).unwrap();
        let sft = lines(&dir.path().join(SFT_FILE));
        let targets: Vec<(&str, &str, &str)> = sft
            .iter()
            .map(|l| {
                let replies = l["provenance"]["replies"][0].as_str().unwrap_or("-");
                (l["prompt_id"].as_str().unwrap(), l["messages"][1]["content"].as_str().unwrap(), replies)
            })
            .collect();
        assert_eq!(
            targets,
            [
                ("harm", REFUSAL, "revision"),
                ("benign", "benign 1", "answer"),
                ("sampled", REFUSAL, "sample"),
                ("plain", "Sure, here it is.", "-"),
                ("long", CUT_OFF, "answer"),
                ("drawn", REFUSAL, "draw"),
            ]
        );
        let prefs = lines(&dir.path().join(PREFS_FILE));
        let pairs: Vec<(&str, &str, &str, &Value)> = prefs
            .iter()
            .map(|l| {
                let id = l["prompt_id"].as_str().unwrap();
                let chosen = l["chosen"][0]["content"].as_str().unwrap();
                (id, chosen, l["provenance"]["source"].as_str().unwrap(), &l["provenance"]["replies"])
            })
            .collect();
        let replies = |chosen: &str, rejected: &str| serde_json::json!([chosen, rejected]);
        assert_eq!(pairs[0], ("harm", REFUSAL, "expected", &replies("revision", "answer")));
        assert_eq!(pairs[1], ("benign", "benign 1", "expected", &replies("answer", "revision")));
        assert_eq!(pairs[2], ("sampled", REFUSAL, "expected", &replies("sample", "revision")));
        // Neither sample of `hopeless` refuses, so its AI-feedback pair is dropped; `plain` keeps its.
        assert_eq!(pairs[3].0, "plain");
        assert_eq!(pairs[3].2, "feedback");
        assert_eq!(pairs[5], ("drawn", REFUSAL, "expected", &replies("draw", "revision")));
        assert_eq!(pairs.len(), 6);
        assert_eq!(prefs[1]["rejected"][0]["content"], REFUSAL);
        assert_eq!(manifest.counts.filtered["revision-missed-expected"], 4);
        assert_eq!(manifest.counts.filtered["expected-missed"], 1);
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
        zero.settings.rounds = 1;
        zero.settings.generation.max_new_tokens = 0;
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut |_| {});
        assert_eq!(err.unwrap_err().to_string(), "setting `max new tokens` must be at least 1");
        zero.settings.generation.max_new_tokens = 16;
        zero.settings.draws = Some(DrawConfig { count: 0, ..DrawConfig::default() });
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut |_| {});
        assert_eq!(err.unwrap_err().to_string(), "setting `draws` must be at least 1");
        let mut greedy = DrawConfig::default();
        greedy.settings.temperature = 0.0;
        zero.settings.draws = Some(greedy);
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut |_| {});
        assert_eq!(
            err.unwrap_err().to_string(),
            "setting `draw temperature` must be positive (greedy draws would all be the same answer)"
        );
        let mut empty = DrawConfig::default();
        empty.settings.max_new_tokens = 0;
        zero.settings.draws = Some(empty);
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut |_| {});
        assert_eq!(err.unwrap_err().to_string(), "setting `draw max new tokens` must be at least 1");
        assert!(!dir.path().join(MANIFEST_FILE).exists());
    }
}
