//! [`ReplyText`]: the text of a reply as its tokens arrive, for streaming and stop strings.

use crate::token_stream::TokenStream;
use crate::tokenizer::Tokenizer;

/// Decodes a growing reply: new text fragments for streaming, and whether a stop string has
/// appeared. Special tokens are left out of the text.
pub struct ReplyText<'a> {
    tokenizer: &'a Tokenizer,
    stream: TokenStream<'a>,
    ids: Vec<u32>,
    stop: &'a [String],
    pending: String,
}

impl<'a> ReplyText<'a> {
    /// An empty reply that ends before any of `stop`.
    pub fn new(tokenizer: &'a Tokenizer, stop: &'a [String]) -> Self {
        Self { tokenizer, stream: tokenizer.stream(true), ids: Vec::new(), stop, pending: String::new() }
    }

    /// Adds a token; returns whether a stop string now appears in the text.
    pub fn push(&mut self, token: u32) -> bool {
        self.ids.push(token);
        if let Ok(Some(fragment)) = self.stream.step(token) {
            self.pending.push_str(&fragment);
        }
        !self.stop.is_empty() && self.stop.iter().any(|s| self.text().contains(s.as_str()))
    }

    /// Text decoded since the last call.
    pub fn take_fragment(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// The whole text, cut before the first stop string.
    pub fn final_text(&self) -> String {
        let text = self.text();
        let cut = self.stop.iter().filter_map(|s| text.find(s.as_str())).min().unwrap_or(text.len());
        text[..cut].to_owned()
    }

    fn text(&self) -> String {
        // Ids come from the model's own vocabulary; a decode failure leaves the text empty.
        self.tokenizer.decode(&self.ids, true).unwrap_or_default()
    }
}
