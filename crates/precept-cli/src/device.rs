//! Choosing the compute device once, at the top, and running a command generic over its backend.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use burn::tensor::backend::Backend;
use burn::tensor::FloatDType;
use precept_train::TrainKernels;

/// A device named on the command line: `cpu`, `cuda[:N]` or `wgpu[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU, through burn's flex backend.
    Cpu,
    /// CUDA GPU number N.
    Cuda(usize),
    /// wgpu (Vulkan/Metal/DX12) GPU number N.
    Wgpu(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, index) = match s.split_once(':') {
            Some((kind, n)) => {
                let index = n.parse().map_err(|_| format!("`{n}` in `{s}` is not a device number"))?;
                (kind, index)
            }
            None => (s, 0),
        };
        match kind {
            "cpu" if index == 0 => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(index)),
            "wgpu" => Ok(Self::Wgpu(index)),
            _ => Err(format!("unknown device `{s}` (expected cpu, cuda[:N] or wgpu[:N])")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Wgpu(i) => write!(f, "wgpu:{i}"),
        }
    }
}

/// A command that runs on any backend.
pub trait DeviceCommand {
    /// Runs on `device`; models loaded for inference decode with weights in `decode`.
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()>;
}

impl DeviceChoice {
    /// Runs `command` on this device, or explains why the device is unavailable; models it loads
    /// for inference decode with copies of their weights in `decode` (`None`: the weights).
    pub fn dispatch(self, command: impl DeviceCommand, decode: Option<FloatDType>) -> Result<()> {
        match self {
            #[cfg(feature = "flex")]
            Self::Cpu => command.run::<burn::backend::Flex>(Default::default(), decode),
            #[cfg(feature = "cuda")]
            Self::Cuda(index) => {
                let device = burn::backend::cuda::CudaDevice::new(index);
                probe::<burn::backend::Cuda>(&device, self)?;
                command.run::<burn::backend::Cuda>(device, decode)
            }
            #[cfg(feature = "wgpu")]
            Self::Wgpu(index) => {
                let device = burn::backend::wgpu::WgpuDevice::DiscreteGpu(index);
                probe::<burn::backend::Wgpu>(&device, self)?;
                command.run::<burn::backend::Wgpu>(device, decode)
            }
            #[allow(unreachable_patterns)]
            other => {
                let feature = match other {
                    Self::Cpu => "flex",
                    Self::Cuda(_) => "cuda",
                    Self::Wgpu(_) => "wgpu",
                };
                bail!("device `{other}` needs precept built with `--features {feature}`")
            }
        }
    }
}

/// Runs one tiny tensor operation so that a missing GPU or driver is an error, not a later panic.
#[allow(dead_code)]
fn probe<B: Backend>(device: &B::Device, choice: DeviceChoice) -> Result<()> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        burn::tensor::Tensor::<B, 1>::ones([4], device).sum().into_scalar();
    }));
    std::panic::set_hook(hook);
    match outcome {
        Ok(()) => Ok(()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            bail!("device `{choice}` is not available: {message}")
        }
    }
}

/// Flushes denormal floats to zero on the calling thread and on every rayon worker.
///
/// Denormal values, common in small gradients, slow x86 arithmetic by an order of magnitude.
pub fn flush_denormals_everywhere() {
    flush_denormals();
    // Only fails when the global pool already exists, which start-up order rules out.
    let _ = rayon::ThreadPoolBuilder::new().start_handler(|_| flush_denormals()).build_global();
}

fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    // SAFETY: setting the FTZ (bit 15) and DAZ (bit 6) bits of MXCSR only changes how this
    // thread's SSE arithmetic treats denormals.
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_with_optional_index() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("wgpu:1".parse(), Ok(DeviceChoice::Wgpu(1)));
        assert!("tpu".parse::<DeviceChoice>().unwrap_err().contains("unknown device `tpu`"));
        assert!("cuda:x".parse::<DeviceChoice>().unwrap_err().contains("not a device number"));
    }
}
