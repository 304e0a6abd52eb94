//! Tensors to host memory and back, for kernels that work on slices.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

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
