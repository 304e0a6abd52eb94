//! Host CPU kernels: the code that works on `f32`/`bf16` slices in host memory for precept's CPU
//! backend, and nearly all of the workspace's `unsafe`, behind safe functions over slices.
//!
//! - [`row_product`] computes the products of a decoding step's few rows, streaming each weight
//!   (f32 or bf16, either layout) once.
//! - [`strided`] multiplies strided views of host buffers (one attention head of a
//!   `[batch, seq, heads·head_dim]` buffer) in place, through the gemm crate.
//! - [`host_attention`] keeps a KV cache in host memory and attends over it where it lies.
//! - [`host_math`] holds the vectorised element-wise passes: softmax, SwiGLU and its backward,
//!   log-sum-exp and the cross-entropy gradient, AdamW's update.
//!
//! Nothing here knows about tensors: precept-model's backend traits read tensors into slices,
//! call these kernels and wrap the results again.

pub mod host_attention;
pub mod host_math;
pub mod row_product;
pub mod strided;
