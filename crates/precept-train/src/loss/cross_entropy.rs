//! Cross-entropy over the vocabulary as one autodiff operation: the forward uses the backend's
//! fused softmax, and the backward computes `(softmax(x) − onehot(t))·g` directly.
//!
//! Composed from element-wise operations, the same loss walks the `[rows, vocab]` logits a dozen
//! times through broadcasting kernels (a row maximum subtracted, a row sum divided), which on
//! the CPU backend cost several times the matrix products around them.
//!
//! On the CPU backend both passes run on host memory instead: the forward keeps the logits and
//! each row's log-sum-exp, and the backward writes the gradient over those logits in one pass,
//! with no probability or broadcast tensors at all.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorPrimitive};
use precept_kernels::host_math::{cross_entropy_gradient_in_place, log_sum_exp_rows};
use precept_model::{from_host, host_values};

/// Autodiff backends with a fused cross-entropy.
pub trait CrossEntropyBackend: AutodiffBackend {
    /// `−log softmax(xᵢ)[tᵢ] = logsumexp(xᵢ) − xᵢ[tᵢ]` for every row `i`.
    ///
    /// # Shapes
    /// - logits: `[rows, vocab]`
    /// - targets: `[rows]`
    /// - output: `[rows]`
    fn row_cross_entropy(logits: Tensor<Self, 2>, targets: Tensor<Self, 1, Int>) -> Tensor<Self, 1>;
}

/// Each backend's autodiff wrapper takes the cross-entropy that backend chooses.
impl<B: CrossEntropyKernels, C: CheckpointStrategy> CrossEntropyBackend for Autodiff<B, C> {
    fn row_cross_entropy(logits: Tensor<Self, 2>, targets: Tensor<Self, 1, Int>) -> Tensor<Self, 1> {
        B::autodiff_row_cross_entropy(logits, targets)
    }
}

/// Backends' choice of cross-entropy under autodiff; the default is one graph node over the
/// backend's own softmax.
pub trait CrossEntropyKernels: Backend {
    /// [`CrossEntropyBackend::row_cross_entropy`] of `Autodiff<Self, C>`.
    fn autodiff_row_cross_entropy<C: CheckpointStrategy>(
        logits: Tensor<Autodiff<Self, C>, 2>,
        targets: Tensor<Autodiff<Self, C>, 1, Int>,
    ) -> Tensor<Autodiff<Self, C>, 1> {
        fused_row_cross_entropy(logits, targets)
    }
}

/// The CPU backend computes both passes on host memory.
impl CrossEntropyKernels for Flex {
    fn autodiff_row_cross_entropy<C: CheckpointStrategy>(
        logits: Tensor<Autodiff<Self, C>, 2>,
        targets: Tensor<Autodiff<Self, C>, 1, Int>,
    ) -> Tensor<Autodiff<Self, C>, 1> {
        host_row_cross_entropy(logits, targets)
    }
}

#[cfg(feature = "cuda")]
impl CrossEntropyKernels for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl CrossEntropyKernels for burn::backend::Wgpu {}

#[derive(Debug)]
struct RowCrossEntropy;

impl<B: Backend> Backward<B, 1> for RowCrossEntropy {
    /// The softmax of the logits and the targets as a `[rows, 1]` column.
    type State = (B::FloatTensorPrimitive, B::IntTensorPrimitive);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let (probabilities, targets) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            let probabilities = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(probabilities));
            let targets = Tensor::<B, 2, Int>::from_primitive(targets);
            let grad = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(grad));
            let [rows, vocab] = probabilities.dims();
            let minus_one = Tensor::<B, 2>::full([rows, 1], -1.0, &probabilities.device());
            let difference = probabilities.scatter(1, targets, minus_one, IndexingUpdateOp::Add);
            // Every row's weight, made contiguous: a broadcast multiply is far slower on CPU.
            let row_weights = grad.reshape([rows, 1]).repeat_dim(1, vocab);
            (difference * row_weights).into_primitive().tensor()
        });
    }
}

/// The cross-entropy computed on host memory.
#[derive(Debug)]
struct HostRowCrossEntropy;

/// What the host backward needs: the logits themselves, each row's log-sum-exp and target.
#[derive(Debug, Clone)]
struct HostLogits<D> {
    /// `[rows, vocab]` row-major; shared only while the graph is cloned.
    values: Arc<Vec<f32>>,
    vocab: usize,
    log_sum_exp: Vec<f32>,
    targets: Vec<usize>,
    device: D,
}

impl<B: Backend> Backward<B, 1> for HostRowCrossEntropy {
    type State = HostLogits<B::Device>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let HostLogits { values, vocab, log_sum_exp, targets, device } = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            let weights = host_values(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(grad)));
            let mut values = Arc::try_unwrap(values).unwrap_or_else(|shared| shared.as_ref().clone());
            cross_entropy_gradient_in_place(&mut values, vocab, &log_sum_exp, &targets, &weights);
            let rows = targets.len();
            from_host::<B, 2>(values, [rows, vocab], &device).into_primitive().tensor()
        });
    }
}

/// [`CrossEntropyBackend::row_cross_entropy`] on host memory.
fn host_row_cross_entropy<B: Backend, C: CheckpointStrategy>(
    logits: Tensor<Autodiff<B, C>, 2>,
    targets: Tensor<Autodiff<B, C>, 1, Int>,
) -> Tensor<Autodiff<B, C>, 1> {
    let logits = logits.into_primitive().tensor();
    let node = logits.node;
    // The logits move out, so reading them to host memory copies nothing when no one else holds them.
    let inner = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(logits.primitive));
    let [rows, vocab] = inner.dims();
    let device = inner.device();
    let values = host_values(inner);
    let targets: Vec<usize> = Tensor::<B, 1, Int>::from_primitive(targets.into_primitive())
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .unwrap_or_else(|e| unreachable!("{e:?}"))
        .into_iter()
        .map(|t| t as usize)
        .collect();
    let log_sum_exp = log_sum_exp_rows(&values, vocab);
    let losses: Vec<f32> = (0..rows).map(|i| log_sum_exp[i] - values[i * vocab + targets[i]]).collect();
    let losses = from_host::<B, 1>(losses, [rows], &device).into_primitive().tensor();
    let output = match HostRowCrossEntropy.prepare::<C>([node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let state = HostLogits { values: Arc::new(values), vocab, log_sum_exp, targets, device };
            prep.finish(state, losses)
        }
        OpsKind::UnTracked(prep) => prep.finish(losses),
    };
    Tensor::from_primitive(TensorPrimitive::Float(output))
}

/// [`CrossEntropyBackend::row_cross_entropy`] as one graph node over burn's softmax.
fn fused_row_cross_entropy<B: Backend, C: CheckpointStrategy>(
    logits: Tensor<Autodiff<B, C>, 2>,
    targets: Tensor<Autodiff<B, C>, 1, Int>,
) -> Tensor<Autodiff<B, C>, 1> {
    let logits = logits.into_primitive().tensor();
    let inner = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(logits.primitive.clone()));
    let targets = Tensor::<B, 1, Int>::from_primitive(targets.into_primitive()).unsqueeze_dim::<2>(1);
    let [rows, _] = inner.dims();
    let probabilities = softmax(inner.clone(), 1);
    // logsumexp(x) = max(x) − log(max(softmax(x))): the largest probability is at least
    // 1/vocab, so its logarithm is finite.
    let log_sum_exp = inner.clone().max_dim(1) - probabilities.clone().max_dim(1).log();
    let losses = (log_sum_exp - inner.gather(1, targets.clone())).reshape([rows]);
    let output = match RowCrossEntropy.prepare::<C>([logits.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(
            (probabilities.into_primitive().tensor(), targets.into_primitive()),
            losses.into_primitive().tensor(),
        ),
        OpsKind::UnTracked(prep) => prep.finish(losses.into_primitive().tensor()),
    };
    Tensor::from_primitive(TensorPrimitive::Float(output))
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::log_softmax;
    use burn::tensor::TensorData;

    use super::*;

    type A = Autodiff<Flex>;

    #[test]
    fn fused_cross_entropy_and_its_gradient_equal_the_composed_ones() {
        let device = Default::default();
        let values: Vec<f32> = (0..60).map(|i| 4.0 * (0.37 * i as f32).sin()).collect();
        let logits = || Tensor::<A, 2>::from_data(TensorData::new(values.clone(), [6, 10]), &device).require_grad();
        let targets = Tensor::<A, 1, Int>::from_data(TensorData::new(vec![3i64, 0, 9, 9, 1, 5], [6]), &device);
        let weights = Tensor::<A, 1>::from_data(TensorData::new(vec![1.0f32, 0.5, 0.0, 2.0, 1.0, 3.0], [6]), &device);

        let (fused_logits, composed_logits) = (logits(), logits());
        let fused = fused_row_cross_entropy(fused_logits.clone(), targets.clone());
        let composed = log_softmax(composed_logits.clone(), 1).gather(1, targets.unsqueeze_dim(1)).reshape([6]).neg();
        let difference = (fused.clone() - composed.clone()).abs().max().into_scalar();
        assert!(difference < 1e-5, "losses differ by {difference}");

        let fused_grads = (fused * weights.clone()).sum().backward();
        let composed_grads = (composed * weights).sum().backward();
        let a = fused_logits.grad(&fused_grads).unwrap();
        let b = composed_logits.grad(&composed_grads).unwrap();
        let difference = (a - b).abs().max().into_scalar();
        assert!(difference < 1e-5, "gradients differ by {difference}");
    }

    #[test]
    fn the_host_cross_entropy_and_its_gradient_equal_the_backends() {
        let device = Default::default();
        let values: Vec<f32> = (0..6 * 300).map(|i| 4.0 * (0.37 * i as f32).sin()).collect();
        let logits = || Tensor::<A, 2>::from_data(TensorData::new(values.clone(), [6, 300]), &device).require_grad();
        let targets = Tensor::<A, 1, Int>::from_data(TensorData::new(vec![3i64, 0, 299, 299, 1, 5], [6]), &device);
        let weights = Tensor::<A, 1>::from_data(TensorData::new(vec![1.0f32, 0.5, 0.0, 2.0, 1.0, 3.0], [6]), &device);

        let (host_logits, backend_logits) = (logits(), logits());
        let host = A::row_cross_entropy(host_logits.clone(), targets.clone());
        let backend = fused_row_cross_entropy(backend_logits.clone(), targets);
        let difference = (host.clone() - backend.clone()).abs().max().into_scalar();
        assert!(difference < 1e-5, "losses differ by {difference}");

        let host_grads = (host * weights.clone()).sum().backward();
        let backend_grads = (backend * weights).sum().backward();
        let a = host_logits.grad(&host_grads).unwrap();
        let b = backend_logits.grad(&backend_grads).unwrap();
        let difference = (a - b).abs().max().into_scalar();
        assert!(difference < 1e-6, "gradients differ by {difference}");
    }
}
