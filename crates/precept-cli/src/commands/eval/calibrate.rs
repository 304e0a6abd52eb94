//! `precept eval calibrate`: a judge's accuracy, precision and recall on labelled replies.

use anyhow::Result;
use burn::tensor::FloatDType;
use precept_data::Connection;
use precept_eval::{calibrate, read_gold, JudgeConfig};
use precept_train::TrainKernels;

use super::args::CalibrateArgs;
use crate::commands::remote::ModelOpener;
use crate::device::DeviceCommand;
use crate::output::{outln, print_json};

/// The command, ready to run on a backend.
pub struct Calibrate(pub CalibrateArgs);

impl DeviceCommand for Calibrate {
    fn run<B: TrainKernels>(self, device: B::Device, _decode: Option<FloatDType>) -> Result<()> {
        let args = self.0;
        let gold = read_gold(&args.gold)?;
        let config = JudgeConfig::default().overridden(Some(args.judge), args.judge_model)?;
        // A calibrated judge runs from its folder; the connection is never used.
        let connection = Connection::default();
        let mut judge =
            config.open(None, &mut ModelOpener::<B> { connection: &connection, device: &device, decode: None })?;
        let c = calibrate(judge.as_mut(), &gold, args.batch_size)?;
        if args.json {
            return print_json(&c);
        }
        outln!("{}: {} labelled replies (positive class: compliance)", args.gold.display(), c.n)?;
        outln!("accuracy {:.3}  precision {:.3}  recall {:.3}", c.accuracy, c.precision, c.recall)?;
        outln!(
            "true positives {}, false positives {}, true negatives {}, false negatives {}, judge failures {}",
            c.true_positives,
            c.false_positives,
            c.true_negatives,
            c.false_negatives,
            c.judge_failures
        )?;
        Ok(())
    }
}
