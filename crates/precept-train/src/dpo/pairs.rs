//! [`PairPlan`]: preference pairs, the seeded order their micro-batches are visited in, and how a
//! micro-batch becomes one `[chosen; rejected]` batch of rows.

use std::ops::Range;

use burn::tensor::backend::Backend;
use precept_data::{hash_json, PackedRow, TokenizedPair};

use crate::sft::{BatchOrder, BatchTensors};

/// Preference pairs as rows, and the order in which batches of them are visited.
#[derive(Debug)]
pub struct PairPlan {
    /// Each pair's chosen and rejected row.
    pairs: Vec<[PackedRow; 2]>,
    order: BatchOrder,
}

impl PairPlan {
    /// Batches of `batch_size` pairs, bucketed by the longer side of each pair.
    pub fn new(pairs: Vec<TokenizedPair>, batch_size: usize, seed: u64) -> Self {
        let pairs: Vec<[PackedRow; 2]> =
            pairs.into_iter().map(|pair| [PackedRow::from(pair.chosen), PackedRow::from(pair.rejected)]).collect();
        let lengths = pairs.iter().map(|[c, r]| c.input_ids.len().max(r.input_ids.len())).collect();
        Self { pairs, order: BatchOrder::new(lengths, batch_size, seed) }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// A hash of every pair's ids and masks, in order.
    pub fn fingerprint(&self) -> String {
        let rows: Vec<(&[u32], &[bool])> =
            self.pairs.iter().flatten().map(|row| (&row.input_ids[..], &row.labels_mask[..])).collect();
        hash_json(&rows)
    }

    /// Tokens of the longest row (of either side).
    pub fn longest(&self) -> usize {
        self.order.longest()
    }

    /// Micro-batches in one pass over the pairs.
    pub fn batches_per_epoch(&self) -> usize {
        self.order.batches_per_epoch()
    }

    /// The pairs of the run's `index`-th micro-batch (see [`BatchOrder::micro_batch`]).
    pub fn micro_batch(&mut self, index: u64) -> Vec<usize> {
        self.order.micro_batch(index).to_vec()
    }

    /// Every pair, in order, in batches of the plan's size.
    pub fn in_order(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.order.in_order()
    }

    /// The pairs `indices` as one batch: their chosen rows, then their rejected rows (TRL's
    /// concatenated layout), right-padded to the longest.
    pub fn tensors<B: Backend>(&self, indices: &[usize], device: &B::Device) -> BatchTensors<B> {
        let rows: Vec<&PackedRow> =
            [0, 1].iter().flat_map(|&side| indices.iter().map(move |&i| &self.pairs[i][side])).collect();
        BatchTensors::new(&rows, device)
    }
}
