//! Arbitrary text as a training settings file: parsed and validated, or an error, never a panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use precept_train::TrainConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = precept_data::parse_settings::<TrainConfig>(text, Path::new("run.toml")) {
        let _ = config.validate();
    }
});
