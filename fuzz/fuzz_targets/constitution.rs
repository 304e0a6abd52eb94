//! Arbitrary text as a constitution file: parsed (and written back) or an error, never a panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use precept_constitution::Constitution;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(constitution) = Constitution::parse(text, Path::new("c.toml")) {
        let _ = constitution.to_toml();
    }
});
