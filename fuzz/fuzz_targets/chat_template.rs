//! Arbitrary text as a chat template, rendered over a short conversation: text or an error
//! (the sandbox's fuel and size limits included), never a panic or a hang.

#![no_main]

use libfuzzer_sys::fuzz_target;
use precept_data::{ChatTemplate, Message, SpecialTokens};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(template) = ChatTemplate::new(source, "chat_template.jinja", SpecialTokens::default()) else { return };
    let conversation = [Message::system("Be brief."), Message::user("Hi"), Message::assistant("Hello")];
    let _ = template.render(&conversation, true);
    let _ = template.render(&conversation[..2], false);
});
