//! Applying a `Linear` layer to a batch of sequences as one matrix product.

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rayon::prelude::*;

/// How many column blocks a single-row product is split into, each on its own thread.
static MATVEC_SPLIT: AtomicUsize = AtomicUsize::new(1);

/// Splits every single-row product (batch-1 decoding) into `blocks` column blocks computed in
/// parallel.
///
/// A CPU tuning knob, set once by the program: a one-row product is too small for the CPU
/// backend to spread over threads, so decoding would read all weights from one core. On GPUs
/// leave it at 1.
pub fn set_matvec_split(blocks: usize) {
    MATVEC_SPLIT.store(blocks.max(1), Ordering::Relaxed);
}

/// `layer(x)` computed on `x` flattened to `[batch·seq, d_in]`.
///
/// burn's `Linear` on a 3-D input broadcasts the weight over the batch and multiplies row
/// blocks one by one; for decoding (`seq = 1`) that reads the whole weight once per row. One
/// 2-D product reads it once.
///
/// # Shapes
/// - x: `[batch, seq, d_in]` → `[batch, seq, d_out]`
pub fn project<B: Backend>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, seq, d_in] = x.dims();
    let rows = x.reshape([batch * seq, d_in]);
    let blocks = MATVEC_SPLIT.load(Ordering::Relaxed);
    let y = if batch * seq == 1 && blocks > 1 { split_matvec(layer, rows, blocks) } else { layer.forward(rows) };
    let d_out = y.dims()[1];
    y.reshape([batch, seq, d_out])
}

/// `x·W (+ b)` for one row, computed as `blocks` column blocks in parallel.
fn split_matvec<B: Backend>(layer: &Linear<B>, x: Tensor<B, 2>, blocks: usize) -> Tensor<B, 2> {
    let weight = layer.weight.val();
    let d_out = weight.dims()[1];
    let width = d_out.div_ceil(blocks);
    let starts: Vec<usize> = (0..d_out).step_by(width).collect();
    let parts: Vec<Tensor<B, 2>> = starts
        .into_par_iter()
        .map(|start| x.clone().matmul(weight.clone().narrow(1, start, width.min(d_out - start))))
        .collect();
    let y = Tensor::cat(parts, 1);
    match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze(),
        None => y,
    }
}
