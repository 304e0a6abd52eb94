//! A scripted [`Generate`] for tests: replies come from a closure over the conversation, and every
//! batch is recorded.

use std::path::Path;

use precept_data::{FinishReason, Generate, GenerateSettings, Message, Reply};

use crate::constitution::Constitution;

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
