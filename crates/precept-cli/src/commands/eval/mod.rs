//! `precept eval`: the safety regression gate ([`gate`]), judge calibration ([`calibrate`]) and
//! case import ([`import`]), all on top of precept-eval.

pub mod args;
mod calibrate;
pub mod gate;
mod import;

use std::fmt;

use anyhow::Result;
use burn::tensor::FloatDType;
use precept_eval::Verdict;

use crate::device::DeviceChoice;
use args::{EvalArgs, EvalCommand};

/// A gate that did not pass: `main` exits with its code (2, 3 or 4) instead of 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateFailure {
    /// What the gate decided.
    pub verdict: Verdict,
}

impl GateFailure {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        self.verdict.exit_code()
    }
}

impl fmt::Display for GateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "eval gate: {} (exit code {})", self.verdict.describe(), self.exit_code())
    }
}

impl std::error::Error for GateFailure {}

/// Runs `precept eval` or one of its subcommands.
pub fn run(args: EvalArgs, device: DeviceChoice, decode: Option<FloatDType>, quiet: bool) -> Result<()> {
    match args.command {
        Some(EvalCommand::Calibrate(args)) => device.dispatch(calibrate::Calibrate(args), decode),
        Some(EvalCommand::Import(args)) => import::run(&args),
        None => {
            let json = args.gate.json;
            device.dispatch(gate::Gate { settings: args.gate.resolve()?, json, quiet }, decode)
        }
    }
}
