//! Test helpers: [`Scripted`], a [`Generate`] stand-in answering from a script keyed by text,
//! [`Scripts`], which opens one per model folder, and [`with_file`] for reading fixtures written on the spot.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use precept_data::{FinishReason, Generate, GenerateSettings, Message, ModelSource, Reply};

use crate::open::OpenModel;

/// Replies and option probabilities chosen by substring of the conversation's last message.
///
/// Unscripted conversations get the reply `"Sure, here is how."` and uniform probabilities.
/// Every conversation it is asked about is recorded in `seen`.
#[derive(Debug, Default, Clone)]
pub struct Scripted {
    replies: Vec<(String, String)>,
    options: Vec<(String, Vec<f64>)>,
    /// When a conversation's system prompt contains a key, the reply is the value.
    pub by_system: HashMap<String, String>,
    /// Replies for conversations without a system prompt, chosen before the others.
    unprompted: Vec<(String, String)>,
    /// Conversations received by `generate`, in order.
    pub seen: Vec<Vec<Message>>,
    /// A log shared by every copy: each conversation received, in order (copies opened by
    /// [`Scripts`] report here).
    pub log: Rc<RefCell<Vec<Vec<Message>>>>,
}

impl Scripted {
    /// Replies `reply` when the last message contains `key`.
    pub fn with_reply(mut self, key: &str, reply: &str) -> Self {
        self.replies.push((key.into(), reply.into()));
        self
    }

    /// Replies `reply` when the last message contains `key` and no system prompt comes first.
    pub fn with_unprompted_reply(mut self, key: &str, reply: &str) -> Self {
        self.unprompted.push((key.into(), reply.into()));
        self
    }

    /// Gives `probabilities` when the last message contains `key`.
    pub fn with_options(mut self, key: &str, probabilities: Vec<f64>) -> Self {
        self.options.push((key.into(), probabilities));
        self
    }

    fn reply_to(&self, conversation: &[Message]) -> String {
        let system = conversation.iter().find(|m| m.role == precept_data::Role::System);
        if let Some(system) = system {
            if let Some((_, reply)) = self.by_system.iter().find(|(key, _)| system.content.contains(key.as_str())) {
                return reply.clone();
            }
        }
        let last = conversation.last().map_or("", |m| m.content.as_str());
        let unprompted = self.unprompted.iter().filter(|_| system.is_none());
        unprompted
            .chain(&self.replies)
            .find(|(key, _)| last.contains(key.as_str()))
            .map_or_else(|| "Sure, here is how.".to_owned(), |(_, reply)| reply.clone())
    }
}

impl Generate for Scripted {
    type Error = Infallible;

    fn generate(&mut self, conversations: &[Vec<Message>], _: &GenerateSettings) -> Result<Vec<Reply>, Infallible> {
        self.seen.extend(conversations.iter().cloned());
        self.log.borrow_mut().extend(conversations.iter().cloned());
        Ok(conversations
            .iter()
            .map(|c| Reply { text: self.reply_to(c), token_ids: Vec::new(), finish: FinishReason::Eos })
            .collect())
    }

    fn option_probabilities(
        &mut self,
        conversations: &[Vec<Message>],
        options: &[String],
    ) -> Result<Vec<Vec<f64>>, Infallible> {
        Ok(conversations
            .iter()
            .map(|c| {
                let last = c.last().map_or("", |m| m.content.as_str());
                self.options
                    .iter()
                    .find(|(key, _)| last.contains(key.as_str()))
                    .map_or_else(|| vec![1.0 / options.len() as f64; options.len()], |(_, p)| p.clone())
            })
            .collect())
    }
}

/// Opens a copy of each folder's [`Scripted`] and records what it was asked to open (by its
/// printed name); anything else fails with `no such model`.
#[derive(Debug, Default)]
pub struct Scripts {
    /// The script of each model folder.
    pub by_folder: HashMap<PathBuf, Scripted>,
    /// Every model asked for, in order.
    pub opened: Vec<String>,
}

impl OpenModel for Scripts {
    type Generator = Scripted;
    type Error = io::Error;

    fn open(&mut self, model: &ModelSource) -> Result<Scripted, io::Error> {
        self.opened.push(model.to_string());
        let script = model.folder().and_then(|dir| self.by_folder.get(dir));
        script.cloned().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such model"))
    }
}

/// Writes `text` to a temporary file called `name`, runs `read` on it and returns its result with
/// errors as text, the temporary folder shown as nothing so messages start with `name`.
pub fn with_file<T>(name: &str, text: &str, read: impl FnOnce(&Path) -> crate::Result<T>) -> Result<T, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    read(&path).map_err(|e| e.to_string().replace(&path.display().to_string(), name))
}
