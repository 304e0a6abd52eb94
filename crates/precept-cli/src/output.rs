//! Printing results for people and for scripts.

use std::io::{self, Write};

use anyhow::{Context, Result};
use serde::Serialize;

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    write_stdout(&format!("{}\n", serde_json::to_string(value)?))
}

/// Writes `text` to stdout and flushes it; a closed or full stdout is an error, not a panic.
pub fn write_stdout(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing to stdout")
}

/// `println!` for results: writes through [`write_stdout`] and returns its `Result`, so a closed
/// or full stdout is an error the command returns (a closed pipe then ends the program quietly),
/// never a panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Whether `error` comes from writing to a pipe whose reader has gone (`precept … | head -1`),
/// which ends the program quietly, as other command-line tools do.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}
