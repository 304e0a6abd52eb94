//! Arbitrary bytes as an SFT and as a preference JSONL file: every line is a record or an error
//! naming its line, never a panic.

#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use precept_data::{PrefReader, SftReader};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("data.jsonl");
    for (_, record) in SftReader::new(Cursor::new(data), path).with_max_line_bytes(1 << 16) {
        let _ = record;
    }
    for (_, record) in PrefReader::new(Cursor::new(data), path).with_max_line_bytes(1 << 16) {
        let _ = record;
    }
});
