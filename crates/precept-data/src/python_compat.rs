//! Python behaviour that Hugging Face chat templates rely on and minijinja does not share.
//!
//! transformers renders templates with Jinja2 in Python, so `{{ x }}` prints `str(x)` (`None`,
//! `True`, `1.0`, `['a', 'b']`) and its `tojson` filter is `json.dumps` (`", "` and `": "`
//! separators, non-ASCII kept). The functions here reproduce those byte for byte, and add the two
//! globals transformers defines: `raise_exception(message)` and `strftime_now(format)`.

use std::fmt::{self, Write as _};

use chrono::format::StrftimeItems;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind, Output, State};

/// Marks an error as raised by the template itself through `raise_exception`, so the renderer
/// can report the template's own message rather than the engine's wording around it.
#[derive(Debug)]
pub(crate) struct RaisedException(pub(crate) String);

impl fmt::Display for RaisedException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

/// The `raise_exception(message)` global: fails the render with `message`.
pub(crate) fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(RaisedException(message)))
}

/// The `strftime_now(format)` global: the local time formatted like Python's `strftime`.
pub(crate) fn strftime_now(format: &str) -> Result<String, Error> {
    let invalid = || Error::new(ErrorKind::InvalidOperation, format!("strftime_now: invalid format {format:?}"));
    let items = StrftimeItems::new(format).parse().map_err(|_| invalid())?;
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format_with_items(items.iter())).map_err(|_| invalid())?;
    Ok(out)
}

/// The output formatter: writes what Python's `str(value)` would for `{{ value }}`.
pub(crate) fn format_output(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Seq | ValueKind::Map => {
            out.write_str(&python_str(value)).map_err(|_| Error::from(ErrorKind::WriteFailure))
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `str(value)`; also the template's `string` filter.
pub(crate) fn python_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => value.as_str().unwrap_or_default().to_owned(),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            let mut out = String::new();
            write_repr(&mut out, value);
            out
        }
        _ => scalar_str(value),
    }
}

/// `str()` of `None`, booleans and numbers; minijinja's own text for anything else.
fn scalar_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::None => "None".to_owned(),
        ValueKind::Bool if value.is_true() => "True".to_owned(),
        ValueKind::Bool => "False".to_owned(),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(number) => float_repr(number),
            Err(_) => value.to_string(),
        },
        _ => value.to_string(),
    }
}

/// Python's `repr(value)` for the values templates print inside lists and dicts.
fn write_repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::String => write_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Undefined => out.push_str("Undefined"),
        ValueKind::Map => {
            out.push('{');
            for (i, (key, item)) in map_pairs(value).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, &key);
                out.push_str(": ");
                write_repr(out, &item);
            }
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, &item);
            }
            out.push(']');
        }
        _ => out.push_str(&scalar_str(value)),
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
fn write_str_repr(out: &mut String, text: &str) {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            // Python treats C0, DEL and C1 controls as unprintable and shows them as \xNN.
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// The key/value pairs of a map value, in its own order.
fn map_pairs(value: &Value) -> Vec<(Value, Value)> {
    match value.as_object().and_then(|object| object.try_iter_pairs()) {
        Some(pairs) => pairs.collect(),
        None => Vec::new(),
    }
}

/// Python's `repr(float)`: shortest round-trip digits, positional for exponents in `-4..16`,
/// otherwise `d.ddde±XX`.
pub(crate) fn float_repr(number: f64) -> String {
    if number.is_nan() {
        return "nan".to_owned();
    }
    if number.is_infinite() {
        return if number > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let sign = if number.is_sign_negative() { "-" } else { "" };
    // Rust's `{:e}` prints the shortest digits that round-trip, like Python's repr.
    let scientific = format!("{:e}", number.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits = mantissa.replace('.', "");
    if (-4..16).contains(&exponent) {
        let (int, frac) = if exponent >= 0 {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                (format!("{digits:0<int_len$}"), "0".to_owned())
            } else {
                (digits[..int_len].to_owned(), digits[int_len..].to_owned())
            }
        } else {
            ("0".to_owned(), format!("{}{digits}", "0".repeat((-exponent - 1) as usize)))
        };
        format!("{sign}{int}.{frac}")
    } else {
        let mantissa = match digits.len() {
            1 => digits,
            _ => format!("{}.{}", &digits[..1], &digits[1..]),
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}

/// The `tojson` filter: Python's
/// `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
pub(crate) fn tojson(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;

    let indent = match indent {
        None => None,
        Some(indent) if indent.is_none() => None,
        Some(indent) => match indent.as_str() {
            Some(text) => Some(text.to_owned()),
            None => Some(" ".repeat(usize::try_from(indent.clone()).unwrap_or(0))),
        },
    };
    let (item_sep, key_sep) = match separators.filter(|value| !value.is_none()) {
        Some(pair) => {
            let parts: Vec<String> = pair.try_iter()?.map(|part| python_str(&part)).collect();
            match <[String; 2]>::try_from(parts) {
                Ok([item, key]) => (item, key),
                Err(_) => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be a pair")),
            }
        }
        None if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        None => (", ".to_owned(), ": ".to_owned()),
    };
    let mut writer = JsonWriter {
        out: String::new(),
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    writer.value(value, 0)?;
    Ok(writer.out)
}

/// The state of one `json.dumps` call.
struct JsonWriter {
    out: String,
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonWriter {
    fn value(&mut self, value: &Value, depth: usize) -> Result<(), Error> {
        match value.kind() {
            ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self.out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => self.out.push_str(&json_number(value)),
            ValueKind::String => self.string(value.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container(('[', ']'), items.len(), depth, |writer, i| writer.value(&items[i], depth + 1))?;
            }
            ValueKind::Map => {
                let mut pairs: Vec<(String, Value)> = map_pairs(value)
                    .into_iter()
                    .map(|(key, item)| Ok((json_key(&key)?, item)))
                    .collect::<Result<_, Error>>()?;
                if self.sort_keys {
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container(('{', '}'), pairs.len(), depth, |writer, i| {
                    writer.string(&pairs[i].0);
                    writer.out.push_str(&writer.key_sep);
                    writer.value(&pairs[i].1, depth + 1)
                })?;
            }
            kind => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: object of type {kind} is not JSON serializable"),
                ))
            }
        }
        Ok(())
    }

    /// Writes `len` items between `open` and `close`, laid out like `json.dumps`.
    fn container(
        &mut self,
        (open, close): (char, char),
        len: usize,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.out.push(open);
        if len > 0 {
            let (inner, outer) = match &self.indent {
                Some(indent) => (format!("\n{}", indent.repeat(depth + 1)), format!("\n{}", indent.repeat(depth))),
                None => (String::new(), String::new()),
            };
            self.out.push_str(&inner);
            for i in 0..len {
                if i > 0 {
                    self.out.push_str(&self.item_sep);
                    self.out.push_str(&inner);
                }
                item(self, i)?;
            }
            self.out.push_str(&outer);
        }
        self.out.push(close);
        Ok(())
    }

    /// A JSON string literal with Python's escapes.
    fn string(&mut self, text: &str) {
        self.out.push('"');
        for c in text.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && (c as u32) > 0x7e) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(self.out, "\\u{unit:04x}");
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

/// A number as `json.dumps` writes it: integers as they are, floats as `repr`, and Python's
/// `NaN`/`Infinity` spellings.
fn json_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(number) if number.is_nan() => "NaN".to_owned(),
        Ok(number) if number.is_infinite() => if number > 0.0 { "Infinity" } else { "-Infinity" }.to_owned(),
        Ok(number) => float_repr(number),
        Err(_) => value.to_string(),
    }
}

/// A dict key as `json.dumps` converts it: strings as they are, scalars to their JSON text.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_owned()),
        ValueKind::Number => Ok(json_number(key)),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_owned()),
        ValueKind::None => Ok("null".to_owned()),
        kind => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: keys must be str, int, float, bool or None, not {kind}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::{context, Environment};

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        env.add_filter("tojson", tojson);
        env.add_filter("string", |value: Value| python_str(&value));
        env.set_formatter(format_output);
        env
    }

    fn render(source: &str) -> String {
        env().render_str(source, context! {}).unwrap()
    }

    // Expected values are Python 3.11's own output, e.g.
    //   >>> [repr(x) for x in (1e16, 1e15, 0.0001, 1e-05, 0.1+0.2, -0.0, 2.5e-10, 123456.789)]
    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (1e-05, "1e-05"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (2.5e-10, "2.5e-10"),
            (123456.789, "123456.789"),
            (1.0, "1.0"),
            (1.5e300, "1.5e+300"),
        ];
        for (number, expected) in cases {
            assert_eq!(float_repr(number), expected, "{number}");
        }
    }

    // >>> jinja2 with transformers' settings renders: None True False 1.0 ['a', "it's", None] {'k': [1, 2.5]}
    #[test]
    fn printed_values_look_like_python_str() {
        assert_eq!(
            render("{{ none }} {{ true }} {{ false }} {{ 1.0 }} {{ ['a', \"it's\", none] }} {{ {'k': [1, 2.5]} }}"),
            "None True False 1.0 ['a', \"it's\", None] {'k': [1, 2.5]}"
        );
        assert_eq!(render("{{ none|string }}|{{ undefined_name }}|{{ 3 }}"), "None||3");
    }

    // >>> json.dumps({"b": [1, 2.0, None, True], "a": "é\n\"x\""}, ensure_ascii=False)
    // '{"b": [1, 2.0, null, true], "a": "é\\n\\"x\\""}'
    #[test]
    fn tojson_matches_python_json_dumps() {
        let source = r#"{{ {"b": [1, 2.0, none, true], "a": "é\n\"x\""}|tojson }}"#;
        assert_eq!(render(source), r#"{"b": [1, 2.0, null, true], "a": "é\n\"x\""}"#);
    }

    // >>> print(json.dumps({"b": [1, {}], "a": []}, indent=2, sort_keys=True))
    #[test]
    fn tojson_indents_and_sorts_like_python() {
        let source = r#"{{ {"b": [1, {}], "a": []}|tojson(indent=2, sort_keys=true) }}"#;
        assert_eq!(render(source), "{\n  \"a\": [],\n  \"b\": [\n    1,\n    {}\n  ]\n}");
    }

    // >>> json.dumps(["é😀"], ensure_ascii=True, separators=(",", ":"))
    // '["\\u00e9\\ud83d\\ude00"]'
    #[test]
    fn tojson_escapes_non_ascii_when_asked() {
        let source = r#"{{ ["é😀"]|tojson(ensure_ascii=true, separators=[",", ":"]) }}"#;
        assert_eq!(render(source), r#"["\u00e9\ud83d\ude00"]"#);
    }

    #[test]
    fn tojson_rejects_undefined_values_like_python() {
        let err = env().render_str("{{ missing|tojson }}", context! {}).unwrap_err();
        assert!(err.to_string().contains("not JSON serializable"), "{err}");
    }

    #[test]
    fn strftime_now_formats_the_local_date_and_rejects_bad_formats() {
        let year = strftime_now("%Y").unwrap();
        assert_eq!(year.len(), 4);
        assert!(year.chars().all(|c| c.is_ascii_digit()));
        assert!(strftime_now("%Q").is_err());
    }

    #[test]
    fn raise_exception_carries_the_template_message() {
        let err = raise_exception("no system role".into()).unwrap_err();
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.downcast_ref::<RaisedException>().unwrap().0, "no system role");
    }
}
