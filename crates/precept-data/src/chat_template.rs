//! Chat templates: a model's Jinja `chat_template` rendered with minijinja exactly as
//! transformers' `apply_chat_template` renders it with Jinja2.
//!
//! The environment copies transformers' settings (`trim_blocks`, `lstrip_blocks`, loop
//! controls, `raise_exception`, `strftime_now`, a `json.dumps` `tojson`) and adds Python's
//! string methods and `str()` output so that real templates produce the same bytes. Templates
//! come from model folders, so they run sandboxed: no loader (no `include`/`import` of files)
//! and a fuel budget that stops runaway loops.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value};
use minijinja::{AutoEscape, Environment};

use crate::error::{DataError, Result};
use crate::message::{Message, Role};
use crate::python_compat::{self, RaisedException};
use crate::special_tokens::SpecialTokens;

/// The name the template is registered under; engine errors say `(in chat_template:LINE)`.
const TEMPLATE_NAME: &str = "chat_template";

/// Engine instructions one render may execute. Real templates need a few hundred per message;
/// this stops a hostile template in seconds without limiting any real conversation.
const FUEL: u64 = 20_000_000;

/// A compiled chat template together with the special tokens it may refer to.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    path: PathBuf,
    special_tokens: SpecialTokens,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("path", &self.path)
            .field("special_tokens", &self.special_tokens)
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `path` names where it came from in every error.
    ///
    /// # Errors
    /// [`DataError::TemplateSyntax`] when the template does not parse.
    pub fn new(source: &str, path: impl Into<PathBuf>, special_tokens: SpecialTokens) -> Result<Self> {
        let path = path.into();
        let mut env = environment();
        let compiled = rewrite_generation_tags(source).into_owned();
        env.add_template_owned(TEMPLATE_NAME, compiled)
            .map_err(|error| DataError::TemplateSyntax { path: path.clone(), error })?;
        Ok(Self { env, source: source.to_owned(), path, special_tokens })
    }

    /// Renders `messages` to the model's prompt text; `add_generation_prompt` appends the
    /// header that opens the assistant's next turn.
    ///
    /// # Errors
    /// [`DataError::TemplateRaised`] when the template rejects the conversation with
    /// `raise_exception`, [`DataError::TemplateRender`] for any other failure; both name the
    /// message the template was reading when it failed.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let last_read = Arc::new(AtomicUsize::new(0));
        let messages: Vec<Value> = messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                Value::from_object(TemplateMessage {
                    index,
                    role: message.role,
                    content: Value::from(message.content.as_str()),
                    last_read: Arc::clone(&last_read),
                })
            })
            .collect();
        let mut context: Vec<(&str, Value)> = vec![
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("tools", Value::from(())),
            ("documents", Value::from(())),
        ];
        context.extend(self.special_tokens.template_variables().map(|(name, token)| (name, Value::from(token))));
        let context: Value = context.into_iter().collect();

        let rendered = self.env.get_template(TEMPLATE_NAME).and_then(|template| template.render(context));
        rendered.map_err(|error| {
            let index = last_read.load(Ordering::Relaxed).checked_sub(1);
            self.render_error(error, index)
        })
    }

    /// The template text as written in the model folder.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the template came from (`tokenizer_config.json` or `chat_template.jinja`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The special tokens the template sees.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special_tokens
    }

    /// Turns an engine error into a [`DataError`], recognising `raise_exception`.
    fn render_error(&self, error: minijinja::Error, index: Option<usize>) -> DataError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(current) = cause {
            if let Some(raised) = current.downcast_ref::<RaisedException>() {
                return DataError::TemplateRaised { path: self.path.clone(), index, message: raised.0.clone() };
            }
            cause = current.source();
        }
        DataError::TemplateRender { path: self.path.clone(), index, error }
    }
}

/// A minijinja environment configured like transformers' Jinja2 one.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_compat::format_output);
    env.set_fuel(Some(FUEL));
    env.add_filter("tojson", python_compat::tojson);
    env.add_filter("string", |value: Value| python_compat::python_str(&value));
    env.add_function("raise_exception", python_compat::raise_exception);
    env.add_function("strftime_now", |format: String| python_compat::strftime_now(&format));
    env
}

/// Replaces transformers' `{% generation %}…{% endgeneration %}` tags (which only mark assistant
/// text for loss masks) by an always-true `if`, keeping their whitespace control.
fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let (before, tag) = rest.split_at(start);
        out.push_str(before);
        // The closing `%}` comes after the opening `{%`: in `{%}` they share the `%`.
        let Some(end) = tag[2..].find("%}").map(|end| end + 2) else {
            rest = tag;
            break;
        };
        let inner = &tag[2..end];
        let keyword = inner.trim_start_matches(['-', '+']).trim_end_matches(['-', '+']).trim();
        let replacement = match keyword {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        out.push_str("{%");
        match replacement {
            Some(replacement) => out.push_str(&inner.replacen(keyword, replacement, 1)),
            None => out.push_str(inner),
        }
        out.push_str("%}");
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A message as templates see it: a dict with `role` and `content` that records, when read,
/// which message the template is looking at, so errors can name it.
#[derive(Debug)]
struct TemplateMessage {
    index: usize,
    role: Role,
    content: Value,
    last_read: Arc<AtomicUsize>,
}

impl Object for TemplateMessage {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.last_read.store(self.index + 1, Ordering::Relaxed);
        match key.as_str()? {
            "role" => Some(Value::from(self.role.as_str())),
            "content" => Some(self.content.clone()),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const SMOLLM2: &str = include_str!("../tests/fixtures/smollm2_chat_template.jinja");
    const FEATURES: &str = include_str!("../tests/fixtures/features_template.jinja");
    const ORACLE: &str = include_str!("../tests/fixtures/smollm2_chat_oracle.json");
    // Written by tests/fixtures/make_goldens.py, which renders each case with Python's Jinja2
    // set up as transformers sets it up:
    //   env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
    //                                       extensions=[loopcontrols])
    //   env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None,
    //       sort_keys=False: json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, ...)
    //   env.globals["raise_exception"] = raise_exception
    //   env.from_string(source).render(messages=messages, tools=None, documents=None,
    //       add_generation_prompt=add_generation_prompt, **special_tokens)
    const GOLDENS: &str = include_str!("../tests/fixtures/chat_template_goldens.json");

    /// One case of `chat_template_goldens.json`.
    #[derive(Deserialize)]
    struct Golden {
        template_file: Option<String>,
        template: Option<String>,
        messages: Vec<Message>,
        add_generation_prompt: bool,
        bos_token: Option<String>,
        eos_token: Option<String>,
        text: String,
    }

    /// Renders the golden case `name`, returning what we render and what Jinja2 rendered.
    fn render_golden(name: &str) -> (String, String) {
        let goldens: serde_json::Map<String, serde_json::Value> = serde_json::from_str(GOLDENS).unwrap();
        let golden: Golden = serde_json::from_value(goldens[name].clone()).unwrap();
        let source = match (golden.template_file.as_deref(), golden.template.as_deref()) {
            (Some("smollm2_chat_template.jinja"), _) => SMOLLM2,
            (Some("features_template.jinja"), _) => FEATURES,
            (None, Some(source)) => source,
            other => panic!("golden {name} has no template: {other:?}"),
        };
        let tokens = SpecialTokens { bos: golden.bos_token, eos: golden.eos_token, ..SpecialTokens::default() };
        let template = ChatTemplate::new(source, name, tokens).unwrap();
        (template.render(&golden.messages, golden.add_generation_prompt).unwrap(), golden.text)
    }

    fn template(source: &str) -> ChatTemplate {
        ChatTemplate::new(source, "model/tokenizer_config.json", SpecialTokens::default()).unwrap()
    }

    #[test]
    fn smollm2_template_renders_the_transformers_oracle_byte_for_byte() {
        #[derive(Deserialize)]
        struct Oracle {
            messages: Vec<Message>,
            add_generation_prompt: bool,
            text: String,
        }
        let oracle: Oracle = serde_json::from_str(ORACLE).unwrap();
        let rendered = template(SMOLLM2).render(&oracle.messages, oracle.add_generation_prompt).unwrap();
        assert_eq!(rendered, oracle.text);
    }

    #[test]
    fn a_multi_turn_conversation_with_a_system_message_matches_jinja2() {
        for name in ["smollm2_multi_turn", "smollm2_multi_turn_with_prompt"] {
            let (rendered, expected) = render_golden(name);
            assert_eq!(rendered, expected, "{name}");
        }
    }

    #[test]
    fn without_a_generation_prompt_the_text_ends_after_the_last_message() {
        let messages = [Message::user("Hi")];
        let rendered = template(SMOLLM2).render(&messages, false).unwrap();
        assert!(rendered.ends_with("<|im_start|>user\nHi<|im_end|>\n"), "{rendered:?}");
    }

    #[test]
    fn llama2_and_gemma_templates_match_jinja2() {
        for name in ["llama2", "gemma"] {
            let (rendered, expected) = render_golden(name);
            assert_eq!(rendered, expected, "{name}");
        }
    }

    #[test]
    fn namespaces_loop_helpers_python_methods_and_tojson_match_jinja2() {
        for name in ["features", "features_without_bos"] {
            let (rendered, expected) = render_golden(name);
            assert_eq!(rendered, expected, "{name}");
        }
    }

    #[test]
    fn a_syntax_error_is_reported_with_the_template_path() {
        let err = ChatTemplate::new(
            "{% for m in messages %}{{ m.content }}",
            "m/tokenizer_config.json",
            SpecialTokens::default(),
        )
        .unwrap_err();
        assert!(matches!(err, DataError::TemplateSyntax { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with("chat template of m/tokenizer_config.json: syntax error"), "{text}");
    }

    #[test]
    fn raise_exception_fails_with_the_template_message_and_the_message_index() {
        let goldens: serde_json::Value = serde_json::from_str(GOLDENS).unwrap();
        let llama2 = goldens["llama2"]["template"].as_str().unwrap();
        let messages = [Message::system("Be brief."), Message::user("Hi"), Message::user("Hello?")];
        let tokens = SpecialTokens { bos: Some("<s>".into()), eos: Some("</s>".into()), ..SpecialTokens::default() };
        let template = ChatTemplate::new(llama2, "model/tokenizer_config.json", tokens).unwrap();
        let err = template.render(&messages, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chat template of model/tokenizer_config.json: message 2: \
             Conversation roles must alternate user/assistant/user/assistant/..."
        );
    }

    #[test]
    fn other_render_errors_name_the_message_being_read() {
        let source =
            "{% for m in messages %}{% if loop.index0 == 1 %}{{ m.content.no_such_method() }}{% endif %}{% endfor %}";
        let err = template(source).render(&[Message::user("a"), Message::assistant("b")], false).unwrap_err();
        assert!(matches!(err, DataError::TemplateRender { index: Some(1), .. }), "{err:?}");
        assert!(err.to_string().starts_with("chat template of model/tokenizer_config.json: message 1: "), "{err}");
    }

    #[test]
    fn templates_cannot_read_other_files() {
        let err = template("{% include '/etc/passwd' %}").render(&[], false).unwrap_err();
        assert!(matches!(err, DataError::TemplateRender { index: None, .. }), "{err:?}");
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel_instead_of_hanging() {
        let source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        let err = template(source).render(&[], false).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
    }

    #[test]
    fn a_long_conversation_fits_in_the_fuel_budget() {
        let messages: Vec<Message> =
            (0..5_000).flat_map(|i| [Message::user(format!("question {i}")), Message::assistant("answer")]).collect();
        let tokens = SpecialTokens { eos: Some("</s>".into()), ..SpecialTokens::default() };
        let source = FEATURES.replace("loop.index0 > 5", "loop.index0 > 100000");
        let template = ChatTemplate::new(&source, "t", tokens).unwrap();
        let rendered = template.render(&messages, true).unwrap();
        assert!(rendered.contains("question 4999"));
    }

    #[test]
    fn generation_tags_render_their_contents_with_whitespace_control() {
        let source = "{% for m in messages %}{%- generation -%}\n[{{ m.content }}]\n{%- endgeneration %}{% endfor %}";
        let rendered = template(source).render(&[Message::assistant("ok")], false).unwrap();
        assert_eq!(rendered, "[ok]");
        assert_eq!(rewrite_generation_tags("{%- generation %}"), "{%- if true %}");
        assert_eq!(rewrite_generation_tags("{% endgeneration -%}"), "{% endif -%}");
    }

    #[test]
    fn a_tag_opened_and_closed_by_one_percent_sign_is_an_error_not_a_panic() {
        // Found by the `chat_template` fuzz target: `{%}` made the rewrite slice backwards.
        assert_eq!(rewrite_generation_tags("{%} generation %}"), "{%} generation %}");
        let error = ChatTemplate::new("{%} generation", "t", SpecialTokens::default()).unwrap_err();
        assert!(matches!(error, DataError::TemplateSyntax { .. }), "{error:?}");
    }

    #[test]
    fn special_tokens_and_strftime_now_are_available() {
        let tokens = SpecialTokens { bos: Some("<s>".into()), ..SpecialTokens::default() };
        let template =
            ChatTemplate::new("{{ bos_token }}|{{ eos_token }}|{{ strftime_now('%Y')|length }}", "t", tokens).unwrap();
        assert_eq!(template.render(&[], false).unwrap(), "<s>||4");
    }
}
