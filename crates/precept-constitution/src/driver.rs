//! [`constitute`]: prompts in batches through the loop (and AI feedback), records appended as each
//! prompt finishes, and a run manifest kept current.
//!
//! The run's settings and the loop over batches live here; which reply becomes which record is
//! [`crate::record_policy`], and the manifest that makes a run resumable is [`crate::manifest`].

use std::path::PathBuf;

use precept_data::{Generate, GenerateSettings, ProgressEvent, ProgressSink};
use serde::{Deserialize, Serialize};

use crate::constitution::Constitution;
use crate::critique::{critique_and_revise, LoopConfig};
use crate::error::{ConstitutionError, Result};
use crate::expected::{draw_answers, DrawConfig};
use crate::feedback::{judge_sampled, sample_pairs, FeedbackConfig};
use crate::journal::{Counts, Outputs, PREFS_FILE, PROGRESS_FILE, SFT_FILE};
use crate::manifest::{check_resumable, write_manifest, Manifest, MANIFEST_FILE};
use crate::prompts::PromptRecord;
use crate::record_policy::{records, Replies};
use crate::records::Provenance;

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
    /// The system messages the records of prompts without their own carry instead of `system`,
    /// one per prompt in turn (by its place in the prompts file; `""` for none): replies made
    /// under one deployment prompt then teach the same behaviour under others and under none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_systems: Vec<String>,
    /// A refusal for the gaps a prompt's replies leave: the target of a prompt to refuse that
    /// none of them refuses, the rejected side of a prompt to answer that all of them answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
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

impl RunConfig {
    /// Checks the settings against each other and the constitution.
    ///
    /// # Errors
    /// [`ConstitutionError::Setting`] or [`ConstitutionError::NoComparisons`].
    pub fn validate(&self, constitution: &Constitution) -> Result<()> {
        if self.settings.rounds == 0 && self.settings.draws.is_none() && self.settings.feedback.is_none() {
            let problem = "is 0, so `draws` or `feedback` must give the records their replies".into();
            return Err(ConstitutionError::Setting { setting: "rounds", problem });
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
/// reports to `progress` (a note when resuming, then the prompts finished after each batch). Returns the final manifest.
///
/// # Errors
/// Settings errors before any work; [`ConstitutionError::ResumeMismatch`] when the folder holds a
/// run with other settings; generator and file errors as they happen (finished prompts are kept).
pub fn constitute<G: Generate>(
    generator: &mut G,
    constitution: &Constitution,
    prompts: &[PromptRecord],
    config: &RunConfig,
    progress: &mut dyn ProgressSink,
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
    // Each prompt as it is asked, and as its records write it.
    let (todo, written): (Vec<PromptRecord>, Vec<PromptRecord>) = prompts
        .iter()
        .enumerate()
        .filter(|(_, p)| !outputs.is_finished(&p.id))
        .map(|(index, p)| {
            let asked = match &config.settings.system {
                Some(system) => p.with_default_system(system),
                None => p.clone(),
            };
            let systems = &config.settings.record_systems;
            let written =
                if systems.is_empty() { asked.clone() } else { p.with_default_system(&systems[index % systems.len()]) };
            (asked, written)
        })
        .unzip();
    let finished_before = (prompts.len() - todo.len()) as u64;
    if finished_before > 0 {
        progress.report(ProgressEvent::Note(&format!(
            "resuming: {finished_before} of {} prompts already finished",
            prompts.len()
        )));
    }
    let total = prompts.len() as u64;
    progress.report(ProgressEvent::Start { phase: "constitute", unit: "prompts", total, done: finished_before });
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
    let refusal = config.settings.refusal.as_deref();
    for (batch, written) in todo.chunks(config.batch).zip(written.chunks(config.batch)) {
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
                        Replies::of(&revised[i], Some(&samples), &drawn[i], refusal)
                            .authored(batch[i].refusal.as_deref())
                            .want_feedback_pair(&batch[i])
                    })
                    .collect();
                Some(judge_sampled(generator, constitution, batch, sampled, &wanted, feedback)?)
            }
            _ => None,
        };
        for (i, (prompt, outcome)) in written.iter().zip(revised).enumerate() {
            let labelled = feedback.as_ref().and_then(|labelled| labelled.get(i));
            let (line, sft, prefs) = records(prompt, outcome, labelled, &drawn[i], refusal, &provenance);
            outputs.append(line, sft.as_ref(), prefs.as_ref())?;
        }
        manifest.counts = outputs.counts().clone();
        write_manifest(&manifest_path, &manifest)?;
        progress.report(ProgressEvent::Advance { done: manifest.counts.finished as u64, metrics: None });
    }
    outputs.sync()?;
    manifest.complete = prompts.iter().all(|p| outputs.is_finished(&p.id));
    write_manifest(&manifest_path, &manifest)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::path::Path;

    use precept_data::SftReader;
    use serde_json::Value;

    use precept_data::Silent;

    use super::*;
    use crate::testing::{
        eos, json_lines as lines, run_config as config, run_prompts as prompts, run_script as script,
        small_constitution as constitution, Scripted,
    };

    #[test]
    fn a_run_writes_trl_records_with_provenance_and_a_manifest_with_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut generator = Scripted::new(script);
        let manifest =
            constitute(&mut generator, &constitution(), &prompts(3), &config(dir.path(), 2), &mut Silent).unwrap();
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
        let err = constitute(&mut failing, &constitution(), &prompts(3), &config(dir.path(), 2), &mut Silent);
        assert!(err.unwrap_err().to_string().contains("scripted failure"));
        assert_eq!(lines(&dir.path().join(SFT_FILE)).len(), 2);
        let mut generator = Scripted::new(script);
        let manifest =
            constitute(&mut generator, &constitution(), &prompts(3), &config(dir.path(), 2), &mut Silent).unwrap();
        // Only the two unfinished prompts were generated again.
        assert_eq!(generator.batches[0].len(), 2);
        assert!(manifest.complete);
        let ids: Vec<Value> = lines(&dir.path().join(SFT_FILE)).iter().map(|l| l["prompt_id"].clone()).collect();
        assert_eq!(ids, ["p0", "p1", "p2"]);
        assert_eq!(manifest.counts.finished, 4);
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
        let manifest = constitute(&mut generator, &constitution(), &prompts(2), &config, &mut Silent).unwrap();
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
            constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &config(dir.path(), 1), &mut Silent);
        let err = err.unwrap_err().to_string();
        assert!(err.ends_with("was not written by precept constitute, so choose another --out"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join(SFT_FILE)).unwrap(), "{\"messages\":[]}\n");
    }

    #[test]
    fn without_rounds_the_draws_give_the_records_and_each_prompt_takes_a_record_system_in_turn() {
        const REFUSAL: &str = "I'm sorry, but I can't help with that.";
        let dir = tempfile::tempdir().unwrap();
        // The answers (the first three calls) comply; the drawn answers refuse. Nothing is critiqued.
        let mut calls = 0;
        let mut generator = Scripted::new(move |messages: &[precept_data::Message]| {
            calls += 1;
            assert_eq!(messages[0].content, "Deploy.", "every prompt is asked under `system`");
            if calls <= 3 {
                eos(&format!("Sure: {}", messages[1].content))
            } else {
                eos(REFUSAL)
            }
        });
        let mut prompts = prompts(3);
        prompts.pop();
        for prompt in &mut prompts {
            prompt.expected = Some(precept_data::Expected::Refuse);
        }
        let mut config = config(dir.path(), 8);
        config.settings.rounds = 0;
        config.settings.system = Some("Deploy.".into());
        config.settings.record_systems = vec![String::new(), "Other.".into()];
        config.settings.draws = Some(DrawConfig { count: 1, ..DrawConfig::default() });
        let manifest = constitute(&mut generator, &constitution(), &prompts, &config, &mut Silent).unwrap();
        assert_eq!((manifest.counts.sft, manifest.counts.prefs), (3, 3));
        assert!(generator.batches.iter().flatten().all(|c| c.len() == 2), "no critique, no revision");
        let sft = lines(&dir.path().join(SFT_FILE));
        let firsts: Vec<&str> = sft.iter().map(|l| l["messages"][0]["content"].as_str().unwrap()).collect();
        assert_eq!(firsts, ["Q0", "Other.", "Q2"], "none, `Other.`, none in turn");
        assert!(sft.iter().all(|l| l["messages"].as_array().unwrap().last().unwrap()["content"] == REFUSAL));
        let prefs = lines(&dir.path().join(PREFS_FILE));
        assert_eq!(prefs[1]["prompt"][0]["content"], "Other.");
        assert_eq!(prefs[0]["rejected"][0]["content"], "Sure: Q0");
    }

    #[test]
    fn bad_settings_fail_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut zero = config(dir.path(), 0);
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut Silent);
        assert_eq!(err.unwrap_err().to_string(), "setting `batch` must be at least 1");
        zero.batch = 1;
        zero.settings.rounds = 0;
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut Silent);
        let expected = "setting `rounds` is 0, so `draws` or `feedback` must give the records their replies";
        assert_eq!(err.unwrap_err().to_string(), expected);
        zero.settings.rounds = 1;
        zero.settings.generation.max_new_tokens = 0;
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut Silent);
        assert_eq!(err.unwrap_err().to_string(), "setting `max new tokens` must be at least 1");
        zero.settings.generation.max_new_tokens = 16;
        zero.settings.draws = Some(DrawConfig { count: 0, ..DrawConfig::default() });
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut Silent);
        assert_eq!(err.unwrap_err().to_string(), "setting `draws` must be at least 1");
        let mut greedy = DrawConfig::default();
        greedy.settings.temperature = 0.0;
        zero.settings.draws = Some(greedy);
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut Silent);
        assert_eq!(
            err.unwrap_err().to_string(),
            "setting `draw temperature` must be positive (greedy draws would all be the same answer)"
        );
        let mut empty = DrawConfig::default();
        empty.settings.max_new_tokens = 0;
        zero.settings.draws = Some(empty);
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &zero, &mut Silent);
        assert_eq!(err.unwrap_err().to_string(), "setting `draw max new tokens` must be at least 1");
        assert!(!dir.path().join(MANIFEST_FILE).exists());
    }
}
