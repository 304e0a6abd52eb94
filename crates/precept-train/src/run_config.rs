//! The resolved settings of a run, written into its folder before any work starts.

use std::path::Path;

use precept_data::SETTINGS_FILE;
use serde::Serialize;

use crate::error::{Result, TrainError};

/// Writes `settings` as `run_dir/config.toml`. When `resuming`, the file must already hold the
/// same settings (the run folder's own location, `out`, aside: a moved folder resumes): a
/// resumed run with other settings would not continue the same run.
pub fn write_run_config<T: Serialize>(settings: &T, run_dir: &Path, resuming: bool) -> Result<()> {
    let path = run_dir.join(SETTINGS_FILE);
    let text = toml::to_string_pretty(settings).map_err(|e| TrainError::setting("config", e.to_string()))?;
    if resuming {
        let saved = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let without_out = |text: &str| {
            let mut table = toml::from_str::<toml::Table>(text).ok()?;
            table.remove("out");
            Some(table)
        };
        if without_out(&saved).is_none() || without_out(&saved) != without_out(&text) {
            return Err(TrainError::Checkpoint {
                path,
                message: "the run was started with other settings; resume it with the same ones or start a new run"
                    .into(),
            });
        }
        return Ok(());
    }
    precept_data::write_settings(settings, run_dir)?;
    Ok(())
}
