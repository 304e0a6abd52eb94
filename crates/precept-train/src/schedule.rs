//! Learning-rate schedules: linear warmup, then constant, linear or cosine decay, with the
//! formulas of transformers' `get_*_schedule_with_warmup`.

use serde::{Deserialize, Serialize};

/// The shape of the decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Stays at the peak.
    Constant,
    /// Falls linearly to zero at the last step.
    #[default]
    Linear,
    /// Follows half a cosine to zero at the last step.
    Cosine,
}

/// A learning rate for every optimiser step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Steps of linear warmup from zero.
    pub warmup_steps: u64,
    /// Total optimiser steps.
    pub total_steps: u64,
    /// Decay after warmup.
    pub kind: ScheduleKind,
}

impl LrSchedule {
    /// The rate of the update made at `step` (counting from zero): `peak·step/warmup` during
    /// warmup, then `peak·(total − step)/(total − warmup)` (linear) or
    /// `peak·½(1 + cos(π·progress))` (cosine).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / decay_steps;
        let factor = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => (1.0 - progress).max(0.0),
            ScheduleKind::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        };
        self.peak * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> LrSchedule {
        LrSchedule { peak: 1e-3, warmup_steps: 2, total_steps: 10, kind }
    }

    // transformers 5.24, an optimiser with lr 1e-3:
    //   s = get_cosine_schedule_with_warmup(opt, 2, 10)   (or get_linear_…)
    //   [s.get_last_lr()[0] for each of 10 steps, calling opt.step(); s.step() between]
    // cosine: 0, 5e-4, 1e-3, 9.619397662556434e-4, 8.535533905932737e-4, 6.913417161825449e-4,
    //         5e-4, 3.086_582_838_174_551e-4, 1.4644660940672628e-4, 3.806023374435663e-5
    // linear: 0, 5e-4, 1e-3, 8.75e-4, 7.5e-4, 6.25e-4, 5e-4, 3.75e-4, 2.5e-4, 1.25e-4
    #[test]
    fn warmup_then_decay_matches_transformers() {
        let cosine = [
            0.0,
            5e-4,
            1e-3,
            9.619397662556434e-4,
            8.535533905932737e-4,
            6.913417161825449e-4,
            5e-4,
            3.086_582_838_174_551e-4,
            1.4644660940672628e-4,
            3.806023374435663e-5,
        ];
        let linear = [0.0, 5e-4, 1e-3, 8.75e-4, 7.5e-4, 6.25e-4, 5e-4, 3.75e-4, 2.5e-4, 1.25e-4];
        for (step, (c, l)) in cosine.iter().zip(linear).enumerate() {
            assert!((schedule(ScheduleKind::Cosine).lr(step as u64) - c).abs() < 1e-15, "cosine step {step}");
            assert!((schedule(ScheduleKind::Linear).lr(step as u64) - l).abs() < 1e-15, "linear step {step}");
        }
    }

    #[test]
    fn constant_holds_the_peak_after_warmup_and_nothing_goes_negative() {
        assert_eq!(schedule(ScheduleKind::Constant).lr(9), 1e-3);
        assert_eq!(schedule(ScheduleKind::Linear).lr(25), 0.0);
        assert_eq!(LrSchedule { warmup_steps: 0, ..schedule(ScheduleKind::Linear) }.lr(0), 1e-3);
    }
}
