//! Per-token log-probabilities of sampled completions: each row is its prompt followed by its
//! completion, run through the decoder in one right-padded batch; only the positions that
//! predict a completion token reach the vocabulary projection.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use precept_data::PackedRow;
use precept_model::{from_host, KernelBackend, LlamaForCausalLM};

use crate::loss::{learnt_token_logits, LearntTokens};
use crate::sft::BatchTensors;

/// Prompt-plus-completion rows of one micro-batch and their completion lengths.
#[derive(Debug, Clone)]
pub struct CompletionRows {
    rows: Vec<PackedRow>,
    lengths: Vec<usize>,
}

impl CompletionRows {
    /// One row per `(prompt, completion)`, learning the completion's tokens.
    ///
    /// # Panics
    /// If a prompt or a completion is empty.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a [u32], &'a [u32])>) -> Self {
        let (rows, lengths) = pairs
            .into_iter()
            .map(|(prompt, completion)| {
                assert!(!prompt.is_empty() && !completion.is_empty(), "a completion row needs a prompt and a token");
                let input_ids = [prompt, completion].concat();
                let labels_mask = (0..input_ids.len()).map(|i| i >= prompt.len()).collect();
                let row = PackedRow { segments: vec![input_ids.len()], input_ids, labels_mask };
                (row, completion.len())
            })
            .unzip();
        Self { rows, lengths }
    }

    /// Completion tokens of each row.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// The longest completion: the width of the per-token tensors.
    pub fn width(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// Real input tokens (prompts and completions).
    pub fn input_tokens(&self) -> usize {
        self.rows.iter().map(|row| row.input_ids.len()).sum()
    }

    /// 1 on each row's completion tokens, 0 on padding, `[rows, width]`.
    pub fn mask<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        let width = self.width();
        let values = self.lengths.iter().flat_map(|&len| (0..width).map(move |j| if j < len { 1.0 } else { 0.0 }));
        from_host(values.collect(), [self.rows.len(), width], device)
    }

    /// Values given per row (each as long as its completion) as a `[rows, width]` tensor,
    /// zero-padded.
    ///
    /// # Panics
    /// If a row's values are not as long as its completion.
    pub fn padded<B: Backend>(&self, values: &[Vec<f32>], device: &B::Device) -> Tensor<B, 2> {
        let width = self.width();
        let mut flat = Vec::with_capacity(self.rows.len() * width);
        for (row, &len) in values.iter().zip(&self.lengths) {
            assert_eq!(row.len(), len, "one value per completion token");
            flat.extend_from_slice(row);
            flat.extend(std::iter::repeat_n(0.0, width - len));
        }
        from_host(flat, [self.rows.len(), width], device)
    }

    /// `log π(token)` of every completion token under `model`, `[rows, width]` (0 on padding),
    /// with the logits divided by `temperature` as sampling divided them. `pick(logits, targets)`
    /// gives the targets' log-probabilities (differentiably in training).
    pub fn token_logps<B: KernelBackend>(
        &self,
        model: &LlamaForCausalLM<B>,
        temperature: f32,
        pick: impl FnOnce(Tensor<B, 2>, Tensor<B, 1, Int>) -> Tensor<B, 1>,
    ) -> Tensor<B, 2> {
        let device = model.model.embed_tokens.weight.device();
        let rows: Vec<&PackedRow> = self.rows.iter().collect();
        let batch = BatchTensors::<B>::new(&rows, &device);
        let [count, width] = [self.rows.len(), self.width()];
        let LearntTokens { logits, targets, .. } =
            match learnt_token_logits(model, batch.ids, &batch.inputs, batch.loss_mask) {
                Ok(learnt) => learnt,
                Err(zero) => return zero.reshape([1, 1]).expand([count, width]),
            };
        let logits = if temperature == 1.0 { logits } else { logits.div_scalar(f64::from(temperature)) };
        let token_logps = pick(logits, targets);
        // The learnt tokens come row by row in order: spread them into `[rows, width]`, padding
        // reading the zero appended after them.
        let tokens: usize = self.lengths.iter().sum();
        let mut index = Vec::with_capacity(count * width);
        let mut offset = 0;
        for &len in &self.lengths {
            index.extend((0..width).map(|j| if j < len { (offset + j) as i64 } else { tokens as i64 }));
            offset += len;
        }
        let index = Tensor::<B, 1, Int>::from_data(burn::tensor::TensorData::new(index, [count * width]), &device);
        let with_zero = Tensor::cat(vec![token_logps, Tensor::zeros([1], &device)], 0);
        with_zero.select(0, index).reshape([count, width])
    }
}

/// `log softmax(logits)[target]` per row, on any backend (no fused kernel): for log-probabilities
/// computed without gradients.
pub fn gathered_logps<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [rows, _] = logits.dims();
    log_softmax(logits, 1).gather(1, targets.reshape([rows, 1])).reshape([rows])
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::TensorData;
    use precept_model::{host_values, AttentionInputs, LlamaConfig};

    use super::*;
    use crate::loss::CrossEntropyBackend;

    #[test]
    fn completion_log_probabilities_equal_the_full_log_softmax_and_padding_is_zero() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        <Flex as Backend>::seed(&device, 5);
        let trained = LlamaConfig::tiny().init::<A>(&device);
        let model = trained.valid();
        let rows = CompletionRows::new([(&[1u32, 2, 3][..], &[4u32, 5][..]), (&[6u32][..], &[7u32, 8, 9][..])]);
        assert_eq!((rows.width(), rows.input_tokens()), (3, 9));
        let fast = host_values(rows.token_logps(&model, 0.7, gathered_logps));
        // Row 0: tokens 4, 5 at positions 3, 4 of [1 2 3 4 5]; predicted by positions 2, 3.
        let ids = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4, 5], [1, 5]), &device);
        let logits = model.forward(ids, &AttentionInputs::causal(1, 5, 0, &device), None);
        let all = host_values(log_softmax(logits.div_scalar(0.7), 2));
        let vocab = all.len() / 5;
        let expected = [all[2 * vocab + 4], all[3 * vocab + 5]];
        assert!((fast[0] - expected[0]).abs() < 1e-5 && (fast[1] - expected[1]).abs() < 1e-5, "{fast:?}");
        assert_eq!(fast[2], 0.0, "padding reads zero");
        assert!(fast[3..].iter().all(|&v| v < 0.0), "{fast:?}");
        // The fused training path gives the same numbers.
        let grad = host_values(rows.token_logps(&trained, 0.7, |l, t| A::row_cross_entropy(l, t).neg()));
        assert!(fast.iter().zip(&grad).all(|(a, b)| (a - b).abs() < 1e-5), "{fast:?} {grad:?}");
    }
}
