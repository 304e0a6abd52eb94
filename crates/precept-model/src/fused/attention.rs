//! Scaled dot-product attention as one autodiff operation.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorPrimitive};

use crate::host::{from_host, host_values};
use crate::host_math::{softmax_backward_in_place, softmax_rows_in_place};

/// The graph node of [`attention`].
#[derive(Debug)]
struct Attention;

/// What the backward needs: the inputs and the attention weights.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    queries: B::FloatTensorPrimitive,
    keys: B::FloatTensorPrimitive,
    values: B::FloatTensorPrimitive,
    /// `softmax(Q·Kᵀ·scale)`, `[batch, heads, n, m]` row-major.
    weights: Arc<Vec<f32>>,
    scale: f32,
}

impl<B: Backend> Backward<B, 3> for Attention {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let Saved { queries, keys, values, weights, scale } = ops.state;
        let tensor = |primitive| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(primitive));
        let (queries, keys, values) = (tensor(queries), tensor(keys), tensor(values));
        let d_output = tensor(grads.consume::<B>(&ops.node));
        let [batch, heads, n, _] = queries.dims();
        let m = keys.dims()[2];
        let device = queries.device();
        let [query_node, key_node, value_node] = ops.parents;
        if let Some(node) = value_node {
            let weights = from_host::<B, 4>(weights.as_ref().clone(), [batch, heads, n, m], &device);
            let d_values = weights.swap_dims(2, 3).matmul(d_output.clone());
            grads.register::<B>(node.id, d_values.into_primitive().tensor());
        }
        if query_node.is_none() && key_node.is_none() {
            return;
        }
        let mut d_scores = host_values(d_output.matmul(values.swap_dims(2, 3)));
        softmax_backward_in_place(&weights, &mut d_scores, m, scale);
        let d_scores = from_host::<B, 4>(d_scores, [batch, heads, n, m], &device);
        if let Some(node) = key_node {
            let d_keys = d_scores.clone().swap_dims(2, 3).matmul(queries);
            grads.register::<B>(node.id, d_keys.into_primitive().tensor());
        }
        if let Some(node) = query_node {
            grads.register::<B>(node.id, d_scores.matmul(keys).into_primitive().tensor());
        }
    }
}

/// `softmax(Q·Kᵀ/√d, hiding masked keys)·V`, one graph node; the softmax runs on host memory
/// (a query that sees no key gets zero weights).
///
/// # Shapes
/// - queries: `[batch, heads, n, d]`; keys, values: `[batch, heads, m, d]`
/// - mask: `[batch, heads, n, m]`, `true` where a query must not see a key
/// - output: `[batch, heads, n, d]`
pub(super) fn attention<I: Backend>(
    queries: Tensor<Autodiff<I>, 4>,
    keys: Tensor<Autodiff<I>, 4>,
    values: Tensor<Autodiff<I>, 4>,
    mask: Option<Tensor<Autodiff<I>, 4, Bool>>,
) -> Tensor<Autodiff<I>, 4> {
    let [batch, heads, n, d] = queries.dims();
    let m = keys.dims()[2];
    let device = queries.device();
    let scale = (d as f32).sqrt().recip();
    // A boolean tensor's data always reads back as booleans.
    let hidden = mask.map(|mask| mask.into_data().into_vec::<bool>().unwrap_or_else(|e| unreachable!("{e:?}")));
    let [queries, keys, values] = [queries, keys, values].map(|t| t.into_primitive().tensor());
    let inner =
        |primitive: &I::FloatTensorPrimitive| Tensor::<I, 4>::from_primitive(TensorPrimitive::Float(primitive.clone()));
    let scores = inner(&queries.primitive).mul_scalar(scale).matmul(inner(&keys.primitive).swap_dims(2, 3));
    let mut weights = host_values(scores);
    softmax_rows_in_place(&mut weights, m, hidden.as_deref());
    let output = from_host::<I, 4>(weights.clone(), [batch, heads, n, m], &device).matmul(inner(&values.primitive));
    let output = output.into_primitive().tensor();
    let parents = [queries.node.clone(), keys.node.clone(), values.node.clone()];
    let node = match Attention.prepare::<NoCheckpointing>(parents).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let saved = Saved {
                queries: queries.primitive,
                keys: keys.primitive,
                values: values.primitive,
                weights: Arc::new(weights),
                scale,
            };
            prep.finish(saved, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Tensor::from_primitive(TensorPrimitive::Float(node))
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Distribution, TensorData};

    use super::*;

    type A = Autodiff<Flex>;

    #[test]
    fn fused_attention_and_its_gradients_equal_burns() {
        let _rng = crate::lock_backend_rng();
        let device = Default::default();
        let [batch, heads, n, m, d] = [2, 3, 5, 7, 8];
        let random = |shape: [usize; 4]| Tensor::<A, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (random([batch, heads, n, d]), random([batch, heads, m, d]), random([batch, heads, m, d]));
        let weights = random([batch, heads, n, d]);
        // Causal over the last n of m keys, with the first key of batch row 1 hidden (padding).
        let hidden: Vec<bool> = (0..batch * heads * n * m)
            .map(|i| {
                let (row, key, query) = (i / (heads * n * m), i % m, (i / m) % n);
                key > m - n + query || (row == 1 && key == 0)
            })
            .collect();
        let mask = || Tensor::<A, 4, Bool>::from_data(TensorData::new(hidden.clone(), [batch, heads, n, m]), &device);
        let inputs = || [&q, &k, &v].map(|t| t.clone().detach().require_grad());

        let ([fq, fk, fv], [bq, bk, bv]) = (inputs(), inputs());
        let fused = attention(fq.clone(), fk.clone(), fv.clone(), Some(mask()));
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let reference = burn_attention(bq.clone(), bk.clone(), bv.clone(), Some(mask()), None, options);
        let difference = (fused.clone() - reference.clone()).abs().max().into_scalar();
        assert!(difference < 1e-5, "outputs differ by {difference}");

        let fused_grads = (fused * weights.clone()).sum().backward();
        let reference_grads = (reference * weights).sum().backward();
        for (name, a, b) in [("queries", &fq, &bq), ("keys", &fk, &bk), ("values", &fv, &bv)] {
            let (a, b) = (a.grad(&fused_grads).unwrap(), b.grad(&reference_grads).unwrap());
            let difference = (a - b).abs().max().into_scalar();
            assert!(difference < 1e-5, "{name} gradients differ by {difference}");
        }
    }
}
