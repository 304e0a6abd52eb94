//! What a backend needs for precept to train on it: [`TrainKernels`] for the backend itself,
//! [`TrainBackend`] for its autodiff wrapper.

use burn::tensor::backend::AutodiffBackend;
use precept_model::KernelBackend;

use crate::loss::{CrossEntropyBackend, CrossEntropyKernels};
use crate::optim::OptimizerBackend;

/// A backend with every kernel choice training makes: the decoder's, the cross-entropy's and the
/// optimizer's (the CPU backend `Flex`, and `Cuda` and `Wgpu` with burn's defaults).
/// `Autodiff<B>` of such a backend `B` is a [`TrainBackend`].
pub trait TrainKernels: KernelBackend + CrossEntropyKernels + OptimizerBackend {}

impl<B: KernelBackend + CrossEntropyKernels + OptimizerBackend> TrainKernels for B {}

/// An autodiff backend precept trains on: the decoder's kernels and the fused cross-entropy,
/// over an inner backend with the optimizer's update.
pub trait TrainBackend: CrossEntropyBackend + KernelBackend + AutodiffBackend<InnerBackend: TrainKernels> {}

impl<B> TrainBackend for B
where
    B: CrossEntropyBackend + KernelBackend,
    B::InnerBackend: TrainKernels,
{
}
