//! Sequence log-probabilities for preference training: `Σ log π(token)` over each row's learnt
//! (completion) tokens, differentiable, plus the counts and mean logits TRL reports.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use precept_model::{host_values, AttentionInputs, KernelBackend, LlamaForCausalLM};

use super::cross_entropy::CrossEntropyBackend;
use super::sft::{learnt_token_logits, LearntTokens};

/// Per-row sums over the learnt tokens of a batch.
#[derive(Debug, Clone)]
pub struct SequenceLogps<B: CrossEntropyBackend + KernelBackend> {
    /// `Σ log π(token)` over each row's learnt tokens, `[rows]`.
    pub logps: Tensor<B, 1>,
    /// Learnt tokens of each row.
    pub tokens: Vec<usize>,
    /// Mean over each row's learnt positions of the mean logit over the vocabulary (TRL's
    /// `logits/chosen` and `logits/rejected`); 0 for rows without learnt tokens.
    pub mean_logits: Vec<f64>,
}

/// [`SequenceLogps`] of every row of the batch through `model`.
///
/// # Shapes
/// - ids, loss_mask: `[batch, seq]`
pub fn sequence_logps<B: CrossEntropyBackend + KernelBackend>(
    model: &LlamaForCausalLM<B>,
    ids: Tensor<B, 2, Int>,
    inputs: &AttentionInputs<B>,
    loss_mask: Tensor<B, 2, Bool>,
) -> SequenceLogps<B> {
    let [batch, _] = ids.dims();
    let device = ids.device();
    let LearntTokens { logits, targets, rows } = match learnt_token_logits(model, ids, inputs, loss_mask) {
        Ok(learnt) => learnt,
        Err(zero) => {
            let logps = zero.expand([batch]);
            return SequenceLogps { logps, tokens: vec![0; batch], mean_logits: vec![0.0; batch] };
        }
    };
    let count = rows.len();
    let mut tokens = vec![0usize; batch];
    for &row in &rows {
        tokens[row] += 1;
    }
    let row_means: Vec<f32> = host_values(logits.clone().inner().mean_dim(1));
    let mut mean_logits = vec![0.0f64; batch];
    for (&row, &mean) in rows.iter().zip(&row_means) {
        mean_logits[row] += f64::from(mean) / tokens[row] as f64;
    }
    // Row sums as a product with the `[rows, tokens]` membership matrix.
    let mut membership = vec![0.0f32; batch * count];
    for (token, &row) in rows.iter().enumerate() {
        membership[row * count + token] = 1.0;
    }
    let membership = Tensor::<B, 2>::from_data(TensorData::new(membership, [batch, count]), &device);
    let token_logps = B::row_cross_entropy(logits, targets).neg().reshape([count, 1]);
    let logps = membership.matmul(token_logps).reshape([batch]);
    SequenceLogps { logps, tokens, mean_logits }
}

/// [`SequenceLogps`] as plain numbers, computed without gradients on any backend (reference
/// log-probabilities and evaluation).
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceValues {
    /// `Σ log π(token)` over each row's learnt tokens.
    pub logps: Vec<f64>,
    /// Learnt tokens of each row.
    pub tokens: Vec<usize>,
    /// As [`SequenceLogps::mean_logits`].
    pub mean_logits: Vec<f64>,
}

/// [`SequenceValues`] of every row of the batch through `model`.
///
/// # Shapes
/// - ids, loss_mask: `[batch, seq]`
pub fn sequence_logp_values<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    ids: Tensor<B, 2, Int>,
    inputs: &AttentionInputs<B>,
    loss_mask: Tensor<B, 2, Bool>,
) -> SequenceValues {
    let [batch, _] = ids.dims();
    let mut values = SequenceValues { logps: vec![0.0; batch], tokens: vec![0; batch], mean_logits: vec![0.0; batch] };
    let Ok(LearntTokens { logits, targets, rows }) = learnt_token_logits(model, ids, inputs, loss_mask) else {
        return values;
    };
    let to_vec = |t: Tensor<B, 2>| host_values(t);
    let means = to_vec(logits.clone().mean_dim(1));
    let picked = to_vec(log_softmax(logits, 1).gather(1, targets.unsqueeze_dim(1)));
    for ((&row, &logp), &mean) in rows.iter().zip(&picked).zip(&means) {
        values.logps[row] += f64::from(logp);
        values.tokens[row] += 1;
        values.mean_logits[row] += f64::from(mean);
    }
    for (mean, &tokens) in values.mean_logits.iter_mut().zip(&values.tokens) {
        *mean /= tokens.max(1) as f64;
    }
    values
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::backend::Backend;
    use precept_model::lora::Trainable;
    use precept_model::LlamaConfig;

    use super::*;
    use crate::loss::masked_next_token_loss;

    type A = Autodiff<Flex>;

    #[test]
    fn row_sums_equal_the_masked_loss_of_each_row_alone() {
        let device = Default::default();
        A::seed(&device, 5);
        let model = LlamaConfig::tiny().init::<A>(&device).set_trainable(Trainable::All);
        let ids: Vec<i64> = (0..18).map(|i| (i * 11 + 2) % 97).collect();
        let mask: Vec<bool> = (0..18).map(|i| (i % 6) >= 3 || i == 13).collect();
        let ids = Tensor::<A, 2, Int>::from_data(TensorData::new(ids, [3, 6]), &device);
        let mask = Tensor::<A, 2, Bool>::from_data(TensorData::new(mask, [3, 6]), &device);
        let inputs = AttentionInputs::causal(3, 6, 0, &device);
        let found = sequence_logps(&model, ids.clone(), &inputs, mask.clone());
        assert_eq!(found.tokens, [3, 3, 4]);
        let logps: Vec<f32> = found.logps.into_data().convert::<f32>().into_vec().unwrap();
        for (row, &found) in logps.iter().enumerate() {
            let one = |t: Tensor<A, 2, Int>| t.slice([row..row + 1, 0..6]);
            let row_mask = mask.clone().slice([row..row + 1, 0..6]);
            let logits = model.forward(one(ids.clone()), &AttentionInputs::causal(1, 6, 0, &device), None);
            let expected = -masked_next_token_loss(logits, one(ids.clone()), row_mask).sum.into_scalar();
            assert!((found - expected).abs() < 1e-4, "row {row}: {found} vs {expected}");
        }
        let plain_inputs = AttentionInputs::<Flex>::causal(3, 6, 0, &device);
        let values = sequence_logp_values(&model.valid(), ids.inner(), &plain_inputs, mask.inner());
        assert_eq!(values.tokens, found.tokens);
        for (row, (&value, &logp)) in values.logps.iter().zip(&logps).enumerate() {
            assert!((value - f64::from(logp)).abs() < 1e-4, "row {row}: {value} vs {logp}");
            assert!((values.mean_logits[row] - found.mean_logits[row]).abs() < 1e-5);
        }
    }
}
