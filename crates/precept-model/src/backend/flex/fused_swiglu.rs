//! `silu(gate)·up` as one autodiff operation.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::host::{from_host, host_values};
use precept_kernels::host_math::{swiglu_backward_in_place, swiglu_in_place};

/// The graph node of [`swiglu`].
#[derive(Debug)]
struct SwiGlu;

/// The inputs in host memory, which the backward overwrites with their gradients.
#[derive(Debug, Clone)]
struct Inputs<D> {
    gate: Arc<Vec<f32>>,
    up: Arc<Vec<f32>>,
    shape: [usize; 3],
    device: D,
}

impl<B: Backend> Backward<B, 2> for SwiGlu {
    type State = Inputs<B::Device>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let Inputs { gate, up, shape, device } = ops.state;
        let grad = host_values(Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(grads.consume::<B>(&ops.node))));
        let owned = |values: Arc<Vec<f32>>| Arc::try_unwrap(values).unwrap_or_else(|shared| shared.as_ref().clone());
        let (mut d_gate, mut d_up) = (owned(gate), owned(up));
        swiglu_backward_in_place(&grad, &mut d_gate, &mut d_up);
        let [gate_node, up_node] = ops.parents;
        for (node, values) in [(gate_node, d_gate), (up_node, d_up)] {
            if let Some(node) = node {
                let tensor = from_host::<B, 3>(values, shape, &device);
                grads.register::<B>(node.id, tensor.into_primitive().tensor());
            }
        }
    }
}

/// `silu(gate)·up`, computed on host memory, one graph node.
///
/// # Shapes
/// - gate, up: `[batch, seq, width]` → `[batch, seq, width]`
pub(super) fn swiglu<I: Backend, C: CheckpointStrategy>(
    gate: Tensor<Autodiff<I, C>, 3>,
    up: Tensor<Autodiff<I, C>, 3>,
) -> Tensor<Autodiff<I, C>, 3> {
    let (shape, device) = (gate.dims(), gate.device());
    let (gate, up) = (gate.into_primitive().tensor(), up.into_primitive().tensor());
    let inner = |primitive| Tensor::<I, 3>::from_primitive(TensorPrimitive::Float(primitive));
    let gate_values = host_values(inner(gate.primitive));
    let up_values = host_values(inner(up.primitive));
    let mut output = gate_values.clone();
    swiglu_in_place(&mut output, &up_values);
    let output = from_host::<I, 3>(output, shape, &device).into_primitive().tensor();
    let node = match SwiGlu.prepare::<C>([gate.node, up.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let inputs = Inputs { gate: Arc::new(gate_values), up: Arc::new(up_values), shape, device };
            prep.finish(inputs, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Tensor::from_primitive(TensorPrimitive::Float(node))
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::activation::silu;
    use burn::tensor::Distribution;

    use super::*;

    type A = Autodiff<Flex>;

    #[test]
    fn fused_swiglu_and_its_gradients_equal_the_composed_ones() {
        let _rng = crate::lock_backend_rng();
        let device = Default::default();
        let gate = Tensor::<A, 3>::random([2, 5, 96], Distribution::Normal(0.0, 4.0), &device);
        let up = Tensor::<A, 3>::random([2, 5, 96], Distribution::Normal(0.0, 1.0), &device);
        let weights = Tensor::<A, 3>::random([2, 5, 96], Distribution::Normal(0.0, 1.0), &device);
        let inputs = || (gate.clone().detach().require_grad(), up.clone().detach().require_grad());

        let ((fused_gate, fused_up), (gate, up)) = (inputs(), inputs());
        let fused = swiglu(fused_gate.clone(), fused_up.clone());
        let composed = silu(gate.clone()) * up.clone();
        let difference = (fused.clone() - composed.clone()).abs().max().into_scalar();
        assert!(difference < 1e-5, "outputs differ by {difference}");

        let fused_grads = (fused * weights.clone()).sum().backward();
        let composed_grads = (composed * weights).sum().backward();
        for (name, a, b) in [("gate", &fused_gate, &gate), ("up", &fused_up, &up)] {
            let difference =
                (a.grad(&fused_grads).unwrap() - b.grad(&composed_grads).unwrap()).abs().max().into_scalar();
            assert!(difference < 1e-5, "{name} gradients differ by {difference}");
        }
    }
}
