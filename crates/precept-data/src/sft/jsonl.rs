//! [`JsonlReader`]: streams the records of a JSONL file ([`SftRecord`]s, preference pairs),
//! one line at a time, each with its 1-based line number.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{DataError, Result};
use crate::sft::record::SftRecord;

/// The longest JSONL line read into memory; longer lines are errors, not allocations.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// The UTF-8 encoding of U+FEFF, the byte-order mark.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// A record parsed from one JSON line.
pub trait JsonRecord: Sized {
    /// Parses `value`; `path` and `line` locate it in every error.
    ///
    /// # Errors
    /// Whatever makes the value an invalid record, naming the field.
    fn from_json(value: &Value, path: &Path, line: usize) -> Result<Self>;
}

impl JsonRecord for SftRecord {
    fn from_json(value: &Value, path: &Path, line: usize) -> Result<Self> {
        SftRecord::from_json(value, path, line)
    }
}

/// An iterator over `(line_number, Result<T>)` for every non-blank line of a JSONL file.
///
/// A UTF-8 byte-order mark at the very start of the file (which some Windows editors and
/// Python's `utf-8-sig` write) is skipped, as JSON readers are permitted to do (RFC 8259 §8.1).
///
/// A bad line yields its error and reading goes on with the next line, so callers choose whether
/// to stop or skip. A read error from the file itself ends the iteration after being yielded.
#[derive(Debug)]
pub struct JsonlReader<R, T> {
    reader: R,
    path: PathBuf,
    line: usize,
    buffer: Vec<u8>,
    max_line_bytes: usize,
    done: bool,
    record: PhantomData<T>,
}

/// Reads SFT records.
pub type SftReader<R = BufReader<File>> = JsonlReader<R, SftRecord>;

impl<T: JsonRecord> JsonlReader<BufReader<File>, T> {
    /// Opens `path` for streaming.
    ///
    /// # Errors
    /// [`DataError::Read`] when the file cannot be opened.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|error| DataError::Read { path: path.to_owned(), error })?;
        Ok(Self::new(BufReader::new(file), path))
    }
}

impl<R: BufRead, T: JsonRecord> JsonlReader<R, T> {
    /// Streams records from `reader`; `path` names the source in errors.
    pub fn new(reader: R, path: &Path) -> Self {
        Self {
            reader,
            path: path.to_owned(),
            line: 0,
            buffer: Vec::new(),
            max_line_bytes: MAX_LINE_BYTES,
            done: false,
            record: PhantomData,
        }
    }

    /// Sets the longest line accepted (default [`MAX_LINE_BYTES`]).
    pub fn with_max_line_bytes(mut self, limit: usize) -> Self {
        self.max_line_bytes = limit;
        self
    }

    /// Reads the next line into `self.buffer` without its line ending; `Ok(false)` at the end.
    fn read_line(&mut self) -> Result<bool> {
        self.buffer.clear();
        let limit = self.max_line_bytes as u64 + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buffer)
            .map_err(|error| self.read_error(error))?;
        if read == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.line == 1 && self.buffer.starts_with(UTF8_BOM) {
            self.buffer.drain(..UTF8_BOM.len());
        }
        if self.buffer.last() == Some(&b'\n') {
            self.buffer.pop();
            if self.buffer.last() == Some(&b'\r') {
                self.buffer.pop();
            }
        } else if self.buffer.len() > self.max_line_bytes {
            self.skip_rest_of_line()?;
            return Err(DataError::LineTooLong {
                path: self.path.clone(),
                line: self.line,
                limit: self.max_line_bytes,
            });
        }
        Ok(true)
    }

    /// Discards input up to and including the next newline.
    fn skip_rest_of_line(&mut self) -> Result<()> {
        loop {
            let path = &self.path;
            let chunk = self.reader.fill_buf().map_err(|error| DataError::Read { path: path.clone(), error })?;
            if chunk.is_empty() {
                return Ok(());
            }
            match chunk.iter().position(|&byte| byte == b'\n') {
                Some(end) => {
                    self.reader.consume(end + 1);
                    return Ok(());
                }
                None => {
                    let len = chunk.len();
                    self.reader.consume(len);
                }
            }
        }
    }

    fn read_error(&self, error: std::io::Error) -> DataError {
        DataError::Read { path: self.path.clone(), error }
    }

    /// Parses the line in `self.buffer`.
    fn parse(&self) -> Result<T> {
        let text = std::str::from_utf8(&self.buffer)
            .map_err(|_| DataError::NotUtf8 { path: self.path.clone(), line: self.line })?;
        let value = serde_json::from_str(text).map_err(|error| DataError::InvalidJsonLine {
            path: self.path.clone(),
            line: self.line,
            error,
        })?;
        T::from_json(&value, &self.path, self.line)
    }
}

impl<R: BufRead, T: JsonRecord> Iterator for JsonlReader<R, T> {
    type Item = (usize, Result<T>);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.read_line() {
                Ok(false) => self.done = true,
                Ok(true) if self.buffer.iter().all(u8::is_ascii_whitespace) => {}
                Ok(true) => return Some((self.line, self.parse())),
                Err(error @ DataError::Read { .. }) => {
                    self.done = true;
                    return Some((self.line + 1, Err(error)));
                }
                Err(error) => return Some((self.line, Err(error))),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::message::Message;

    fn read(bytes: &[u8]) -> Vec<(usize, std::result::Result<SftRecord, String>)> {
        SftReader::new(Cursor::new(bytes.to_vec()), Path::new("data.jsonl"))
            .map(|(line, record)| (line, record.map_err(|error| error.to_string())))
            .collect()
    }

    #[test]
    fn blank_lines_are_skipped_but_counted_in_line_numbers() {
        let text = b"\n{\"prompt\":\"a\",\"completion\":\"b\"}\r\n  \n{\"prompt\":\"c\",\"completion\":\"d\"}";
        let records = read(text);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, 2);
        assert_eq!(records[1].0, 4);
        let second = records[1].1.as_ref().unwrap();
        assert_eq!(second.messages()[1], Message::assistant("d"));
    }

    #[test]
    fn invalid_json_names_the_file_and_line_and_reading_continues() {
        let records =
            read(b"{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\": \n{\"prompt\":\"c\",\"completion\":\"d\"}\n");
        assert_eq!(records.len(), 3);
        let err = records[1].1.as_ref().unwrap_err();
        assert!(err.starts_with("data.jsonl:2: invalid JSON: "), "{err}");
        assert!(records[2].1.is_ok());
    }

    #[test]
    fn a_line_that_is_not_utf8_is_an_error_naming_the_line() {
        let records = read(b"{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":\"\xff\"}\n");
        assert_eq!(records[1], (2, Err("data.jsonl:2: not valid UTF-8".to_owned())));
    }

    #[test]
    fn a_utf8_byte_order_mark_at_the_start_of_the_file_is_skipped() {
        let records = read(b"\xef\xbb\xbf{\"prompt\":\"a\",\"completion\":\"b\"}\n\xef\xbb\xbf{}\n");
        assert_eq!(records[0].0, 1);
        assert!(records[0].1.is_ok(), "{:?}", records[0].1);
        // Only the file's first bytes may be a byte-order mark; elsewhere it is invalid JSON.
        let err = records[1].1.as_ref().unwrap_err();
        assert!(err.starts_with("data.jsonl:2: invalid JSON"), "{err}");
    }

    #[test]
    fn record_errors_carry_the_line_number() {
        let records = read(b"\n\n{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}\n");
        assert_eq!(records, [(3, Err("data.jsonl:3: field `messages[0].role`: unknown role `bot`".to_owned()))]);
    }

    #[test]
    fn an_overlong_line_is_an_error_and_the_next_line_still_reads() {
        let text =
            b"{\"prompt\":\"aaaaaaaaaaaaaaaaaaaaaa\",\"completion\":\"b\"}\n{\"prompt\":\"c\",\"completion\":\"d\"}\n";
        let records: Vec<_> =
            SftReader::new(Cursor::new(text.to_vec()), Path::new("data.jsonl")).with_max_line_bytes(40).collect();
        assert_eq!(records.len(), 2);
        let err = records[0].1.as_ref().unwrap_err().to_string();
        assert_eq!(err, "data.jsonl:1: line is longer than the 40-byte limit");
        assert_eq!(records[1].0, 2);
        assert!(records[1].1.is_ok());
    }

    #[test]
    fn opening_a_missing_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.jsonl");
        let err = SftReader::open(&path).unwrap_err();
        assert!(err.to_string().starts_with(&format!("{}: ", path.display())), "{err}");
    }

    #[test]
    fn records_stream_from_a_file_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        std::fs::write(&path, "{\"prompt\":\"a\",\"completion\":\"b\"}\n").unwrap();
        let records: Vec<_> = SftReader::open(&path).unwrap().collect();
        assert_eq!(records.len(), 1);
        assert!(records[0].1.is_ok());
    }
}
