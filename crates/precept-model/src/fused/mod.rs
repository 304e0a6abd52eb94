//! Training operations with hand-written backward passes, for autodiff backends over a CPU
//! backend that runs host kernels ([`crate::set_host_kernels`]).
//!
//! Under autodiff, SwiGLU and attention decompose into a dozen element-wise operations each, and
//! every one of them allocates its output, records a graph node and has its own backward pass.
//! Here each is one graph node: the forward keeps what its backward needs, and the work runs on
//! host memory, element-wise with the vectorised `exp` of [`crate::host_math`], attention's
//! products through strided views of the projections' outputs ([`crate::strided`]).

mod attention;
mod swiglu;

use std::any::Any;
use std::sync::OnceLock;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

pub(crate) use attention::Heads;

/// Grouped-query attention for queries `[batch, n, heads·head_dim]` over keys and values
/// `[batch, m, kv_heads·head_dim]`, with an optional `[batch, n, m]` host mask (`true` hides).
pub(crate) type AttentionKernel<B> =
    fn(Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>, Heads, Option<&[bool]>) -> Tensor<B, 3>;

/// The fused operations for one autodiff backend `B`.
pub(crate) struct TrainingKernels<B: Backend> {
    /// `silu(gate) · up`, shapes `[batch, seq, width]`.
    pub swiglu: fn(Tensor<B, 3>, Tensor<B, 3>) -> Tensor<B, 3>,
    /// Scaled dot-product attention.
    pub attention: AttentionKernel<B>,
}

impl<B: Backend> Clone for TrainingKernels<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for TrainingKernels<B> {}

impl<I: Backend> TrainingKernels<Autodiff<I>> {
    /// The kernels for training on `I` with host kernels.
    fn on_host() -> Self {
        Self { swiglu: swiglu::swiglu::<I>, attention: attention::attention::<I> }
    }
}

/// The installed kernels, for one autodiff backend type.
static TRAINING_KERNELS: OnceLock<Box<dyn Any + Send + Sync>> = OnceLock::new();

/// Installs the fused operations for training on `I` (called by [`crate::set_host_kernels`]).
pub(crate) fn set_training_kernels<I: Backend>() {
    let _ = TRAINING_KERNELS.set(Box::new(TrainingKernels::<Autodiff<I>>::on_host()));
}

/// The fused operations, when the model is being trained on a backend that has them.
pub(crate) fn training_kernels<B: Backend>() -> Option<TrainingKernels<B>> {
    TRAINING_KERNELS.get()?.downcast_ref::<TrainingKernels<B>>().copied()
}
