//! Applying [`Projection`]s to a batch of sequences as 2-D matrix products.

use burn::tensor::Tensor;

use crate::backend::KernelBackend;
use crate::projection::Projection;

/// Products with at most this many rows (the rows of a decoding step) go to the backend's
/// [`KernelBackend::decode_products`], reading the layers' decoding copies when they have them.
pub(crate) const DECODE_MAX_ROWS: usize = 32;

/// `layer(x)` computed on `x` flattened to `[batch·seq, d_in]`.
///
/// A 3-D product broadcasts the weight over the batch and multiplies row blocks one by one; for
/// decoding (`seq = 1`) that reads the whole weight once per row. One 2-D product reads it once.
///
/// # Shapes
/// - x: `[batch, seq, d_in]` → `[batch, seq, d_out]`
pub fn project<B: KernelBackend>(layer: &Projection<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [out] = project_many([layer], x);
    out
}

/// Several layers applied to the same input; a decoding step's few rows are computed as one
/// batch of products over all of them.
pub fn project_many<B: KernelBackend, const N: usize>(
    layers: [&Projection<B>; N],
    x: Tensor<B, 3>,
) -> [Tensor<B, 3>; N] {
    let [batch, seq, d_in] = x.dims();
    let rows = x.reshape([batch * seq, d_in]);
    let outputs: Vec<Tensor<B, 2>> = match batch * seq <= DECODE_MAX_ROWS {
        true => {
            let weights: Vec<Tensor<B, 2>> = layers.iter().map(|layer| layer.decode_weight()).collect();
            let products = B::decode_products(&rows, &weights);
            products.into_iter().zip(layers).map(|(y, layer)| layer.finish(rows.clone(), y)).collect()
        }
        false => layers.iter().map(|layer| layer.forward(rows.clone())).collect(),
    };
    let mut outputs = outputs.into_iter();
    std::array::from_fn(|_| {
        // One output per layer by construction.
        let y = outputs.next().unwrap_or_else(|| unreachable!("one output per layer"));
        let d_out = y.dims()[1];
        y.reshape([batch, seq, d_out])
    })
}
