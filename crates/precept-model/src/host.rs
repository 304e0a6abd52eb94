//! The CPU knob: the backend whose inference keeps its KV cache and computes attention and the
//! SwiGLU activation in host memory ([`crate::host_attention`], [`crate::host_math`]).

use std::any::TypeId;
use std::sync::OnceLock;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// The backend whose tensors the program chose to work on in host memory.
static HOST_BACKEND: OnceLock<TypeId> = OnceLock::new();

/// Runs the inference steps that backend `B` does slowly on the CPU on host memory instead: the
/// KV cache grows in place and attention reads it where it lies ([`crate::host_attention::HostKv`]),
/// and SwiGLU uses a vectorised `exp`. Training on `Autodiff<B>` gets SwiGLU and attention as
/// single graph nodes with hand-written backward passes, and precept-train's cross-entropy and
/// AdamW run on host memory too.
///
/// A CPU tuning knob, set once by the program for its CPU backend (later calls are ignored); on a
/// GPU backend it would copy activations to the host and back.
pub fn set_host_kernels<B: Backend>() {
    let _ = HOST_BACKEND.set(TypeId::of::<B>());
    crate::fused::set_training_kernels::<B>();
}

/// Whether the program chose host kernels for `B`.
pub fn host_kernels<B: Backend>() -> bool {
    HOST_BACKEND.get() == Some(&TypeId::of::<B>())
}

/// A tensor's values as `f32`s in host memory, row-major (without a copy when the backend's
/// storage is contiguous and nothing else holds it).
pub fn host_values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    // Data converted to `f32` always reads back as `f32`.
    tensor.into_data().convert::<f32>().into_vec::<f32>().unwrap_or_else(|e| unreachable!("{e:?}"))
}

/// A tensor of `shape` on `device` holding `values`.
pub fn from_host<B: Backend, const D: usize>(values: Vec<f32>, shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}
