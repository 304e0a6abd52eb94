//! `precept eval --suite S --model TUNED [--baseline BASE] [--out DIR]`: the safety regression
//! gate.
//!
//! The settings (a file and the flags over it, written to `DIR/config.toml`) resolve into
//! [`GateSettings`](precept_eval::GateSettings) (suite, overrides, sides, judge); [`run_gate`] checks them, writes them to
//! `DIR/run.json`, runs both sides with the models this command
//! opens (folders onto the device, or servers) and returns the report; the report is printed and
//! its verdict becomes the exit code.

use anyhow::Result;
use burn::tensor::FloatDType;
use precept_data::write_settings;
use precept_eval::{run_gate, terminal_table, EvalSettings, Report, Verdict};
use precept_train::TrainKernels;

use super::GateFailure;
use crate::commands::remote::ModelOpener;
use crate::device::DeviceCommand;
use crate::output::print_json;
use crate::progress::ProgressDisplay;

/// The command, ready to run on a backend.
pub struct Gate {
    /// Resolved settings.
    pub settings: EvalSettings,
    /// `--json`: the report as JSON instead of the table.
    pub json: bool,
    /// `--quiet`: no progress output.
    pub quiet: bool,
}

impl DeviceCommand for Gate {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let gate = self.settings.resolve()?;
        // Checked before anything is written, so a bad run leaves an earlier run's files alone.
        gate.validate()?;
        if let Some(out) = &gate.out {
            write_settings(&self.settings, out)?;
        }
        let mut models = ModelOpener::<B> { connection: &self.settings.connection, device: &device, decode };
        let mut display = ProgressDisplay::new(self.quiet, &[]);
        let report = run_gate(&gate, &mut models, &mut display)?;
        display.finish();
        announce(&report, self.json)
    }
}

/// Prints a finished gate's report (JSON or a table) and turns its verdict into the result:
/// a [`GateFailure`] unless it passed.
pub fn announce(report: &Report, json: bool) -> Result<()> {
    if json {
        print_json(report)?;
    } else {
        crate::output::write_stdout(&terminal_table(report))?;
    }
    match report.verdict() {
        Verdict::Pass => Ok(()),
        verdict => Err(GateFailure { verdict }.into()),
    }
}
