//! `precept random-weights`: a model folder of a given shape with freshly initialised weights.

use anyhow::{Context, Result};
use burn::tensor::FloatDType;
use precept_model::checkpoint::{save_model, SaveOptions};
use precept_model::LlamaConfig;
use precept_train::TrainKernels;

use crate::args::RandomWeightsArgs;
use crate::device::DeviceCommand;

/// The command, ready to run on a backend.
pub struct RandomWeights(pub RandomWeightsArgs);

impl DeviceCommand for RandomWeights {
    fn run<B: TrainKernels>(self, device: B::Device, _decode: Option<FloatDType>) -> Result<()> {
        let args = self.0;
        let config = LlamaConfig::from_hf_file(&args.config)?;
        B::seed(&device, args.seed);
        let model = config.init::<B>(&device);
        let options =
            SaveOptions { dtype: args.dtype.into(), copy_from: args.config.parent(), ..SaveOptions::default() };
        save_model(&model, &config, &args.out, &options).with_context(|| format!("writing {}", args.out.display()))?;
        tracing::info!("wrote a random {}-layer model to {}", config.num_hidden_layers, args.out.display());
        Ok(())
    }
}
