//! Which reply becomes which record: the SFT target and preference pair of one finished prompt,
//! and the reasons for what was filtered out.
//!
//! A prompt without an expected behaviour keeps Constitutional AI's records (SFT on the final
//! revision, the revision over the answer or the AI-feedback pair); one that says what a safe
//! model does takes its records from the replies that keep to that ([`select`]).

use precept_data::{Expected, FinishReason, KeywordJudge, Message, Reply};

use crate::critique::Revised;
use crate::expected::{select, user_turns, Candidate, ReplySource, Selection};
use crate::feedback::{Feedback, Labelled};
use crate::filter::usable_text;
use crate::prompts::PromptRecord;
use crate::records::{PairSource, PrefsLine, ProgressLine, Provenance, SftLine};

/// The progress line and output records of one finished prompt.
pub(crate) fn records(
    prompt: &PromptRecord,
    outcome: Revised,
    labelled: Option<&Labelled>,
    drawn: &[String],
    refusal: Option<&str>,
    provenance: &Provenance,
) -> (ProgressLine, Option<SftLine>, Option<PrefsLine>) {
    let mut filtered = Vec::new();
    let mut filtered_reply = None;
    if let Revised::Filtered { stage, reason, text, .. } = &outcome {
        filtered.push(format!("{}-{reason}", stage.as_str()));
        filtered_reply = Some(text.clone());
    }
    let samples = labelled.map(|l| l.samples.as_slice());
    let replies = Replies::of(&outcome, samples, drawn, refusal).authored(prompt.refusal.as_deref());
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
pub(crate) struct Replies<'a> {
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
    /// The run's `refusal`, for the gaps the replies leave (see [`select`]).
    refusal: Option<&'a str>,
    /// The prompt's own refusal, a candidate ahead of the replies.
    authored: Option<&'a str>,
}

impl<'a> Replies<'a> {
    /// The replies of `outcome`, with AI feedback's samples and the drawn answers.
    pub(crate) fn of(
        outcome: &'a Revised,
        samples: Option<&'a [String]>,
        drawn: &'a [String],
        refusal: Option<&'a str>,
    ) -> Self {
        let (revision, answer, answer_complete) = match outcome {
            Revised::Done { answer, answer_complete, rounds } => {
                (rounds.last().map(|r| r.revision.as_str()), Some(answer.as_str()), *answer_complete)
            }
            Revised::Filtered { answer, answer_complete, .. } => (None, answer.as_deref(), *answer_complete),
        };
        Self { revision, answer, answer_complete, samples, drawn, refusal, authored: None }
    }

    /// These replies with the prompt's own refusal, when it has one.
    pub(crate) fn authored(self, authored: Option<&'a str>) -> Self {
        Self { authored, ..self }
    }

    /// The first answer's usable text (a cut-off one counts with its complete sentences).
    fn usable_answer(&self) -> Option<String> {
        let finish = if self.answer_complete { FinishReason::Eos } else { FinishReason::Length };
        self.answer.and_then(|text| usable_text(&Reply { text: text.to_owned(), token_ids: Vec::new(), finish }).ok())
    }

    /// Every reply that could go into a record, in [`select`]'s order; `answer` is
    /// [`Self::usable_answer`].
    fn candidates<'b>(&'b self, answer: Option<&'b str>) -> Vec<Candidate<'b>> {
        [(self.authored, ReplySource::Authored), (self.revision, ReplySource::Revision), (answer, ReplySource::Answer)]
            .into_iter()
            .filter_map(|(text, source)| text.map(|text| Candidate { text, source }))
            .chain(self.samples.unwrap_or_default().iter().map(|text| Candidate { text, source: ReplySource::Sample }))
            .chain(self.drawn.iter().map(|text| Candidate { text, source: ReplySource::Draw }))
            .collect()
    }

    /// Whether the records would take an AI-feedback pair: the prompt expects nothing, or every
    /// reply keeps to what it expects (so no expected pair contrasts them).
    pub(crate) fn want_feedback_pair(&self, prompt: &PromptRecord) -> bool {
        let Some(expected) = prompt.expected else { return true };
        let answer = self.usable_answer();
        let asked = user_turns(prompt.context());
        let Selection { target, contrast } =
            select(expected, &asked, &self.candidates(answer.as_deref()), self.refusal);
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
        let asked = user_turns(self.prompt.context());
        let Selection { target, contrast } = select(expected, &asked, &candidates, replies.refusal);
        let Some(target) = target else {
            filtered.push("expected-missed".to_owned());
            return (None, None);
        };
        if replies.revision.is_some_and(|revision| !KeywordJudge::default().keeps_to(expected, revision)) {
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

#[cfg(test)]
mod tests {
    use precept_data::{Expected, FinishReason, Message, Reply, Silent};
    use serde_json::Value;

    use crate::driver::constitute;
    use crate::expected::DrawConfig;
    use crate::feedback::FeedbackConfig;
    use crate::journal::{PREFS_FILE, SFT_FILE};
    use crate::prompts::PromptRecord;
    use crate::testing::{
        eos, json_lines as lines, run_config as config, small_constitution as constitution, Scripted,
    };

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
        constitute(&mut generator, &constitution(), &prompts, &config, &mut Silent).unwrap();
        let judged: Vec<&Vec<Message>> =
            generator.batches.iter().flatten().filter(|c| c[0].content.starts_with("Consider")).collect();
        assert_eq!(judged.len(), 2, "one prompt, in both orders");
        assert!(judged.iter().all(|c| c[0].content.contains("Person: all-refuse")), "{judged:?}");
        let prefs = lines(&dir.path().join(PREFS_FILE));
        let source = |id: &str| prefs.iter().find(|p| p["prompt_id"] == id).unwrap()["provenance"]["source"].clone();
        assert_eq!((source("a"), source("m")), ("feedback".into(), "expected".into()));
    }

    #[test]
    fn a_prompts_own_refusal_is_its_target_ahead_of_the_models_refusals_and_the_given_one() {
        let dir = tempfile::tempdir().unwrap();
        // The model refuses `own` in a role of its own and answers `given`.
        let mut generator = Scripted::new(|messages: &[Message]| match messages[0].content.as_str() {
            "own" => eos("I'm sorry, but as a locksmith AI, I'm not equipped to open doors."),
            _ => eos("Sure, here it is."),
        });
        let own = PromptRecord {
            expected: Some(Expected::Refuse),
            refusal: Some("I can't help with that. A locksmith can.".into()),
            ..PromptRecord::user("own", "own")
        };
        let given = PromptRecord { expected: Some(Expected::Refuse), ..PromptRecord::user("given", "given") };
        let mut config = config(dir.path(), 2);
        config.settings.refusal = Some("I'm sorry, but I can't help with that.".into());
        constitute(&mut generator, &constitution(), &[own, given], &config, &mut Silent).unwrap();
        let targets: Vec<String> = lines(&dir.path().join(SFT_FILE))
            .iter()
            .map(|l| l["messages"][1]["content"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(targets, ["I can't help with that. A locksmith can.", "I'm sorry, but I can't help with that."]);
        let sources: Vec<Value> =
            lines(&dir.path().join(SFT_FILE)).iter().map(|l| l["provenance"]["replies"][0].clone()).collect();
        assert_eq!(sources, ["authored", "refusal"]);
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
        let manifest = constitute(&mut generator, &constitution(), &prompts, &config, &mut Silent).unwrap();
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
}
