//! Turning prepared examples into training rows: packing several examples into one row, and
//! grouping unpacked examples by length so batches carry little padding.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::sft::mask::TokenizedExample;

/// Several examples concatenated into one row. Attention must stay inside each segment and
/// positions restart in each (`segments` feeds the model's packed attention inputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedRow {
    /// The examples' ids, one after another.
    pub input_ids: Vec<u32>,
    /// Their loss masks, one after another.
    pub labels_mask: Vec<bool>,
    /// Length of each example in the row, in order; they sum to the row's length.
    pub segments: Vec<usize>,
}

impl From<TokenizedExample> for PackedRow {
    /// A row holding one example.
    fn from(example: TokenizedExample) -> Self {
        Self { segments: vec![example.len()], input_ids: example.input_ids, labels_mask: example.labels_mask }
    }
}

/// Packs examples into rows of at most `max_length` tokens by best-fit decreasing: longest
/// examples first, each into the fullest row it still fits. No example is split; one longer than
/// `max_length` gets a row of its own (truncate before packing to avoid that).
///
/// Deterministic: ties keep the input order.
pub fn pack(examples: &[TokenizedExample], max_length: usize) -> Vec<PackedRow> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(examples[i].len()));
    let mut rows: Vec<PackedRow> = Vec::new();
    for index in order {
        let example = &examples[index];
        let best = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.input_ids.len() + example.len() <= max_length)
            .max_by_key(|(position, row)| (row.input_ids.len(), std::cmp::Reverse(*position)))
            .map(|(position, _)| position);
        let row = match best {
            Some(position) => &mut rows[position],
            None => {
                rows.push(PackedRow { input_ids: Vec::new(), labels_mask: Vec::new(), segments: Vec::new() });
                let last = rows.len() - 1;
                &mut rows[last]
            }
        };
        row.input_ids.extend(&example.input_ids);
        row.labels_mask.extend(&example.labels_mask);
        row.segments.push(example.len());
    }
    rows
}

/// Groups example indices into batches of at most `batch_size` whose lengths are close: indices
/// are shuffled with `seed`, cut into pools of 50 batches, each pool sorted by length and cut
/// into batches, and the batches shuffled. Every index appears exactly once.
pub fn length_buckets(lengths: &[usize], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for pool in order.chunks(batch_size * 50) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| lengths[i]);
        batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(len: usize, first_id: u32) -> TokenizedExample {
        TokenizedExample {
            input_ids: (first_id..first_id + len as u32).collect(),
            labels_mask: (0..len).map(|i| i % 2 == 1).collect(),
        }
    }

    #[test]
    fn packing_keeps_every_example_whole_within_the_row_limit() {
        let lengths = [7, 3, 5, 2, 9, 4, 1, 6];
        let examples: Vec<_> = lengths.iter().enumerate().map(|(i, &n)| example(n, 100 * i as u32)).collect();
        let rows = pack(&examples, 10);
        let mut seen: Vec<Vec<u32>> = Vec::new();
        for row in &rows {
            assert!(row.input_ids.len() <= 10);
            assert_eq!(row.segments.iter().sum::<usize>(), row.input_ids.len());
            assert_eq!(row.labels_mask.len(), row.input_ids.len());
            let mut start = 0;
            for &len in &row.segments {
                seen.push(row.input_ids[start..start + len].to_vec());
                start += len;
            }
        }
        let mut expected: Vec<Vec<u32>> = examples.iter().map(|e| e.input_ids.clone()).collect();
        expected.sort();
        seen.sort();
        assert_eq!(seen, expected);
        // 37 tokens fit in 4 rows of 10; best-fit decreasing finds that.
        assert_eq!(rows.len(), 4);
    }

    #[test]
    fn an_example_longer_than_the_limit_gets_its_own_row() {
        let rows = pack(&[example(12, 0), example(3, 50)], 10);
        assert_eq!(rows.iter().map(|r| r.segments.clone()).collect::<Vec<_>>(), vec![vec![12], vec![3]]);
    }

    #[test]
    fn length_buckets_cover_every_index_once_and_group_similar_lengths() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 500 + 1).collect();
        let batches = length_buckets(&lengths, 8, 3);
        let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.len() <= 8));
        let spread: usize = batches
            .iter()
            .map(|b| {
                let (min, max) =
                    (b.iter().map(|&i| lengths[i]).min().unwrap(), b.iter().map(|&i| lengths[i]).max().unwrap());
                max - min
            })
            .sum::<usize>()
            / batches.len();
        assert!(spread < 30, "mean spread {spread}");
        assert_eq!(batches, length_buckets(&lengths, 8, 3));
        assert_ne!(batches, length_buckets(&lengths, 8, 4));
    }
}
