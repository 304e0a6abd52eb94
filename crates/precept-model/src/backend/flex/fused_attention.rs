//! Grouped-query attention as one autodiff operation, computed on host memory in the
//! projections' own layout.
//!
//! Queries, keys and values stay `[batch, seq, heads·head_dim]` as the projections wrote them:
//! each head is a strided matrix that the products read in place, and the output and the input
//! gradients come back in that layout too. The composed path permutes queries into the grouped
//! layout and the output back, copies that the backward pass repeats.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use rayon::prelude::*;

use crate::backend::Heads;
use crate::host::{from_host, host_values};
use precept_kernels::host_math::{softmax_backward_row, softmax_in_place};
use precept_kernels::strided::{product, Target, View, Write};

/// Sizes of one call: `batch` rows of `n` queries over `m` keys.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    n: usize,
    m: usize,
    heads: Heads,
}

impl Dims {
    fn group(&self) -> usize {
        self.heads.group()
    }

    fn query_width(&self) -> usize {
        self.heads.heads * self.heads.head_dim
    }

    fn key_width(&self) -> usize {
        self.heads.kv_heads * self.heads.head_dim
    }

    /// Offset of query head `head`'s first value in row `row`.
    fn query_at(&self, row: usize, head: usize) -> usize {
        row * self.n * self.query_width() + head * self.heads.head_dim
    }

    /// Offset of key/value head `kv_head`'s first value in row `row`.
    fn key_at(&self, row: usize, kv_head: usize) -> usize {
        row * self.m * self.key_width() + kv_head * self.heads.head_dim
    }
}

/// Queries taken together in the products; keys past the last one any query of a tile sees
/// are left out, so causal attention computes about half of its scores.
const QUERY_TILE: usize = 64;

/// Consecutive queries of one row taken together, and how many keys they see.
#[derive(Debug, Clone, Copy)]
struct Tile {
    start: usize,
    len: usize,
    /// Keys up to the last one any query of the tile sees; the rest take no part.
    seen: usize,
}

/// The query tiles of one row.
fn query_tiles(mask: Option<&[bool]>, dims: Dims, row: usize) -> Vec<Tile> {
    let (n, m) = (dims.n, dims.m);
    let last_seen = |i: usize| match mask {
        Some(mask) => mask[(row * n + i) * m..][..m].iter().rposition(|&hidden| !hidden).map_or(0, |last| last + 1),
        None => m,
    };
    (0..n)
        .step_by(QUERY_TILE)
        .map(|start| {
            let len = QUERY_TILE.min(n - start);
            Tile { start, len, seen: (start..start + len).map(last_seen).max().unwrap_or(0) }
        })
        .collect()
}

/// The forward pass of one `(row, kv head)`: each query head's weights `[n, m]` (zero past the
/// keys a tile sees) and output `[n, head_dim]`, heads of the group one after another.
fn forward_block(
    [queries, keys, values]: [&[f32]; 3],
    (mask, tiles): (Option<&[bool]>, &[Tile]),
    dims: Dims,
    [row, kv_head]: [usize; 2],
) -> (Vec<f32>, Vec<f32>) {
    let (Dims { n, m, .. }, d) = (dims, dims.heads.head_dim);
    let scale = (d as f32).sqrt().recip();
    let key = View { values: keys, at: dims.key_at(row, kv_head), strides: [dims.key_width(), 1] };
    let value = View { values, at: dims.key_at(row, kv_head), strides: [dims.key_width(), 1] };
    let mut weights = vec![0.0; dims.group() * n * m];
    let mut output = vec![0.0; dims.group() * n * d];
    for (g, (weights, output)) in weights.chunks_mut(n * m).zip(output.chunks_mut(n * d)).enumerate() {
        let head = kv_head * dims.group() + g;
        for &Tile { start, len, seen } in tiles {
            let at = dims.query_at(row, head) + start * dims.query_width();
            let query = View { values: queries, at, strides: [dims.query_width(), 1] };
            let tile_weights = Target { values: &mut weights[start * m..], row_stride: m };
            product([len, seen, d], query, key.t(), tile_weights, Write::Set(scale));
            for (i, scores) in (start..start + len).zip(weights[start * m..].chunks_mut(m)) {
                softmax_in_place(&mut scores[..seen], mask.map(|mask| &mask[(row * n + i) * m..][..seen]));
            }
            let tile = View { values: weights, at: start * m, strides: [m, 1] };
            let tile_output = Target { values: &mut output[start * d..], row_stride: d };
            product([len, d, seen], tile, value, tile_output, Write::Set(1.0));
        }
    }
    (weights, output)
}

/// The backward pass of one `(row, kv head)`: the gradients of its query heads `[group, n, d]`,
/// and of its keys and values `[m, d]` summed over the group.
fn backward_block(
    [queries, keys, values]: [&[f32]; 3],
    (weights, d_output): (&[f32], &[f32]),
    tiles: &[Tile],
    dims: Dims,
    [row, kv_head]: [usize; 2],
) -> [Vec<f32>; 3] {
    let (Dims { n, m, .. }, d) = (dims, dims.heads.head_dim);
    let scale = (d as f32).sqrt().recip();
    let key = View { values: keys, at: dims.key_at(row, kv_head), strides: [dims.key_width(), 1] };
    let value = View { values, at: dims.key_at(row, kv_head), strides: [dims.key_width(), 1] };
    let (mut d_queries, mut d_keys, mut d_values) =
        (vec![0.0; dims.group() * n * d], vec![0.0; m * d], vec![0.0; m * d]);
    let mut d_scores = vec![0.0; QUERY_TILE * m];
    for (g, (weights, d_query)) in weights.chunks(n * m).zip(d_queries.chunks_mut(n * d)).enumerate() {
        let head = kv_head * dims.group() + g;
        for &Tile { start, len, seen } in tiles {
            let at = dims.query_at(row, head) + start * dims.query_width();
            let query = View { values: queries, at, strides: [dims.query_width(), 1] };
            let d_out = View { values: d_output, at, strides: [dims.query_width(), 1] };
            let tile = View { values: weights, at: start * m, strides: [m, 1] };
            product([seen, d, len], tile.t(), d_out, Target { values: &mut d_values, row_stride: d }, Write::Add(1.0));
            let d_tile = Target { values: &mut d_scores, row_stride: seen.max(1) };
            product([len, seen, d], d_out, value.t(), d_tile, Write::Set(1.0));
            for (i, d_scores) in d_scores.chunks_mut(seen.max(1)).take(len).enumerate() {
                softmax_backward_row(&weights[(start + i) * m..][..seen], &mut d_scores[..seen], scale);
            }
            let d_tile = View { values: &d_scores, at: 0, strides: [seen.max(1), 1] };
            let d_query_tile = Target { values: &mut d_query[start * d..], row_stride: d };
            product([len, d, seen], d_tile, key, d_query_tile, Write::Set(1.0));
            product([seen, d, len], d_tile.t(), query, Target { values: &mut d_keys, row_stride: d }, Write::Add(1.0));
        }
    }
    [d_queries, d_keys, d_values]
}

/// Every `(row, kv head)` pair, the unit of parallel work.
fn blocks(dims: Dims) -> Vec<[usize; 2]> {
    (0..dims.batch).flat_map(|row| (0..dims.heads.kv_heads).map(move |kv_head| [row, kv_head])).collect()
}

/// Writes per-block `[heads of block, len, d]` results into the `[batch, len, heads·d]` layout.
fn interleave(parts: &[Vec<f32>], dims: Dims, len: usize, heads_per_block: usize) -> Vec<f32> {
    let d = dims.heads.head_dim;
    let width = dims.heads.kv_heads * heads_per_block * d;
    let mut out = vec![0.0; dims.batch * len * width];
    for (&[row, kv_head], part) in blocks(dims).iter().zip(parts) {
        for (h, head) in part.chunks(len * d).enumerate() {
            let column = (kv_head * heads_per_block + h) * d;
            for (i, values) in head.chunks(d).enumerate() {
                out[(row * len + i) * width + column..][..d].copy_from_slice(values);
            }
        }
    }
    out
}

/// The graph node of [`attention`].
#[derive(Debug)]
struct Attention;

/// What the backward needs: the inputs and the attention weights of every block.
#[derive(Debug, Clone)]
struct Saved<D> {
    inputs: Arc<[Vec<f32>; 3]>,
    weights: Arc<Vec<Vec<f32>>>,
    /// The query tiles of every row.
    tiles: Arc<Vec<Vec<Tile>>>,
    dims: Dims,
    device: D,
}

impl<B: Backend> Backward<B, 3> for Attention {
    type State = Saved<B::Device>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let Saved { inputs, weights, tiles, dims, device } = ops.state;
        let d_output =
            host_values(Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(grads.consume::<B>(&ops.node))));
        let [queries, keys, values] = inputs.as_ref();
        let parts: Vec<[Vec<f32>; 3]> = blocks(dims)
            .into_par_iter()
            .zip(weights.par_iter())
            .map(|(block, weights)| {
                backward_block([queries, keys, values], (weights, &d_output), &tiles[block[0]], dims, block)
            })
            .collect();
        let mut by_input: [Vec<Vec<f32>>; 3] = Default::default();
        for part in parts {
            by_input.iter_mut().zip(part).for_each(|(all, part)| all.push(part));
        }
        // Queries, then keys and values: their lengths, widths and heads per block.
        let layouts =
            [(dims.n, dims.query_width(), dims.group()), (dims.m, dims.key_width(), 1), (dims.m, dims.key_width(), 1)];
        for ((node, parts), (len, width, heads_per_block)) in ops.parents.into_iter().zip(&by_input).zip(layouts) {
            if let Some(node) = node {
                let values = interleave(parts, dims, len, heads_per_block);
                let tensor = from_host::<B, 3>(values, [dims.batch, len, width], &device);
                grads.register::<B>(node.id, tensor.into_primitive().tensor());
            }
        }
    }
}

/// `softmax(Q·Kᵀ/√d, hiding masked keys)·V` per head, query head `h` attending with key/value
/// head `h / (heads / kv_heads)`; one graph node. A query that sees no key gets zero weights.
///
/// # Shapes
/// - queries: `[batch, n, heads·head_dim]`; keys, values: `[batch, m, kv_heads·head_dim]`
/// - mask: `[batch, n, m]` row-major, `true` where a query must not see a key
/// - output: `[batch, n, heads·head_dim]`
pub(super) fn attention<I: Backend, C: CheckpointStrategy>(
    queries: Tensor<Autodiff<I, C>, 3>,
    keys: Tensor<Autodiff<I, C>, 3>,
    values: Tensor<Autodiff<I, C>, 3>,
    heads: Heads,
    mask: Option<&[bool]>,
) -> Tensor<Autodiff<I, C>, 3> {
    let ([batch, n, width], m) = (queries.dims(), keys.dims()[1]);
    let dims = Dims { batch, n, m, heads };
    let device = queries.device();
    let [queries, keys, values] = [queries, keys, values].map(|t| t.into_primitive().tensor());
    let nodes = [queries.node, keys.node, values.node];
    let inputs = [queries.primitive, keys.primitive, values.primitive]
        .map(|primitive| host_values(Tensor::<I, 3>::from_primitive(TensorPrimitive::Float(primitive))));
    let [q, k, v] = &inputs;
    let tiles: Vec<Vec<Tile>> = (0..batch).map(|row| query_tiles(mask, dims, row)).collect();
    let (weights, outputs): (Vec<Vec<f32>>, Vec<Vec<f32>>) = blocks(dims)
        .into_par_iter()
        .map(|block| forward_block([q, k, v], (mask, &tiles[block[0]]), dims, block))
        .unzip();
    let output = interleave(&outputs, dims, n, dims.group());
    let output = from_host::<I, 3>(output, [batch, n, width], &device).into_primitive().tensor();
    let node = match Attention.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let saved =
                Saved { inputs: Arc::new(inputs), weights: Arc::new(weights), tiles: Arc::new(tiles), dims, device };
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
    use burn::tensor::{Bool, Distribution, TensorData};

    use super::*;

    type A = Autodiff<Flex>;

    /// burn's attention on the grouped layout, with every query head's keys and values repeated.
    fn reference(q: Tensor<A, 3>, k: Tensor<A, 3>, v: Tensor<A, 3>, heads: Heads, mask: &[bool]) -> Tensor<A, 3> {
        let Heads { heads, kv_heads, head_dim } = heads;
        let ([batch, n, _], m) = (q.dims(), k.dims()[1]);
        let split =
            |t: Tensor<A, 3>, count: usize, len: usize| t.reshape([batch, len, count, head_dim]).swap_dims(1, 2);
        let repeat = |t: Tensor<A, 4>| {
            let group = heads / kv_heads;
            t.unsqueeze_dim::<5>(2).repeat_dim(2, group).reshape([batch, heads, m, head_dim])
        };
        let mask = Tensor::<A, 3, Bool>::from_data(TensorData::new(mask.to_vec(), [batch, n, m]), &Default::default());
        let mask = mask.unsqueeze_dim::<4>(1).repeat_dim(1, heads);
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let out = burn_attention(
            split(q, heads, n),
            repeat(split(k, kv_heads, m)),
            repeat(split(v, kv_heads, m)),
            Some(mask),
            None,
            options,
        );
        out.swap_dims(1, 2).reshape([batch, n, heads * head_dim])
    }

    #[test]
    fn fused_attention_and_its_gradients_equal_burns_on_grouped_heads() {
        // A single query tile, and several (the last partial) over a causal mask.
        for [batch, n, m] in [[2, 5, 7], [2, 150, 150]] {
            check_against_burn([batch, n, m]);
        }
    }

    fn check_against_burn([batch, n, m]: [usize; 3]) {
        let _rng = crate::lock_backend_rng();
        let device = Default::default();
        let heads = Heads { heads: 6, kv_heads: 2, head_dim: 8 };
        let random = |shape: [usize; 3]| Tensor::<A, 3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let q = random([batch, n, heads.heads * heads.head_dim]);
        let (k, v) =
            (random([batch, m, heads.kv_heads * heads.head_dim]), random([batch, m, heads.kv_heads * heads.head_dim]));
        let weights = random([batch, n, heads.heads * heads.head_dim]);
        // Causal over the last n of m keys, with the first key of batch row 1 hidden (padding).
        let hidden: Vec<bool> = (0..batch * n * m)
            .map(|i| {
                let (row, query, key) = (i / (n * m), (i / m) % n, i % m);
                key > m - n + query || (row == 1 && key == 0)
            })
            .collect();
        let inputs = || [&q, &k, &v].map(|t| t.clone().detach().require_grad());

        let ([fq, fk, fv], [bq, bk, bv]) = (inputs(), inputs());
        let fused = attention(fq.clone(), fk.clone(), fv.clone(), heads, Some(&hidden));
        let expected = reference(bq.clone(), bk.clone(), bv.clone(), heads, &hidden);
        let difference = (fused.clone() - expected.clone()).abs().max().into_scalar();
        assert!(difference < 1e-5, "{n}×{m}: outputs differ by {difference}");

        let fused_grads = (fused * weights.clone()).sum().backward();
        let reference_grads = (expected * weights).sum().backward();
        for (name, a, b) in [("queries", &fq, &bq), ("keys", &fk, &bk), ("values", &fv, &bv)] {
            let (a, b) = (a.grad(&fused_grads).unwrap(), b.grad(&reference_grads).unwrap());
            let difference = (a - b).abs().max().into_scalar();
            assert!(difference < 1e-5, "{n}×{m}: {name} gradients differ by {difference}");
        }
    }
}
