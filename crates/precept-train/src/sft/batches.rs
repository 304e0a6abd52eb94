//! The order of training rows: which rows make up micro-batch `n` of a run, as a pure function
//! of the seed (so a resumed run sees exactly the batches an uninterrupted one would), and how a
//! micro-batch becomes tensors.

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use precept_data::{length_buckets, pack, PackedRow, TokenizedExample};
use precept_model::AttentionInputs;

/// The seeded order in which batches of items are visited, epoch by epoch: a pure function of
/// the items' lengths, the batch size, the seed and the micro-batch's index.
#[derive(Debug)]
pub struct BatchOrder {
    lengths: Vec<usize>,
    batch_size: usize,
    seed: u64,
    /// The batches of the epoch computed last, and that epoch's number.
    epoch_batches: Option<(u64, Vec<Vec<usize>>)>,
}

impl BatchOrder {
    /// The order of items with token counts `lengths`.
    pub fn new(lengths: Vec<usize>, batch_size: usize, seed: u64) -> Self {
        Self { lengths, batch_size, seed, epoch_batches: None }
    }

    /// Tokens of the longest item.
    pub fn longest(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// Micro-batches in one pass over the items.
    pub fn batches_per_epoch(&self) -> usize {
        self.lengths.len().div_ceil(self.batch_size)
    }

    /// The items of the run's `index`-th micro-batch (counting from zero across epochs): epoch
    /// `e` visits length-bucketed batches shuffled with `seed + e`.
    pub fn micro_batch(&mut self, index: u64) -> &[usize] {
        let per_epoch = self.batches_per_epoch().max(1) as u64;
        let epoch = index / per_epoch;
        if self.epoch_batches.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let batches = length_buckets(&self.lengths, self.batch_size, self.seed.wrapping_add(epoch));
            self.epoch_batches = Some((epoch, batches));
        }
        match &self.epoch_batches {
            Some((_, batches)) => &batches[(index % per_epoch) as usize],
            None => &[],
        }
    }

    /// Every item, in order, in batches of the order's size (for evaluation).
    pub fn in_order(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        (0..self.lengths.len())
            .step_by(self.batch_size.max(1))
            .map(|start| start..(start + self.batch_size).min(self.lengths.len()))
    }
}

/// Training rows and the [`BatchOrder`] in which they are visited.
#[derive(Debug)]
pub struct BatchPlan {
    rows: Vec<PackedRow>,
    order: BatchOrder,
}

impl BatchPlan {
    /// One row per example, or examples packed into rows of at most `max_length` tokens.
    pub fn new(
        examples: Vec<TokenizedExample>,
        packing: bool,
        max_length: usize,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        let rows: Vec<PackedRow> =
            if packing { pack(&examples, max_length) } else { examples.into_iter().map(PackedRow::from).collect() };
        let lengths = rows.iter().map(|row| row.input_ids.len()).collect();
        Self { rows, order: BatchOrder::new(lengths, batch_size, seed) }
    }

    /// Tokens of the longest row.
    pub fn longest(&self) -> usize {
        self.order.longest()
    }

    /// Micro-batches in one pass over the rows.
    pub fn batches_per_epoch(&self) -> usize {
        self.order.batches_per_epoch()
    }

    /// The rows of the run's `index`-th micro-batch (see [`BatchOrder::micro_batch`]).
    pub fn micro_batch(&mut self, index: u64) -> Vec<&PackedRow> {
        let indices = self.order.micro_batch(index);
        indices.iter().map(|&i| &self.rows[i]).collect()
    }

    /// Every row, in order, in batches of the plan's size (for evaluation).
    pub fn in_order(&self) -> impl Iterator<Item = Vec<&PackedRow>> {
        self.order.in_order().map(|range| self.rows[range].iter().collect())
    }
}

/// A micro-batch as tensors: right-padded ids, the loss mask, and attention inputs that keep
/// each packed example (and the padding) to itself.
#[derive(Debug, Clone)]
pub struct BatchTensors<B: Backend> {
    /// Token ids, `[batch, seq]`.
    pub ids: Tensor<B, 2, Int>,
    /// Which tokens are learnt, `[batch, seq]`.
    pub loss_mask: Tensor<B, 2, Bool>,
    /// Positions and attention mask.
    pub inputs: AttentionInputs<B>,
    /// Tokens predicted under the loss (each row's masked tokens after its first).
    pub loss_tokens: usize,
    /// Real (non-padding) input tokens.
    pub input_tokens: usize,
}

/// Loss tokens of a row: masked tokens that have a predecessor in their own example.
pub fn loss_tokens(row: &PackedRow) -> usize {
    let mut count = 0;
    let mut start = 0;
    for &len in &row.segments {
        count += row.labels_mask[start..start + len].iter().skip(1).filter(|&&m| m).count();
        start += len;
    }
    count
}

impl<B: Backend> BatchTensors<B> {
    /// Pads `rows` on the right to the longest; padding is a segment of its own with no loss,
    /// and the first token of every packed example is never a target (it has no predecessor
    /// in its example).
    pub fn new(rows: &[&PackedRow], device: &B::Device) -> Self {
        let seq = rows.iter().map(|row| row.input_ids.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * seq);
        let mut mask = Vec::with_capacity(rows.len() * seq);
        let mut segments = Vec::with_capacity(rows.len());
        for row in rows {
            let pad = seq - row.input_ids.len();
            ids.extend(row.input_ids.iter().map(|&id| i64::from(id)));
            ids.extend(std::iter::repeat_n(0i64, pad));
            let mut row_mask = row.labels_mask.clone();
            let mut start = 0;
            for &len in &row.segments {
                if let Some(first) = row_mask.get_mut(start) {
                    *first = false;
                }
                start += len;
            }
            mask.extend(row_mask);
            mask.extend(std::iter::repeat_n(false, pad));
            let mut row_segments = row.segments.clone();
            if pad > 0 {
                row_segments.push(pad);
            }
            segments.push(row_segments);
        }
        let batch = rows.len();
        let packed = segments.iter().any(|s| s.len() > 1);
        let inputs = if packed {
            AttentionInputs::packed(&segments, seq, device)
        } else {
            AttentionInputs::causal(batch, seq, 0, device)
        };
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [batch, seq]), device),
            loss_mask: Tensor::from_data(TensorData::new(mask, [batch, seq]), device),
            inputs,
            loss_tokens: rows.iter().map(|row| loss_tokens(row)).sum(),
            input_tokens: rows.iter().map(|row| row.input_ids.len()).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    fn example(len: usize, first: u32) -> TokenizedExample {
        TokenizedExample { input_ids: (first..first + len as u32).collect(), labels_mask: vec![true; len] }
    }

    #[test]
    fn every_epoch_visits_every_row_once_and_the_order_depends_only_on_the_seed() {
        let examples: Vec<_> = (0..7).map(|i| example(3 + i, 10 * i as u32)).collect();
        let mut plan = BatchPlan::new(examples.clone(), false, 64, 2, 5);
        let mut again = BatchPlan::new(examples, false, 64, 2, 5);
        assert_eq!(plan.batches_per_epoch(), 4);
        for epoch in 0..2u64 {
            let mut seen: Vec<u32> = Vec::new();
            for batch in 0..4 {
                seen.extend(plan.micro_batch(epoch * 4 + batch).iter().map(|row| row.input_ids[0]));
            }
            seen.sort();
            assert_eq!(seen, [0, 10, 20, 30, 40, 50, 60]);
        }
        // Random access (a resumed run) gives the batches a sequential run saw.
        assert_eq!(again.micro_batch(6), plan.micro_batch(6));
        assert_eq!(again.micro_batch(1), plan.micro_batch(1));
    }

    #[test]
    fn padding_and_packed_boundaries_carry_no_loss() {
        let long = PackedRow { input_ids: vec![1, 2, 3, 4, 5], labels_mask: vec![true; 5], segments: vec![2, 3] };
        let short = PackedRow { input_ids: vec![6, 7], labels_mask: vec![false, true], segments: vec![2] };
        let batch = BatchTensors::<Flex>::new(&[&long, &short], &Default::default());
        let mask: Vec<bool> = batch.loss_mask.into_data().into_vec().unwrap();
        assert_eq!(mask, [false, true, false, true, true, false, true, false, false, false]);
        assert_eq!(batch.loss_tokens, 3 + 1);
        assert_eq!(batch.input_tokens, 7);
        let positions: Vec<i64> = batch.inputs.positions.into_data().convert::<i64>().into_vec().unwrap();
        assert_eq!(positions, [0, 1, 0, 1, 2, 0, 1, 0, 1, 2]);
    }
}
