//! The critique → revision loop over a [`Generate`].
//!
//! For each prompt the model first answers the prompt's turns alone (its natural reply); then the
//! conversation grows, through the model's chat template, as
//!
//! ```text
//! [system]  few-shot examples as prior turns  prompt turns
//! assistant: answer                                    (as generated above)
//! user: critique request of the sampled principle      ┐
//! assistant: critique                                  │ once per round
//! user: revision request of the same principle         │
//! assistant: revision                                  ┘
//! ```
//!
//! Every stage is one batched [`Generate::generate`] call over all prompts still alive; a reply
//! that [`filter::check`](crate::filter::check) finds degenerate drops its prompt with the reason.

use precept_data::{FinishReason, Generate, GenerateSettings, Message, Reply, Role};
use serde::{Deserialize, Serialize};

use crate::constitution::{Constitution, Principle};
use crate::error::{ConstitutionError, Result};
use crate::filter::{check, copies_earlier, Degenerate};
use crate::prompts::PromptRecord;
use crate::sample::{sample_weighted, SplitMix64};

/// Settings of the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopConfig {
    /// Critique → revision rounds per prompt (0: the answer only).
    pub rounds: usize,
    /// Seed of principle sampling.
    pub seed: u64,
    /// Decoding settings of every generation.
    pub settings: GenerateSettings,
    /// Show the constitution's examples as prior turns.
    pub few_shot: bool,
    /// Use this principle in every round instead of sampling (for authoring).
    pub principle: Option<String>,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self { rounds: 1, seed: 0, settings: GenerateSettings::default(), few_shot: true, principle: None }
    }
}

/// One critique → revision round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    /// The principle's id.
    pub principle: String,
    /// The model's critique.
    pub critique: String,
    /// The model's revision.
    pub revision: String,
}

/// Where in the loop a reply was filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The first answer.
    Answer,
    /// A critique.
    Critique,
    /// A revision.
    Revision,
}

impl Stage {
    /// The lowercase name used in outputs and counts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Critique => "critique",
            Self::Revision => "revision",
        }
    }
}

/// What the loop made of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Revised {
    /// Every round produced a usable critique and revision.
    Done {
        /// The answer that was critiqued first.
        answer: String,
        /// Whether the answer ended its turn (a cut-off one is critiqued but not trained on).
        answer_complete: bool,
        /// The rounds, in order; the last revision is the final answer.
        rounds: Vec<Round>,
    },
    /// A reply was degenerate.
    Filtered {
        /// Which reply.
        stage: Stage,
        /// The round it was in (0 for the answer).
        round: usize,
        /// Why.
        reason: Degenerate,
        /// The degenerate reply's text.
        text: String,
        /// The answer, when the answer was not what failed.
        answer: Option<String>,
        /// Whether that answer ended its turn.
        answer_complete: bool,
        /// The rounds completed before the failure.
        rounds: Vec<Round>,
        /// When a revision failed, its round, with the failed reply as the revision.
        unfinished: Option<Round>,
    },
}

/// Maps a generator's error into this crate's.
pub(crate) fn generator_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> ConstitutionError {
    ConstitutionError::Generate(Box::new(error))
}

/// Calls `generator` and checks that it answered every conversation.
pub(crate) fn generate_checked<G: Generate>(
    generator: &mut G,
    conversations: &[Vec<Message>],
    settings: &GenerateSettings,
) -> Result<Vec<Reply>> {
    if conversations.is_empty() {
        return Ok(Vec::new());
    }
    let replies = generator.generate(conversations, settings).map_err(generator_error)?;
    if replies.len() != conversations.len() {
        return Err(ConstitutionError::GeneratorCount { expected: conversations.len(), got: replies.len() });
    }
    Ok(replies)
}

/// The principle of `prompt_id` in `round`: the fixed one, or one sampled by weight.
pub fn choose_principle<'c>(
    constitution: &'c Constitution,
    config: &LoopConfig,
    prompt_id: &str,
    round: usize,
) -> Result<&'c Principle> {
    if let Some(id) = &config.principle {
        return constitution.principle(id);
    }
    let weights: Vec<f64> = constitution.principles.iter().map(|p| p.weight).collect();
    let mut rng = SplitMix64::for_choice(config.seed, prompt_id, round);
    sample_weighted(&weights, &mut rng)
        .and_then(|index| constitution.principles.get(index))
        .ok_or_else(|| ConstitutionError::NoPrinciples { constitution: constitution.name.clone() })
}

/// The constitution's examples as prior turns (six messages each).
pub fn few_shot_turns(constitution: &Constitution) -> Vec<Message> {
    let mut turns = Vec::new();
    for example in &constitution.examples {
        let principle = example
            .principle
            .as_deref()
            .and_then(|id| constitution.principles.iter().find(|p| p.id == id))
            .or(constitution.principles.first());
        let Some(principle) = principle else { continue };
        turns.extend([
            Message::user(&example.prompt),
            Message::assistant(&example.response),
            Message::user(&principle.critique),
            Message::assistant(&example.critique),
            Message::user(&principle.revision),
            Message::assistant(&example.revision),
        ]);
    }
    turns
}

/// The conversation before the answer: the prompt's system message, then `few_shot`, then the
/// prompt's turns up to the answer.
pub fn opening(prompt: &PromptRecord, few_shot: &[Message]) -> Vec<Message> {
    let context = prompt.context();
    let system = context.iter().take_while(|m| m.role == Role::System).count();
    let mut conversation = context[..system].to_vec();
    conversation.extend_from_slice(few_shot);
    conversation.extend_from_slice(&context[system..]);
    conversation
}

/// One prompt in flight.
struct Row {
    index: usize,
    conversation: Vec<Message>,
    answer: String,
    answer_complete: bool,
    /// The text this round critiques: the answer, then each round's revision.
    current: String,
    rounds: Vec<Round>,
}

/// Runs the loop over `prompts` (one batch: every stage is one generate call) and returns one
/// outcome per prompt, in order.
///
/// # Errors
/// [`ConstitutionError::Generate`] when the generator fails, [`ConstitutionError::UnknownPrinciple`]
/// for a fixed principle that does not exist.
pub fn critique_and_revise<G: Generate>(
    generator: &mut G,
    constitution: &Constitution,
    prompts: &[PromptRecord],
    config: &LoopConfig,
) -> Result<Vec<Revised>> {
    let few_shot = if config.few_shot { few_shot_turns(constitution) } else { Vec::new() };
    let mut outcomes: Vec<Option<Revised>> = vec![None; prompts.len()];
    let mut rows: Vec<Row> = prompts
        .iter()
        .enumerate()
        .map(|(index, prompt)| Row {
            index,
            conversation: opening(prompt, &few_shot),
            answer: prompt.given_answer().unwrap_or_default().to_owned(),
            answer_complete: true,
            current: String::new(),
            rounds: Vec::new(),
        })
        .collect();

    // The answer: generated unless the prompt brings one.
    let needs: Vec<usize> = (0..rows.len()).filter(|&i| prompts[rows[i].index].given_answer().is_none()).collect();
    // The answer comes from the prompt alone, so it is the model's natural reply; the few-shot
    // demonstrations only frame the critique and the revision.
    let conversations: Vec<Vec<Message>> = needs.iter().map(|&i| prompts[rows[i].index].context().to_vec()).collect();
    let replies = generate_checked(generator, &conversations, &config.settings)?;
    for (&i, reply) in needs.iter().zip(&replies) {
        match degenerate(reply, None, Stage::Answer) {
            Some(reason) => {
                outcomes[rows[i].index] = Some(Revised::Filtered {
                    stage: Stage::Answer,
                    round: 0,
                    reason,
                    text: reply.text.clone(),
                    answer: None,
                    answer_complete: false,
                    rounds: Vec::new(),
                    unfinished: None,
                })
            }
            None => {
                rows[i].answer = reply.text.trim().to_owned();
                rows[i].answer_complete = reply.finish != FinishReason::Length;
            }
        }
    }
    rows.retain(|row| outcomes[row.index].is_none());
    for row in &mut rows {
        row.current = row.answer.clone();
    }

    for round in 0..config.rounds {
        let mut principles = Vec::with_capacity(rows.len());
        for row in &mut rows {
            let principle = choose_principle(constitution, config, &prompts[row.index].id, round)?;
            row.conversation.push(Message::assistant(&row.current));
            row.conversation.push(Message::user(&principle.critique));
            principles.push(principle);
        }
        let critiques = stage(generator, &rows, &mut outcomes, config, Stage::Critique, round)?;
        let mut kept = Vec::with_capacity(rows.len());
        for ((mut row, principle), critique) in rows.into_iter().zip(principles).zip(critiques) {
            let Some(critique) = critique else { continue };
            row.conversation.push(Message::assistant(&critique));
            row.conversation.push(Message::user(&principle.revision));
            row.rounds.push(Round { principle: principle.id.clone(), critique, revision: String::new() });
            kept.push(row);
        }
        rows = kept;
        let revisions = stage(generator, &rows, &mut outcomes, config, Stage::Revision, round)?;
        let mut kept = Vec::with_capacity(rows.len());
        for (mut row, revision) in rows.into_iter().zip(revisions) {
            let Some(revision) = revision else { continue };
            // The revision joins the conversation as the answer critiqued in the next round.
            row.current.clone_from(&revision);
            if let Some(last) = row.rounds.last_mut() {
                last.revision = revision;
            }
            kept.push(row);
        }
        rows = kept;
    }
    for row in rows {
        outcomes[row.index] =
            Some(Revised::Done { answer: row.answer, answer_complete: row.answer_complete, rounds: row.rounds });
    }
    // Every prompt was either filtered at some stage or finished all rounds, so none is `None`.
    Ok(outcomes.into_iter().flatten().collect())
}

/// Generates the next reply of every row; `None` (and a recorded outcome) where it is degenerate.
/// Why `reply`, made at `stage`, ends its prompt. A truncated answer or critique is still used:
/// the records train on the revision, which must be complete, and only quote the others; the
/// other checks still apply to what was written.
fn degenerate(reply: &Reply, revised: Option<&str>, stage: Stage) -> Option<Degenerate> {
    if reply.finish == FinishReason::Length && stage != Stage::Revision {
        return check(&Reply { finish: FinishReason::Eos, ..reply.clone() }, revised);
    }
    check(reply, revised)
}

fn stage<G: Generate>(
    generator: &mut G,
    rows: &[Row],
    outcomes: &mut [Option<Revised>],
    config: &LoopConfig,
    stage: Stage,
    round: usize,
) -> Result<Vec<Option<String>>> {
    let conversations: Vec<Vec<Message>> = rows.iter().map(|r| r.conversation.clone()).collect();
    let replies = generate_checked(generator, &conversations, &config.settings)?;
    Ok(rows
        .iter()
        .zip(replies)
        .map(|(row, reply)| {
            let revised = (stage == Stage::Revision).then_some(row.current.as_str());
            let copied = || {
                let earlier = row.conversation.iter().map(|m| m.content.as_str());
                copies_earlier(&reply.text, earlier).then_some(Degenerate::Copied)
            };
            match degenerate(&reply, revised, stage).or_else(copied) {
                Some(reason) => {
                    // A critique's round is not complete yet: it is not among the finished rounds.
                    let mut rounds = row.rounds.clone();
                    let unfinished = if stage == Stage::Revision {
                        rounds.pop().map(|round| Round { revision: reply.text.clone(), ..round })
                    } else {
                        None
                    };
                    outcomes[row.index] = Some(Revised::Filtered {
                        stage,
                        round: round + 1,
                        reason,
                        text: reply.text.clone(),
                        answer: Some(row.answer.clone()),
                        answer_complete: row.answer_complete,
                        rounds,
                        unfinished,
                    });
                    None
                }
                None => Some(reply.text.trim().to_owned()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::testing::{eos, Scripted};

    const CONSTITUTION: &str = r#"
name = "t"
[[principle]]
id = "one"
critique = "CRITIQUE one"
revision = "REVISE one"
[[principle]]
id = "two"
critique = "CRITIQUE two"
revision = "REVISE two"
weight = 3
[[example]]
principle = "two"
prompt = "EX prompt"
response = "EX response"
critique = "EX critique"
revision = "EX revision"
"#;

    fn constitution() -> Constitution {
        Constitution::parse(CONSTITUTION, Path::new("t.toml")).unwrap()
    }

    /// Answers `answer to <prompt>`, critiques `critique <n>` and revises `revision <n>`, where n
    /// counts the critique requests so far.
    fn script(messages: &[Message]) -> Reply {
        let last = &messages[messages.len() - 1].content;
        let n = messages.iter().filter(|m| m.content.starts_with("CRITIQUE")).count();
        if last.starts_with("CRITIQUE") {
            eos(&format!("critique {n}"))
        } else if last.starts_with("REVISE") {
            eos(&format!("revision {n}"))
        } else {
            eos(&format!("answer to {last}"))
        }
    }

    fn config(rounds: usize) -> LoopConfig {
        LoopConfig { rounds, ..LoopConfig::default() }
    }

    #[test]
    fn the_conversation_follows_the_documented_layout_over_two_rounds() {
        let c = constitution();
        let mut generator = Scripted::new(script);
        let config = LoopConfig { principle: Some("one".into()), ..config(2) };
        let prompts = [PromptRecord {
            id: "p".into(),
            messages: vec![Message::system("SYS"), Message::user("Q")],
            expected: None,
            refusal: None,
        }];
        let outcomes = critique_and_revise(&mut generator, &c, &prompts, &config).unwrap();
        // The answer comes from the prompt alone, without the demonstrations.
        assert_eq!(generator.batches[0][0], [Message::system("SYS"), Message::user("Q")]);
        let last_call = &generator.batches.last().unwrap()[0];
        // The few-shot example uses its own principle's requests; the script numbers critiques by
        // the critique requests in view, the example's included, so the first one is `critique 2`.
        let expected = vec![
            Message::system("SYS"),
            Message::user("EX prompt"),
            Message::assistant("EX response"),
            Message::user("CRITIQUE two"),
            Message::assistant("EX critique"),
            Message::user("REVISE two"),
            Message::assistant("EX revision"),
            Message::user("Q"),
            Message::assistant("answer to Q"),
            Message::user("CRITIQUE one"),
            Message::assistant("critique 2"),
            Message::user("REVISE one"),
            Message::assistant("revision 2"),
            Message::user("CRITIQUE one"),
            Message::assistant("critique 3"),
            Message::user("REVISE one"),
        ];
        assert_eq!(last_call, &expected);
        let rounds = vec![
            Round { principle: "one".into(), critique: "critique 2".into(), revision: "revision 2".into() },
            Round { principle: "one".into(), critique: "critique 3".into(), revision: "revision 3".into() },
        ];
        assert_eq!(outcomes, [Revised::Done { answer: "answer to Q".into(), answer_complete: true, rounds }]);
    }

    #[test]
    fn every_stage_is_one_batched_call_over_all_live_prompts() {
        let c = constitution();
        let mut generator = Scripted::new(script);
        let prompts: Vec<PromptRecord> = (0..5).map(|i| PromptRecord::user(format!("p{i}"), format!("Q{i}"))).collect();
        let outcomes =
            critique_and_revise(&mut generator, &c, &prompts, &LoopConfig { few_shot: false, ..config(3) }).unwrap();
        let sizes: Vec<usize> = generator.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [5; 7]);
        for (i, outcome) in outcomes.iter().enumerate() {
            let Revised::Done { answer, rounds, .. } = outcome else { panic!("{outcome:?}") };
            assert_eq!(answer, &format!("answer to Q{i}"));
            assert_eq!(rounds.len(), 3);
        }
    }

    #[test]
    fn a_multi_turn_prompt_ending_with_the_assistant_has_that_turn_critiqued() {
        let c = constitution();
        let mut generator = Scripted::new(script);
        let messages =
            vec![Message::user("Q1"), Message::assistant("A1"), Message::user("Q2"), Message::assistant("A2")];
        let prompts = [PromptRecord { id: "m".into(), messages, expected: None, refusal: None }];
        let config = LoopConfig { few_shot: false, principle: Some("two".into()), ..config(1) };
        let outcomes = critique_and_revise(&mut generator, &c, &prompts, &config).unwrap();
        // No answer was generated: the first call already asks for the critique of A2.
        assert_eq!(generator.batches.len(), 2);
        let first = &generator.batches[0][0];
        assert_eq!(&first[first.len() - 2..], &[Message::assistant("A2"), Message::user("CRITIQUE two")]);
        let Revised::Done { answer, .. } = &outcomes[0] else { panic!() };
        assert_eq!(answer, "A2");
    }

    #[test]
    fn degenerate_replies_drop_their_prompt_with_stage_and_reason() {
        let c = constitution();
        let mut generator = Scripted::new(|messages: &[Message]| {
            let prompt = messages.iter().find(|m| m.role == Role::User).unwrap().content.clone();
            let last = &messages[messages.len() - 1].content;
            let stage = if last.starts_with("CRITIQUE") {
                "c"
            } else if last.starts_with("REVISE") {
                "r"
            } else {
                "a"
            };
            match (prompt.as_str(), stage) {
                ("empty", "a") => eos(" "),
                ("cut", "c") => {
                    Reply { text: "a critique that".into(), token_ids: vec![], finish: FinishReason::Length }
                }
                ("long", "a") => {
                    Reply { text: "an answer that".into(), token_ids: vec![], finish: FinishReason::Length }
                }
                ("loop", "r") => eos(&"sorry I can not ".repeat(8)),
                ("same", "a") => eos("Same text."),
                ("same", "r") => eos("same  text."),
                ("echo", "c") => eos(last),
                (_, "a") => eos("fine answer"),
                (_, "c") => eos("fine critique"),
                _ => eos("fine revision"),
            }
        });
        let prompts: Vec<PromptRecord> = ["empty", "cut", "loop", "same", "good", "echo", "long"]
            .iter()
            .map(|p| PromptRecord::user(*p, *p))
            .collect();
        let outcomes =
            critique_and_revise(&mut generator, &c, &prompts, &LoopConfig { few_shot: false, ..config(1) }).unwrap();
        let reasons: Vec<Option<(Stage, usize, Degenerate)>> = outcomes
            .iter()
            .map(|o| match o {
                Revised::Filtered { stage, round, reason, .. } => Some((*stage, *round, *reason)),
                Revised::Done { .. } => None,
            })
            .collect();
        assert_eq!(reasons[0], Some((Stage::Answer, 0, Degenerate::Empty)));
        assert_eq!(reasons[1], None, "a truncated critique still leads to a revision");
        assert_eq!(reasons[2], Some((Stage::Revision, 1, Degenerate::Repetitive)));
        assert_eq!(reasons[3], Some((Stage::Revision, 1, Degenerate::Unrevised)));
        assert_eq!(reasons[5], Some((Stage::Critique, 1, Degenerate::Copied)));
        // The filtered outcome keeps what was made before and the degenerate text.
        let Revised::Filtered { text, answer, rounds, .. } = &outcomes[5] else { panic!() };
        assert_eq!((answer.as_deref(), rounds.len()), (Some("fine answer"), 0));
        assert!(!text.is_empty(), "the copied critique is kept");
        let Revised::Filtered { text, unfinished, .. } = &outcomes[3] else { panic!() };
        assert_eq!(text, "same  text.");
        let unfinished = unfinished.as_ref().expect("a failed revision keeps its round");
        assert_eq!((unfinished.critique.is_empty(), unfinished.revision.as_str()), (false, "same  text."));
        assert!(matches!(outcomes[4], Revised::Done { .. }));
        // A truncated answer is not degenerate: it is critiqued and revised like any other, and
        // marked so that no record trains on it.
        assert!(matches!(outcomes[6], Revised::Done { answer_complete: false, .. }), "{:?}", outcomes[6]);
        assert!(matches!(outcomes[4], Revised::Done { answer_complete: true, .. }));
        // Filtered prompts leave the batch: 6 answers survive to the critique, 5 to the revision.
        let sizes: Vec<usize> = generator.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [7, 6, 5]);
    }

    #[test]
    fn sampled_principles_follow_the_seed_not_the_batch() {
        let c = constitution();
        let prompts: Vec<PromptRecord> = (0..12).map(|i| PromptRecord::user(format!("p{i}"), "Q")).collect();
        let principles = |prompts: &[PromptRecord], seed| -> Vec<String> {
            let mut generator = Scripted::new(script);
            let config = LoopConfig { seed, few_shot: false, ..config(2) };
            critique_and_revise(&mut generator, &c, prompts, &config)
                .unwrap()
                .into_iter()
                .flat_map(|o| match o {
                    Revised::Done { rounds, .. } => rounds.into_iter().map(|r| r.principle).collect(),
                    Revised::Filtered { .. } => vec![],
                })
                .collect()
        };
        let together = principles(&prompts, 5);
        let one_by_one: Vec<String> = prompts.chunks(1).flat_map(|p| principles(p, 5)).collect();
        assert_eq!(together, one_by_one);
        assert_ne!(together, principles(&prompts, 6));
        assert!(together.contains(&"one".to_owned()) && together.contains(&"two".to_owned()));
    }

    #[test]
    fn a_constitution_without_principles_to_sample_is_an_error() {
        let mut c = constitution();
        c.principles.clear();
        let err = critique_and_revise(&mut Scripted::new(script), &c, &[PromptRecord::user("p", "Q")], &config(1));
        assert_eq!(err.unwrap_err().to_string(), "constitution `t` has no principle with a positive weight to sample");
    }

    #[test]
    fn a_fixed_principle_that_does_not_exist_is_an_error() {
        let mut generator = Scripted::new(script);
        let config = LoopConfig { principle: Some("three".into()), ..config(1) };
        let err = critique_and_revise(&mut generator, &constitution(), &[PromptRecord::user("p", "Q")], &config);
        assert_eq!(err.unwrap_err().to_string(), "no principle `three` in constitution `t` (it has one, two)");
    }
}
