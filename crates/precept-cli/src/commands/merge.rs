//! `precept merge`: a PEFT LoRA adapter folded into its base, saved as a plain model folder.

use anyhow::{Context, Result};
use burn::tensor::FloatDType;
use precept_model::checkpoint::{load_adapter, save_model, SaveOptions};
use precept_train::TrainKernels;

use crate::args::MergeArgs;
use crate::device::DeviceCommand;
use crate::loaded::load_weights;

/// The command, ready to run on a backend.
pub struct Merge(pub MergeArgs);

impl DeviceCommand for Merge {
    fn run<B: TrainKernels>(self, device: B::Device, _decode: Option<FloatDType>) -> Result<()> {
        let args = self.0;
        let (config, base) = load_weights::<B>(&args.base, &device, None)?;
        let (adapted, lora) = load_adapter(base, &args.adapter)
            .with_context(|| format!("loading the adapter in {}", args.adapter.display()))?;
        let options = SaveOptions { dtype: args.dtype.into(), copy_from: Some(&args.base), ..SaveOptions::default() };
        save_model(&adapted.merge_lora(), &config, &args.out, &options)
            .with_context(|| format!("writing {}", args.out.display()))?;
        tracing::info!(
            "merged a rank-{} adapter on {} into {}",
            lora.r,
            lora.target_modules.join(", "),
            args.out.display()
        );
        Ok(())
    }
}
