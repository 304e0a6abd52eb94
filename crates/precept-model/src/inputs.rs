//! Position ids and attention masks for one forward call.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

/// Where each token sits and which keys each query may attend to.
#[derive(Debug, Clone)]
pub struct AttentionInputs<B: Backend> {
    /// Rotary position of each new token, `[batch, seq]`.
    pub positions: Tensor<B, 2, Int>,
    /// `true` where a query must not see a key, `[batch, 1, seq, cached + seq]`; `None` when
    /// every query sees every key (one new token per row, no padding).
    pub mask: Option<Tensor<B, 4, Bool>>,
}

impl<B: Backend> AttentionInputs<B> {
    /// Causal attention for `seq` new tokens after `cached` ones, no padding.
    pub fn causal(batch: usize, seq: usize, cached: usize, device: &B::Device) -> Self {
        Self::left_padded(&vec![0; batch], seq, cached, device)
    }

    /// Causal attention for rows left-padded by `pad[row]` tokens (counted from the start of the
    /// cached sequence). Padding keys are hidden from every query; a padding query sees only
    /// itself, which keeps its (unused) output finite.
    pub fn left_padded(pad: &[usize], seq: usize, cached: usize, device: &B::Device) -> Self {
        Self::padded_after(&vec![0; pad.len()], pad, seq, cached, device)
    }

    /// Causal attention for rows that each start with `start[row]` cached tokens of their own (a
    /// prefix filled once for all of them, or kept from an earlier call), then `pad[row]` padding
    /// positions, then the rest of their tokens. Each row's tokens after the padding continue its
    /// first tokens' positions; padding is hidden as in [`Self::left_padded`].
    ///
    /// # Panics
    /// If `start` and `pad` differ in length.
    pub fn padded_after(start: &[usize], pad: &[usize], seq: usize, cached: usize, device: &B::Device) -> Self {
        assert_eq!(start.len(), pad.len(), "one start and one padding length per row");
        let (batch, total) = (pad.len(), cached + seq);
        if seq == 1 && pad.iter().all(|&p| p == 0) {
            let positions = TensorData::new(vec![cached as i64; batch], [batch, 1]);
            return Self { positions: Tensor::from_data(positions, device), mask: None };
        }
        let mut positions = Vec::with_capacity(batch * seq);
        let mut mask = Vec::with_capacity(batch * seq * total);
        for (&first, &p) in start.iter().zip(pad) {
            let padding = first..first + p;
            for i in cached..total {
                positions.push(if i < first { i } else { i.saturating_sub(p) } as i64);
                mask.extend((0..total).map(|j| j > i || (padding.contains(&j) && j != i)));
            }
        }
        Self {
            positions: Tensor::from_data(TensorData::new(positions, [batch, seq]), device),
            mask: Some(Tensor::from_data(TensorData::new(mask, [batch, 1, seq, total]), device)),
        }
    }

    /// Several sequences packed into each row: `segments[row]` lists their lengths, which sum to
    /// `seq`. Positions restart at zero in every segment and attention stays inside it.
    ///
    /// # Panics
    /// If a row's segment lengths do not sum to `seq`.
    pub fn packed(segments: &[Vec<usize>], seq: usize, device: &B::Device) -> Self {
        let batch = segments.len();
        let mut positions = Vec::with_capacity(batch * seq);
        let mut mask = Vec::with_capacity(batch * seq * seq);
        for lengths in segments {
            assert_eq!(lengths.iter().sum::<usize>(), seq, "segment lengths must fill the row");
            let mut start = 0;
            for &len in lengths {
                for i in 0..len {
                    positions.push(i as i64);
                    mask.extend((0..seq).map(|j| j < start || j > start + i));
                }
                start += len;
            }
        }
        Self {
            positions: Tensor::from_data(TensorData::new(positions, [batch, seq]), device),
            mask: Some(Tensor::from_data(TensorData::new(mask, [batch, 1, seq, seq]), device)),
        }
    }
}
