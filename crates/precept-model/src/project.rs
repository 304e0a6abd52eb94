//! Applying [`Projection`]s to a batch of sequences as 2-D matrix products.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::projection::Projection;

/// Into how many column blocks products of few rows are split, computed in parallel.
static MATVEC_SPLIT: AtomicUsize = AtomicUsize::new(1);

/// Products with at most this many rows (decoding steps) take the installed kernel or are split
/// into column blocks.
const SPLIT_MAX_ROWS: usize = 32;

/// Splits every product of at most 32 rows (a decoding step) into `blocks` column blocks
/// computed in parallel.
///
/// A CPU tuning knob, set once by the program: the CPU backend runs small products on one
/// thread, so decoding would stream every weight through a single core. On GPUs leave it at 1.
/// A [`RowsProduct`] installed with [`set_rows_product`] takes precedence.
pub fn set_matvec_split(blocks: usize) {
    MATVEC_SPLIT.store(blocks.max(1), Ordering::Relaxed);
}

/// `x·Wᵢ` for the few rows of a decoding step and each weight (`x` `[rows, d_in]`, `Wᵢ`
/// `[d_in, d_outᵢ]`, either stored so or a transposed view of `[d_outᵢ, d_in]` storage), computed
/// by a kernel of the program's choosing for its backend.
pub type RowsProduct<B> = fn(&Tensor<B, 2>, &[Tensor<B, 2>]) -> Vec<Tensor<B, 2>>;

/// The installed [`RowsProduct`], for one backend type.
static ROWS_PRODUCT: OnceLock<Box<dyn Any + Send + Sync>> = OnceLock::new();

/// Computes every product of at most 32 rows (a decoding step) with `product` when the model
/// runs on backend `B` without gradients; it takes precedence over [`set_matvec_split`].
///
/// A CPU tuning knob, set once by the program (later calls are ignored): library code stays
/// generic over the backend, and the program, which knows its backend, supplies a kernel that
/// reads the weights in place (see [`crate::row_product`]).
pub fn set_rows_product<B: Backend>(product: RowsProduct<B>) {
    let _ = ROWS_PRODUCT.set(Box::new(product));
}

/// The installed product, when it was installed for `B`.
fn rows_product<B: Backend>() -> Option<RowsProduct<B>> {
    ROWS_PRODUCT.get()?.downcast_ref::<RowsProduct<B>>().copied()
}

/// The configured split, when products are split at all.
fn matvec_split() -> Option<usize> {
    Some(MATVEC_SPLIT.load(Ordering::Relaxed)).filter(|&blocks| blocks > 1)
}

/// `layer(x)` computed on `x` flattened to `[batch·seq, d_in]`.
///
/// A 3-D product broadcasts the weight over the batch and multiplies row blocks one by one; for
/// decoding (`seq = 1`) that reads the whole weight once per row. One 2-D product reads it once.
///
/// # Shapes
/// - x: `[batch, seq, d_in]` → `[batch, seq, d_out]`
pub fn project<B: Backend>(layer: &Projection<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [out] = project_many([layer], x);
    out
}

/// Several layers applied to the same input; a decoding step's few rows are computed as one
/// parallel batch of column blocks over all of them.
pub fn project_many<B: Backend, const N: usize>(layers: [&Projection<B>; N], x: Tensor<B, 3>) -> [Tensor<B, 3>; N] {
    let [batch, seq, d_in] = x.dims();
    let rows = x.reshape([batch * seq, d_in]);
    let weights: Option<Vec<Tensor<B, 2>>> = layers.iter().map(|l| l.lora.is_none().then(|| l.weight.val())).collect();
    let outputs: Vec<Tensor<B, 2>> = match weights.and_then(|weights| small_products(&rows, &weights)) {
        Some(products) => products.into_iter().zip(layers).map(|(y, layer)| layer.add_bias(y)).collect(),
        None => layers.iter().map(|layer| layer.forward(rows.clone())).collect(),
    };
    let mut outputs = outputs.into_iter();
    std::array::from_fn(|_| {
        // One output per layer by construction.
        let y = outputs.next().unwrap_or_else(|| unreachable!("one output per layer"));
        let d_out = y.dims()[1];
        y.reshape([batch, seq, d_out])
    })
}

/// `x·Wᵢ` for each weight through the installed [`RowsProduct`] or in column blocks, when `x`
/// has few rows (a decoding step) and no gradients are tracked; `None` leaves the products to
/// burn's own path (training, prefill, or no knob set).
pub(crate) fn small_products<B: Backend>(x: &Tensor<B, 2>, weights: &[Tensor<B, 2>]) -> Option<Vec<Tensor<B, 2>>> {
    if x.dims()[0] > SPLIT_MAX_ROWS || B::ad_enabled(&x.device()) {
        return None;
    }
    if let Some(product) = rows_product::<B>() {
        return Some(product(x, weights));
    }
    matvec_split().map(|blocks| matvec_blocks(x, weights, blocks))
}

/// `x·Wᵢ` for a few rows `x` (`[rows, d_in]`) and each `Wᵢ` (`[d_in, d_outᵢ]`), the output
/// columns of all weights cut into about `blocks` equal pieces computed in parallel.
fn matvec_blocks<B: Backend>(x: &Tensor<B, 2>, weights: &[Tensor<B, 2>], blocks: usize) -> Vec<Tensor<B, 2>> {
    let total: usize = weights.iter().map(|w| w.dims()[1]).sum();
    let width = total.div_ceil(blocks).max(1);
    let mut pieces = Vec::new();
    for (index, weight) in weights.iter().enumerate() {
        let d_out = weight.dims()[1];
        let step = d_out.div_ceil(d_out.div_ceil(width));
        pieces.extend((0..d_out).step_by(step).map(|start| (index, start, step.min(d_out - start))));
    }
    let products: Vec<(usize, Tensor<B, 2>)> = pieces
        .into_par_iter()
        .map(|(index, start, len)| (index, x.clone().matmul(weights[index].clone().narrow(1, start, len))))
        .collect();
    let mut grouped: Vec<Vec<Tensor<B, 2>>> = vec![Vec::new(); weights.len()];
    for (index, product) in products {
        grouped[index].push(product);
    }
    grouped.into_iter().map(|parts| Tensor::cat(parts, 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    #[test]
    fn column_blocks_equal_the_whole_products_for_uneven_widths() {
        let _rng = crate::lock_backend_rng();
        let device = Default::default();
        let weights: Vec<Tensor<Flex, 2>> =
            [7, 13, 1].iter().map(|&n| Tensor::random([5, n], Distribution::Default, &device)).collect();
        for rows in [1, 3] {
            let x = Tensor::<Flex, 2>::random([rows, 5], Distribution::Default, &device);
            for blocks in [1, 2, 4, 32] {
                let split = matvec_blocks(&x, &weights, blocks);
                for (part, weight) in split.into_iter().zip(&weights) {
                    let whole = x.clone().matmul(weight.clone());
                    assert_eq!(part.dims(), whole.dims());
                    let diff: f32 = (part - whole).abs().max().into_scalar();
                    assert!(diff < 1e-6, "rows {rows}, blocks {blocks}: {diff}");
                }
            }
        }
    }
}
