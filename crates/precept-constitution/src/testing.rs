//! A scripted [`Generate`] for tests: replies come from a closure over the conversation, and every
//! batch is recorded.

use std::path::Path;

use serde_json::Value;

use precept_data::{FinishReason, Generate, GenerateSettings, Message, Reply};

use crate::constitution::Constitution;
use crate::driver::{RunConfig, RunSettings};
use crate::prompts::PromptRecord;

/// A constitution `t` with one principle `p` (requests `CRITIQUE` and `REVISE`) and one
/// comparison `q`.
pub(crate) fn small_constitution() -> Constitution {
    let text = "name = \"t\"\n[[principle]]\nid = \"p\"\ncritique = \"CRITIQUE\"\nrevision = \"REVISE\"\n\
                [[comparison]]\nid = \"q\"\nquestion = \"Which?\"\n";
    Constitution::parse(text, Path::new("t.toml")).unwrap()
}

/// Makes the reply to one conversation.
type ReplyScript = Box<dyn FnMut(&[Message]) -> Reply>;
/// Makes the option probabilities of one conversation.
type OptionScript = Box<dyn FnMut(&[Message], &[String]) -> Vec<f64>>;

/// Replies from `reply`, option probabilities from `options`; `batches` records each call.
pub(crate) struct Scripted {
    pub reply: ReplyScript,
    pub options: OptionScript,
    pub batches: Vec<Vec<Vec<Message>>>,
    pub settings: Vec<GenerateSettings>,
    /// Fail the generate call with this index (0-based), as a crashing backend would.
    pub fail_at: Option<usize>,
}

impl Scripted {
    pub fn new(reply: impl FnMut(&[Message]) -> Reply + 'static) -> Self {
        Self {
            reply: Box::new(reply),
            options: Box::new(|_, options| vec![1.0 / options.len() as f64; options.len()]),
            batches: Vec::new(),
            settings: Vec::new(),
            fail_at: None,
        }
    }
}

/// A reply that ended its turn.
pub(crate) fn eos(text: &str) -> Reply {
    Reply { text: text.to_owned(), token_ids: Vec::new(), finish: FinishReason::Eos }
}

impl Generate for Scripted {
    type Error = std::io::Error;

    fn generate(
        &mut self,
        conversations: &[Vec<Message>],
        settings: &GenerateSettings,
    ) -> Result<Vec<Reply>, Self::Error> {
        if self.fail_at == Some(self.settings.len()) {
            return Err(std::io::Error::other("scripted failure"));
        }
        self.batches.push(conversations.to_vec());
        self.settings.push(settings.clone());
        Ok(conversations.iter().map(|c| (self.reply)(c)).collect())
    }

    fn option_probabilities(
        &mut self,
        conversations: &[Vec<Message>],
        options: &[String],
    ) -> Result<Vec<Vec<f64>>, Self::Error> {
        self.batches.push(conversations.to_vec());
        Ok(conversations.iter().map(|c| (self.options)(c, options)).collect())
    }
}

/// Revisions differ from answers; the answer to `bad` is empty, so it is filtered.
pub(crate) fn run_script(messages: &[Message]) -> Reply {
    let last = &messages[messages.len() - 1].content;
    let prompt = &messages[0].content;
    match last.as_str() {
        "CRITIQUE" => eos(&format!("critique of {prompt}")),
        "REVISE" => eos(&format!("revision of {prompt}")),
        "bad" => eos(""),
        _ => eos(&format!("answer to {prompt}")),
    }
}

/// Prompts `p0`… with questions `Q0`…, then `bad`.
pub(crate) fn run_prompts(n: usize) -> Vec<PromptRecord> {
    let mut prompts: Vec<PromptRecord> = (0..n).map(|i| PromptRecord::user(format!("p{i}"), format!("Q{i}"))).collect();
    prompts.push(PromptRecord::user("bad", "bad"));
    prompts
}

/// A one-round, few-shot run with seed 9 and no feedback or draws.
pub(crate) fn run_config(out: &Path, batch: usize) -> RunConfig {
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
            record_systems: Vec::new(),
            refusal: None,
            draws: None,
        },
    }
}

/// The JSON values of a JSONL file.
pub(crate) fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
