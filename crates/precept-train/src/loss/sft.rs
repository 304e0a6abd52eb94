//! The supervised fine-tuning loss: next-token cross-entropy over the tokens a mask selects.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, ElementConversion, Float, Int, Tensor};

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
    let [batch, seq, vocab] = logits.dims();
    let predictions = logits.slice([0..batch, 0..seq - 1, 0..vocab]);
    let targets = ids.slice([0..batch, 1..seq]).unsqueeze_dim::<3>(2);
    let selected = loss_mask.slice([0..batch, 1..seq]);
    // A count of booleans: never negative.
    let tokens = selected.clone().int().sum().into_scalar().elem::<i64>().max(0) as usize;
    let picked = log_softmax(predictions, 2).gather(2, targets).squeeze_dim::<2>(2);
    let weights: Tensor<B, 2, Float> = selected.float();
    TokenLoss { sum: (picked * weights).sum().neg(), tokens }
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
    let [batch, seq, vocab] = logits.dims();
    let predicted = logits.slice([0..batch, 0..seq - 1, 0..vocab]).argmax(2).squeeze_dim::<2>(2);
    let hits = predicted.equal(ids.slice([0..batch, 1..seq])).bool_and(loss_mask.slice([0..batch, 1..seq]));
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
