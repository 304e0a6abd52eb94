//! [`HostKv`]: a key/value cache in host memory that grows in place, and attention computed
//! directly over it.
//!
//! A cache of tensors is extended by concatenation, which copies every cached key and value of
//! every layer at every decoding step: at a batch of 16 over a few hundred positions that copy
//! moves as many bytes as the weights themselves. Here each `(row, kv head)` keeps its keys and
//! values in its own growing buffer, a step appends only its new positions, and attention reads
//! the buffers where they lie: two products per `(row, kv head)` (scores `Q·Kᵀ`, then `P·V`) with
//! every query head of the group at once, computed in parallel.

use std::ops::Range;

use rayon::prelude::*;

use crate::host_math::softmax_in_place;
use crate::strided::{product, Target, View, Write};

/// Query positions handed to a thread at a time during prefill.
const TASK_POSITIONS: usize = 32;

/// The cached keys and values of one layer, one buffer per `(row, kv head)` of `[len, head_dim]`.
#[derive(Debug, Clone)]
pub struct HostKv {
    kv_heads: usize,
    head_dim: usize,
    len: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

/// One row's cached keys and values in one layer, without padding: per kv head `[len, head_dim]`.
#[derive(Debug, Clone)]
pub struct HostRowKv {
    head_dim: usize,
    len: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

impl HostRowKv {
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the row holds no positions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        2 * self.keys.len() * self.len * self.head_dim * std::mem::size_of::<f32>()
    }
}

/// The layout of one call's queries and keys.
#[derive(Debug, Clone, Copy)]
pub struct HostShape {
    /// Rows of the batch.
    pub batch: usize,
    /// New positions in this call.
    pub seq: usize,
    /// Query heads (a multiple of the cache's key/value heads).
    pub heads: usize,
}

impl HostKv {
    /// An empty cache for `kv_heads` heads of `head_dim` values.
    pub fn new(kv_heads: usize, head_dim: usize) -> Self {
        Self { kv_heads, head_dim, len: 0, keys: Vec::new(), values: Vec::new() }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends this call's keys and values, each `[batch, seq, kv_heads·head_dim]` row-major.
    ///
    /// # Panics
    /// If the lengths do not match `batch · seq · kv_heads · head_dim`, or `batch` differs from
    /// the cached rows'.
    pub fn append(&mut self, keys: &[f32], values: &[f32], [batch, seq]: [usize; 2]) {
        let (kv_heads, head_dim) = (self.kv_heads, self.head_dim);
        assert_eq!(
            keys.len(),
            batch * seq * kv_heads * head_dim,
            "keys are not [{batch}, {seq}, {kv_heads}·{head_dim}]"
        );
        assert_eq!(values.len(), keys.len(), "values and keys differ in size");
        if self.keys.is_empty() {
            self.keys = vec![Vec::new(); batch * kv_heads];
            self.values = vec![Vec::new(); batch * kv_heads];
        }
        assert_eq!(self.keys.len(), batch * kv_heads, "the cache holds a different number of rows");
        for (buffers, new) in [(&mut self.keys, keys), (&mut self.values, values)] {
            for (buffer, cache) in buffers.iter_mut().enumerate() {
                let (row, head) = (buffer / kv_heads, buffer % kv_heads);
                for position in 0..seq {
                    let start = ((row * seq + position) * kv_heads + head) * head_dim;
                    cache.extend_from_slice(&new[start..start + head_dim]);
                }
            }
        }
        self.len += seq;
    }

    /// Keeps the batch rows listed in `rows` (indices into the current batch, repeats allowed).
    /// A row's buffers move to its last place in `rows` and are copied to any earlier ones.
    pub fn retain_rows(&mut self, rows: &[usize]) {
        let kv_heads = self.kv_heads;
        let pick = |buffers: &mut [Vec<f32>]| -> Vec<Vec<f32>> {
            let mut picked: Vec<Vec<f32>> = Vec::with_capacity(rows.len() * kv_heads);
            for (place, &row) in rows.iter().enumerate() {
                let again = rows[place + 1..].contains(&row);
                for buffer in &mut buffers[row * kv_heads..(row + 1) * kv_heads] {
                    picked.push(if again { buffer.clone() } else { std::mem::take(buffer) });
                }
            }
            picked
        };
        self.keys = pick(&mut self.keys);
        self.values = pick(&mut self.values);
    }

    /// Row `row`'s keys and values without the positions in `skip` (its padding), to seed a
    /// later cache through [`Self::seeded`].
    pub fn row_without(&self, row: usize, skip: Range<usize>) -> HostRowKv {
        let (kv_heads, head_dim) = (self.kv_heads, self.head_dim);
        let pick = |buffers: &[Vec<f32>]| -> Vec<Vec<f32>> {
            let buffers = &buffers[row * kv_heads..(row + 1) * kv_heads];
            buffers.iter().map(|b| [&b[..skip.start * head_dim], &b[skip.end * head_dim..]].concat()).collect()
        };
        HostRowKv { head_dim, len: self.len - skip.len(), keys: pick(&self.keys), values: pick(&self.values) }
    }

    /// A cache with this one's heads, of `len` positions, whose rows begin with the first `keep`
    /// positions of the given rows; the positions after those hold zeros, for the attention mask
    /// to hide.
    ///
    /// # Panics
    /// If a row has other heads, holds fewer than `keep` positions, or `keep` exceeds `len`.
    pub fn seeded(&self, rows: &[(&HostRowKv, usize)], len: usize) -> Self {
        let (kv_heads, head_dim) = (self.kv_heads, self.head_dim);
        let mut cache = Self { kv_heads, head_dim, len, keys: Vec::new(), values: Vec::new() };
        for &(row, keep) in rows {
            assert!(row.keys.len() == kv_heads && row.head_dim == head_dim, "a row of another cache's heads");
            assert!(keep <= row.len && keep <= len, "{keep} positions of a row of {} into {len}", row.len);
            let start = |buffer: &Vec<f32>| {
                let mut kept = Vec::with_capacity(len * head_dim);
                kept.extend_from_slice(&buffer[..keep * head_dim]);
                kept.resize(len * head_dim, 0.0);
                kept
            };
            cache.keys.extend(row.keys.iter().map(start));
            cache.values.extend(row.values.iter().map(start));
        }
        cache
    }

    /// Scaled dot-product attention of `queries` (`[batch, seq, heads·head_dim]`, the last `seq`
    /// positions of the cache) over every cached position, `[batch, seq, heads·head_dim]`.
    ///
    /// `mask` (`[batch, seq, len]`, `true` where a query must not see a key) hides keys; without
    /// it every query sees every key. Query head `j` reads key/value head `j / (heads / kv_heads)`.
    ///
    /// # Panics
    /// If the shapes disagree with the cache.
    pub fn attend(&self, queries: &[f32], shape: HostShape, mask: Option<&[bool]>) -> Vec<f32> {
        let HostShape { batch, seq, heads } = shape;
        let (kv_heads, head_dim, len) = (self.kv_heads, self.head_dim, self.len);
        assert_eq!(
            queries.len(),
            batch * seq * heads * head_dim,
            "queries are not [{batch}, {seq}, {heads}·{head_dim}]"
        );
        assert!(
            heads % kv_heads == 0 && seq <= len,
            "{heads} heads over {kv_heads} kv heads, {seq} of {len} positions"
        );
        assert_eq!(self.keys.len(), batch * kv_heads, "the cache holds a different number of rows");
        if let Some(mask) = mask {
            assert_eq!(mask.len(), batch * seq * len, "the mask is not [{batch}, {seq}, {len}]");
        }
        let tasks: Vec<(usize, usize, usize)> = (0..batch)
            .flat_map(|row| {
                (0..kv_heads).flat_map(move |head| (0..seq).step_by(TASK_POSITIONS).map(move |from| (row, head, from)))
            })
            .collect();
        let blocks: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(row, head, from)| {
                let positions = from..(from + TASK_POSITIONS).min(seq);
                let block = QueryBlock { row, head, positions, shape, mask };
                self.attend_block(queries, &block)
            })
            .collect();
        let group = heads / kv_heads;
        let mut out = vec![0.0; queries.len()];
        for (&(row, head, from), block) in tasks.iter().zip(blocks) {
            for (offset, values) in block.chunks_exact(group * head_dim).enumerate() {
                let start = ((row * seq + from + offset) * heads + head * group) * head_dim;
                out[start..start + group * head_dim].copy_from_slice(values);
            }
        }
        out
    }

    /// Attention of one block's queries, `[positions, group·head_dim]`.
    fn attend_block(&self, queries: &[f32], block: &QueryBlock<'_>) -> Vec<f32> {
        let HostShape { seq, heads, .. } = block.shape;
        let (head_dim, len) = (self.head_dim, self.len);
        let group = heads / self.kv_heads;
        // The block's query heads in order, one contiguous `[rows, head_dim]` matrix.
        let mut q = Vec::with_capacity(block.positions.len() * group * head_dim);
        for position in block.positions.clone() {
            let start = ((block.row * seq + position) * heads + block.head * group) * head_dim;
            q.extend_from_slice(&queries[start..start + group * head_dim]);
        }
        let mask_row = |position: usize| block.mask.map(|m| &m[(block.row * seq + position) * len..][..len]);
        // Keys past the last one any query of the block sees take no part.
        let visible = block
            .positions
            .clone()
            .map(|p| match mask_row(p) {
                Some(hidden) => hidden.iter().rposition(|&h| !h).map_or(0, |last| last + 1),
                None => len,
            })
            .max()
            .unwrap_or(0);
        let rows = q.len() / head_dim;
        let buffer = block.row * self.kv_heads + block.head;
        let (keys, values) = (&self.keys[buffer], &self.values[buffer]);
        let mut scores = vec![0.0f32; rows * visible];
        let scale = 1.0 / (head_dim as f32).sqrt();
        let query = View { values: &q, at: 0, strides: [head_dim, 1] };
        let key = View { values: keys, at: 0, strides: [head_dim, 1] };
        product(
            [rows, visible, head_dim],
            query,
            key.t(),
            Target { values: &mut scores, row_stride: visible },
            Write::Set(scale),
        );
        for (index, scores) in scores.chunks_exact_mut(visible.max(1)).take(rows).enumerate() {
            let position = block.positions.start + index / group;
            softmax_in_place(scores, mask_row(position).map(|hidden| &hidden[..visible]));
        }
        let mut out = vec![0.0f32; rows * head_dim];
        let weights = View { values: &scores, at: 0, strides: [visible, 1] };
        let value = View { values, at: 0, strides: [head_dim, 1] };
        product(
            [rows, head_dim, visible],
            weights,
            value,
            Target { values: &mut out, row_stride: head_dim },
            Write::Set(1.0),
        );
        out
    }
}

/// The queries of one row and key/value head at some consecutive positions.
struct QueryBlock<'a> {
    row: usize,
    head: usize,
    positions: std::ops::Range<usize>,
    shape: HostShape,
    mask: Option<&'a [bool]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention computed naively in f64, `[batch, seq, heads·head_dim]`.
    fn naive(
        queries: &[f32],
        keys: &[f32],
        values: &[f32],
        shape: HostShape,
        kv: [usize; 3],
        mask: Option<&[bool]>,
    ) -> Vec<f32> {
        let HostShape { batch, seq, heads } = shape;
        let [kv_heads, head_dim, len] = kv;
        let group = heads / kv_heads;
        let mut out = vec![0.0; queries.len()];
        for b in 0..batch {
            for s in 0..seq {
                for h in 0..heads {
                    let q = &queries[((b * seq + s) * heads + h) * head_dim..][..head_dim];
                    let kv_at = |t: &[f32], j: usize| {
                        t[((b * len + j) * kv_heads + h / group) * head_dim..][..head_dim].to_vec()
                    };
                    let visible: Vec<usize> =
                        (0..len).filter(|&j| mask.is_none_or(|m| !m[(b * seq + s) * len + j])).collect();
                    let scores: Vec<f64> = visible
                        .iter()
                        .map(|&j| {
                            kv_at(keys, j).iter().zip(q).map(|(&k, &q)| k as f64 * q as f64).sum::<f64>()
                                / (head_dim as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = weights.iter().sum();
                    for d in 0..head_dim {
                        let value: f64 =
                            visible.iter().zip(&weights).map(|(&j, w)| w / sum * kv_at(values, j)[d] as f64).sum();
                        out[((b * seq + s) * heads + h) * head_dim + d] = value as f32;
                    }
                }
            }
        }
        out
    }

    fn pseudo_random(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| (seed * (i as f32 + 1.0)).sin()).collect()
    }

    /// `[batch, len, kv_heads·head_dim]` positions `range` of `all`.
    fn positions(all: &[f32], [batch, len, width]: [usize; 3], range: std::ops::Range<usize>) -> Vec<f32> {
        (0..batch).flat_map(|b| all[(b * len + range.start) * width..(b * len + range.end) * width].to_vec()).collect()
    }

    #[test]
    fn attention_over_a_cache_filled_in_steps_equals_naive_attention_with_gqa_and_padding() {
        let (batch, heads, kv_heads, head_dim) = (3, 6, 2, 8);
        let (prompt, steps) = (37, 3);
        let len = prompt + steps;
        let keys = pseudo_random(batch * len * kv_heads * head_dim, 0.37);
        let values = pseudo_random(batch * len * kv_heads * head_dim, 0.71);
        let queries = pseudo_random(batch * len * heads * head_dim, 1.13);
        let pads = [0, 5, 36];
        // Causal, with each row's first `pad` keys hidden from every query but their own.
        let mask_for = |range: std::ops::Range<usize>, total: usize| -> Vec<bool> {
            pads.iter()
                .flat_map(|&p| range.clone().flat_map(move |i| (0..total).map(move |j| j > i || (j < p && j != i))))
                .collect()
        };
        let kv_width = kv_heads * head_dim;
        let mut cache = HostKv::new(kv_heads, head_dim);
        let chunks = std::iter::once(0..prompt).chain((prompt..len).map(|i| i..i + 1));
        for chunk in chunks {
            let seq = chunk.len();
            let k = positions(&keys, [batch, len, kv_width], chunk.clone());
            let v = positions(&values, [batch, len, kv_width], chunk.clone());
            cache.append(&k, &v, [batch, seq]);
            let total = chunk.end;
            let q = positions(&queries, [batch, len, heads * head_dim], chunk.clone());
            let mask = mask_for(chunk.clone(), total);
            let shape = HostShape { batch, seq, heads };
            let actual = cache.attend(&q, shape, Some(&mask));
            let cached_k = positions(&keys, [batch, len, kv_width], 0..total);
            let cached_v = positions(&values, [batch, len, kv_width], 0..total);
            let expected = naive(&q, &cached_k, &cached_v, shape, [kv_heads, head_dim, total], Some(&mask));
            let worst = actual.iter().zip(&expected).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-5, "positions {chunk:?}: largest difference {worst}");
        }
        assert_eq!(cache.len(), len);
    }

    #[test]
    fn without_a_mask_every_query_sees_every_key() {
        let (batch, heads, kv_heads, head_dim, len) = (2, 4, 4, 16, 5);
        let keys = pseudo_random(batch * len * kv_heads * head_dim, 0.3);
        let values = pseudo_random(batch * len * kv_heads * head_dim, 0.9);
        let queries = pseudo_random(batch * heads * head_dim, 1.7);
        let mut cache = HostKv::new(kv_heads, head_dim);
        cache.append(&keys, &values, [batch, len]);
        let shape = HostShape { batch, seq: 1, heads };
        let actual = cache.attend(&queries, shape, None);
        let expected = naive(&queries, &keys, &values, shape, [kv_heads, head_dim, len], None);
        let worst = actual.iter().zip(&expected).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-5, "largest difference {worst}");
    }

    #[test]
    fn retained_rows_keep_their_own_keys_and_values_even_when_repeated() {
        let (kv_heads, head_dim) = (2, 2);
        let mut cache = HostKv::new(kv_heads, head_dim);
        let keys: Vec<f32> = (0..2 * kv_heads * head_dim).map(|i| i as f32).collect();
        let values: Vec<f32> = keys.iter().map(|k| -k).collect();
        cache.append(&keys, &values, [2, 1]);
        cache.retain_rows(&[1, 1, 0]);
        assert_eq!(
            cache.keys,
            vec![vec![4.0, 5.0], vec![6.0, 7.0], vec![4.0, 5.0], vec![6.0, 7.0], vec![0.0, 1.0], vec![2.0, 3.0]]
        );
        assert_eq!(cache.values[4], vec![-0.0, -1.0]);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_row_taken_without_its_padding_seeds_a_new_cache() {
        let (kv_heads, head_dim) = (2, 3);
        let mut cache = HostKv::new(kv_heads, head_dim);
        let values: Vec<f32> = (0..2 * 4 * kv_heads * head_dim).map(|i| i as f32).collect();
        let keys: Vec<f32> = values.iter().map(|v| -v).collect();
        cache.append(&keys, &values, [2, 4]);
        // Row 1 without its padding at positions 1 and 2.
        let row = cache.row_without(1, 1..3);
        assert_eq!(row.len(), 2);
        assert_eq!(row.bytes(), 2 * kv_heads * 2 * head_dim * 4);
        let seeded = HostKv::new(kv_heads, head_dim).seeded(&[(&row, 2), (&row, 1)], 3);
        assert_eq!(seeded.len(), 3);
        let at = |source: &[f32], position: usize, head: usize| {
            source[((4 + position) * kv_heads + head) * head_dim..][..head_dim].to_vec()
        };
        let zeros = |n: usize| vec![0.0; n * head_dim];
        for head in 0..kv_heads {
            for (source, seeded) in [(&values, &seeded.values), (&keys, &seeded.keys)] {
                assert_eq!(seeded[head], [at(source, 0, head), at(source, 3, head), zeros(1)].concat());
                assert_eq!(seeded[kv_heads + head], [at(source, 0, head), zeros(2)].concat());
            }
        }
    }
}
