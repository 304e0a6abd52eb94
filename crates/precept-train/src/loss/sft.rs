//! The supervised fine-tuning loss: next-token cross-entropy over the tokens a mask selects.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, ElementConversion, Float, Int, Tensor, TensorData};
use precept_model::{AttentionInputs, KernelBackend, LlamaForCausalLM};

use super::cross_entropy::CrossEntropyBackend;

/// A summed loss and the number of tokens it covers.
#[derive(Debug, Clone)]
pub struct TokenLoss<B: Backend> {
    /// `Σ -log p(tokenᵢ₊₁ | tokens≤ᵢ)` over the selected positions, shape `[1]`.
    pub sum: Tensor<B, 1>,
    /// How many tokens contributed.
    pub tokens: usize,
}

impl<B: Backend> TokenLoss<B> {
    /// The loss to back-propagate for one micro-batch when the whole accumulated batch has
    /// `total_tokens` loss tokens: `sum / total_tokens`, so every token weighs the same however
    /// the batch was split.
    pub fn normalised(&self, total_tokens: usize) -> Tensor<B, 1> {
        self.sum.clone() / total_tokens.max(1) as f64
    }
}

/// Next-token cross-entropy where `loss_mask` is true: position `i`'s logits predict token `i+1`,
/// and the term for token `i+1` counts when `loss_mask[i+1]` is set (the mask marks the tokens
/// being learnt, as precept-data's `labels_mask` does).
///
/// # Shapes
/// - logits: `[batch, seq, vocab]`
/// - ids, loss_mask: `[batch, seq]`
pub fn masked_next_token_loss<B: Backend>(
    logits: Tensor<B, 3>,
    ids: Tensor<B, 2, Int>,
    loss_mask: Tensor<B, 2, Bool>,
) -> TokenLoss<B> {
    let [batch, _, _] = logits.dims();
    let device = ids.device();
    // Targets and weights are shifted instead of the logits: slicing the `[batch, seq, vocab]`
    // tensor would make every later op on it walk a strided view. The last position gets a
    // dummy target of weight zero.
    let targets = Tensor::cat(vec![shift_left(ids), Tensor::zeros([batch, 1], &device)], 1);
    let selected = Tensor::cat(vec![shift_left(loss_mask), Tensor::<B, 2, Int>::zeros([batch, 1], &device).bool()], 1);
    // A count of booleans: never negative.
    let tokens = selected.clone().int().sum().into_scalar().elem::<i64>().max(0) as usize;
    // log p(target) = logit(target) − logsumexp(logits); the max is a constant shift, so it
    // carries no gradient.
    let max = logits.clone().detach().max_dim(2);
    let log_sum_exp = (logits.clone() - max.clone()).exp().sum_dim(2).log() + max;
    let picked = (logits.gather(2, targets.unsqueeze_dim::<3>(2)) - log_sum_exp).squeeze_dim::<2>(2);
    let weights: Tensor<B, 2, Float> = selected.float();
    TokenLoss { sum: (picked * weights).sum().neg(), tokens }
}

/// The SFT loss of a batch, through `model`'s decoder, with logits computed only where a
/// learnt token is predicted (prompt positions never reach the vocabulary projection).
#[derive(Debug, Clone)]
pub struct SftLoss<B: Backend> {
    /// The summed loss and its token count.
    pub loss: TokenLoss<B>,
    /// How many of those tokens are the argmax prediction.
    pub correct: usize,
}

/// The vocabulary logits at the positions that predict learnt tokens, and those tokens.
#[derive(Debug, Clone)]
pub struct LearntTokens<B: Backend> {
    /// Logits of each predicting position, `[tokens, vocab]`.
    pub logits: Tensor<B, 2>,
    /// The learnt token each position predicts, `[tokens]`.
    pub targets: Tensor<B, 1, Int>,
    /// The batch row of each learnt token.
    pub rows: Vec<usize>,
}

/// Runs `model`'s decoder over the batch and projects to the vocabulary only the hidden states
/// that predict a learnt token (prompt positions never reach the vocabulary projection).
/// Returns `Err` with a zero that belongs to the graph when no token is learnt.
///
/// # Shapes
/// - ids, loss_mask: `[batch, seq]`
pub fn learnt_token_logits<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    ids: Tensor<B, 2, Int>,
    inputs: &AttentionInputs<B>,
    loss_mask: Tensor<B, 2, Bool>,
) -> Result<LearntTokens<B>, Tensor<B, 1>> {
    let [batch, seq] = ids.dims();
    let device = ids.device();
    let hidden = model.model.forward(ids.clone(), inputs, None);
    let d_model = hidden.dims()[2];
    // Position `r·seq + i` predicts token `i + 1` of row `r`.
    let mask: Vec<bool> = loss_mask
        .into_data()
        .into_vec::<bool>()
        .unwrap_or_else(|e| unreachable!("a boolean tensor reads back as booleans: {e:?}"));
    let predicting: Vec<i64> = (0..batch * seq)
        .filter(|&position| position % seq + 1 < seq && mask.get(position + 1).copied().unwrap_or(false))
        .map(|position| position as i64)
        .collect();
    let tokens = predicting.len();
    if tokens == 0 {
        return Err(hidden.sum().mul_scalar(0.0));
    }
    let rows = predicting.iter().map(|&position| position as usize / seq).collect();
    let targets_at: Vec<i64> = predicting.iter().map(|position| position + 1).collect();
    let positions = Tensor::<B, 1, Int>::from_data(TensorData::new(predicting, [tokens]), &device);
    let targets_at = Tensor::<B, 1, Int>::from_data(TensorData::new(targets_at, [tokens]), &device);
    let selected = hidden.reshape([batch * seq, d_model]).select(0, positions);
    let targets = ids.reshape([batch * seq]).select(0, targets_at);
    let logits = model.logits(selected.unsqueeze_dim(0)).squeeze_dim(0);
    Ok(LearntTokens { logits, targets, rows })
}

/// [`masked_next_token_loss`] computed through `model` for training, on the logits of
/// [`learnt_token_logits`] with the fused [`CrossEntropyBackend::row_cross_entropy`].
///
/// # Shapes
/// - ids, loss_mask: `[batch, seq]`
pub fn next_token_loss<B: CrossEntropyBackend + KernelBackend>(
    model: &LlamaForCausalLM<B>,
    ids: Tensor<B, 2, Int>,
    inputs: &AttentionInputs<B>,
    loss_mask: Tensor<B, 2, Bool>,
) -> SftLoss<B> {
    match learnt_token_logits(model, ids, inputs, loss_mask) {
        Err(zero) => SftLoss { loss: TokenLoss { sum: zero, tokens: 0 }, correct: 0 },
        Ok(LearntTokens { logits, targets, rows }) => {
            let predicted = logits.clone().argmax(1).squeeze_dim::<1>(1);
            let correct = predicted.equal(targets.clone()).int().sum().into_scalar().elem::<i64>().max(0) as usize;
            let sum = B::row_cross_entropy(logits, targets).sum();
            SftLoss { loss: TokenLoss { sum, tokens: rows.len() }, correct }
        }
    }
}

/// `x[:, 1:]`.
fn shift_left<B: Backend, K: burn::tensor::BasicOps<B>>(x: Tensor<B, 2, K>) -> Tensor<B, 2, K> {
    let [batch, seq] = x.dims();
    x.slice([0..batch, 1..seq])
}

/// How many of the tokens `loss_mask` selects (after the first position) are the argmax of the
/// previous position's logits: the numerator of TRL's `mean_token_accuracy`.
///
/// # Shapes
/// - logits: `[batch, seq, vocab]`
/// - ids, loss_mask: `[batch, seq]`
pub fn next_token_accuracy<B: Backend>(
    logits: Tensor<B, 3>,
    ids: Tensor<B, 2, Int>,
    loss_mask: Tensor<B, 2, Bool>,
) -> usize {
    let [batch, seq, _] = logits.dims();
    let predicted = logits.argmax(2).squeeze_dim::<2>(2).slice([0..batch, 0..seq - 1]);
    let hits = predicted.equal(shift_left(ids)).bool_and(shift_left(loss_mask));
    hits.int().sum().into_scalar().elem::<i64>().max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::TensorData;

    type B = Flex;

    /// logits[b][s][v] = 3·sin(0.7·(b·S·V + s·V + v)), B=2, S=4, V=5.
    fn logits<Bk: Backend>(device: &Bk::Device) -> Tensor<Bk, 3> {
        let values: Vec<f32> = (0..40).map(|i| 3.0 * (0.7 * i as f64).sin() as f32).collect();
        Tensor::from_data(TensorData::new(values, [2, 4, 5]), device)
    }

    fn ids<Bk: Backend>(device: &Bk::Device) -> Tensor<Bk, 2, Int> {
        Tensor::from_data(TensorData::new(vec![1i64, 4, 0, 2, 3, 3, 1, 0], [2, 4]), device)
    }

    fn mask<Bk: Backend>(device: &Bk::Device) -> Tensor<Bk, 2, Bool> {
        let values = vec![false, false, true, true, false, true, true, false];
        Tensor::from_data(TensorData::new(values, [2, 4]), device)
    }

    // PyTorch (float64), the same inputs:
    //   lg = logits[:, :-1].reshape(-1, V); tg = ids[:, 1:].reshape(-1); m = mask[:, 1:].reshape(-1)
    //   F.cross_entropy(lg[m], tg[m], reduction="sum")  ->  12.631344488382732, m.sum() = 4
    #[test]
    fn masked_loss_matches_pytorch_cross_entropy() {
        let device = Default::default();
        let loss = masked_next_token_loss::<B>(logits(&device), ids(&device), mask(&device));
        assert_eq!(loss.tokens, 4);
        let sum: f32 = loss.sum.clone().into_scalar();
        assert!((sum as f64 - 12.631344488382732).abs() < 1e-4, "{sum}");
        let half: f32 = loss.normalised(8).into_scalar();
        assert!((half - sum / 8.0).abs() < 1e-6);
    }

    #[test]
    fn masked_tokens_get_no_gradient() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let logits = logits::<A>(&device).require_grad();
        let loss = masked_next_token_loss(logits.clone(), ids(&device), mask(&device));
        let grads = loss.sum.backward();
        let grad = logits.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        // Rows predicting an unmasked target: (b0, s0), (b0, s3: no successor), (b1, s2), (b1, s3).
        for (b, s) in [(0, 0), (0, 3), (1, 2), (1, 3)] {
            let row = &grad[(b * 4 + s) * 5..(b * 4 + s + 1) * 5];
            assert!(row.iter().all(|&g| g == 0.0), "({b}, {s}): {row:?}");
        }
        // Rows that are in the loss have gradients summing to zero (softmax - one-hot).
        for (b, s) in [(0, 1), (0, 2), (1, 0), (1, 1)] {
            let row = &grad[(b * 4 + s) * 5..(b * 4 + s + 1) * 5];
            assert!(row.iter().any(|&g| g != 0.0) && row.iter().sum::<f32>().abs() < 1e-5, "({b}, {s}): {row:?}");
        }
    }
}
