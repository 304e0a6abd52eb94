//! Decoding-step products on [`Flex`] through precept-kernels' [`rows_times`], which reads each
//! weight where it lies: f32 weights in place, or the bf16 copies a model keeps for decoding
//! ([`crate::LlamaForCausalLM::with_decode_dtype`]), either stored `[d_in, d_out]` or as the
//! transposed view of `[d_out, d_in]` storage (a tied embedding). Other layouts take burn's
//! product.

use burn::backend::Flex;
use burn::tensor::{FloatDType, Tensor, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;
use half::bf16;
use precept_kernels::row_product::{rows_times, vectorised, Weight};
use rayon::prelude::*;

use crate::backend::product;

/// `x·wᵢ` for `x` `[rows, d_in]` and each `wᵢ` `[d_in, d_outᵢ]`.
///
/// Without vector instructions the kernels would be slow; burn's products are then split into
/// column blocks computed in parallel instead (burn runs a small product on one thread).
pub(super) fn decode_products(x: &Tensor<Flex, 2>, weights: &[Tensor<Flex, 2>]) -> Vec<Tensor<Flex, 2>> {
    if !vectorised() {
        return matvec_blocks(x, weights, rayon::current_num_threads());
    }
    let [rows, d_in] = x.dims();
    let device = x.device();
    let x_values = x.clone().into_primitive().tensor().to_contiguous();
    let stored: Vec<FlexTensor> = weights.iter().map(|w| w.clone().into_primitive().tensor()).collect();
    let transposed: Vec<FlexTensor> = stored.iter().map(|w| w.transpose(0, 1)).collect();
    let views: Vec<Option<Weight<'_>>> = stored.iter().zip(&transposed).map(|(w, t)| weight_view(w, t)).collect();
    let Some(x_slice) = x_values.as_slice::<f32>() else {
        return weights.iter().map(|w| product(x, w)).collect();
    };
    let kernel_weights: Vec<Weight<'_>> = views.iter().flatten().copied().collect();
    let mut products = rows_times(x_slice, [rows, d_in], &kernel_weights).into_iter();
    views
        .iter()
        .zip(weights)
        .map(|(view, w)| match view.and_then(|_| products.next()) {
            Some(values) => Tensor::from_data(TensorData::new(values, [rows, w.dims()[1]]), &device),
            None => product(x, w),
        })
        .collect()
}

/// The kernels' view of a weight: `stored` itself or its transpose `transposed`, when either
/// is contiguous f32 or bf16 storage.
fn weight_view<'a>(stored: &'a FlexTensor, transposed: &'a FlexTensor) -> Option<Weight<'a>> {
    (stored.as_slice().map(Weight::Stored))
        .or_else(|| transposed.as_slice().map(Weight::Transposed))
        .or_else(|| stored.as_slice().map(Weight::StoredBf16))
        .or_else(|| transposed.as_slice().map(Weight::TransposedBf16))
}

/// `weight` converted to `dtype`, keeping its storage order: a transposed view of `[d_out, d_in]`
/// storage stays one, so the kernels read it as the same layout.
pub(super) fn decode_copy(weight: &Tensor<Flex, 2>, dtype: FloatDType) -> Tensor<Flex, 2> {
    let stored = weight.clone().into_primitive().tensor();
    let transposed = stored.transpose(0, 1);
    let to_bf16 = |values: &[f32]| values.par_iter().map(|&v| bf16::from_f32(v)).collect::<Vec<bf16>>();
    let bf16_tensor = |values: Vec<bf16>, shape: [usize; 2]| {
        Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(FlexTensor::from_data(TensorData::new(values, shape))))
    };
    let [d_in, d_out] = weight.dims();
    match (dtype, stored.as_slice::<f32>(), transposed.as_slice::<f32>()) {
        (FloatDType::BF16, Some(values), _) => bf16_tensor(to_bf16(values), [d_in, d_out]),
        (FloatDType::BF16, None, Some(values)) => bf16_tensor(to_bf16(values), [d_out, d_in]).transpose(),
        _ => weight.clone().cast(dtype),
    }
}

/// `x·Wᵢ` for a few rows `x` (`[rows, d_in]`) and each `Wᵢ` (`[d_in, d_outᵢ]`), the output
/// columns of all weights cut into about `blocks` equal pieces computed in parallel.
fn matvec_blocks(x: &Tensor<Flex, 2>, weights: &[Tensor<Flex, 2>], blocks: usize) -> Vec<Tensor<Flex, 2>> {
    if blocks <= 1 {
        return weights.iter().map(|w| product(x, w)).collect();
    }
    let total: usize = weights.iter().map(|w| w.dims()[1]).sum();
    let width = total.div_ceil(blocks).max(1);
    let mut pieces = Vec::new();
    for (index, weight) in weights.iter().enumerate() {
        let d_out = weight.dims()[1];
        let step = d_out.div_ceil(d_out.div_ceil(width));
        pieces.extend((0..d_out).step_by(step).map(|start| (index, start, step.min(d_out - start))));
    }
    let products: Vec<(usize, Tensor<Flex, 2>)> = pieces
        .into_par_iter()
        .map(|(index, start, len)| (index, product(x, &weights[index].clone().narrow(1, start, len))))
        .collect();
    let mut grouped: Vec<Vec<Tensor<Flex, 2>>> = vec![Vec::new(); weights.len()];
    for (index, product) in products {
        grouped[index].push(product);
    }
    grouped.into_iter().map(|parts| Tensor::cat(parts, 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Distribution};

    #[test]
    fn every_weight_layout_gives_burns_product() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::random([3, 40], Distribution::Default, &device);
        let stored = Tensor::<Flex, 2>::random([40, 50], Distribution::Default, &device);
        let transposed = Tensor::<Flex, 2>::random([50, 40], Distribution::Default, &device).transpose();
        let narrowed = stored.clone().narrow(1, 5, 30);
        let x_view = Tensor::<Flex, 2>::random([40, 3], Distribution::Default, &device).transpose();
        let weights = [stored, narrowed, transposed];
        for x in [x, x_view] {
            let products = decode_products(&x, &weights);
            assert_eq!(products.len(), weights.len());
            for (actual, w) in products.into_iter().zip(&weights) {
                let expected = x.clone().matmul(w.clone());
                assert_eq!(actual.dims(), expected.dims());
                let diff: f32 = (actual - expected).abs().max().into_scalar();
                assert!(diff < 1e-5, "{diff}");
            }
        }
    }

    #[test]
    fn bf16_copies_keep_their_layout_and_give_burns_product_of_the_rounded_weights() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::random([2, 64], Distribution::Default, &device);
        let stored = Tensor::<Flex, 2>::random([64, 96], Distribution::Default, &device);
        let transposed = Tensor::<Flex, 2>::random([80, 64], Distribution::Default, &device).transpose();
        for w in [stored, transposed] {
            let copy = decode_copy(&w, FloatDType::BF16);
            assert_eq!(copy.dtype(), DType::BF16);
            assert_eq!(copy.dims(), w.dims());
            let (copy_primitive, w_primitive) =
                (copy.clone().into_primitive().tensor(), w.clone().into_primitive().tensor());
            assert_eq!(copy_primitive.as_slice::<bf16>().is_some(), w_primitive.as_slice::<f32>().is_some());
            let actual = decode_products(&x, &[copy]).remove(0);
            // The weights rounded to the nearest bf16, as `half` rounds them.
            let rounded: Vec<f32> =
                crate::host_values(w.clone()).into_iter().map(|v| bf16::from_f32(v).to_f32()).collect();
            let rounded = Tensor::<Flex, 2>::from_data(TensorData::new(rounded, w.dims()), &device);
            let diff: f32 = (actual - x.clone().matmul(rounded)).abs().max().into_scalar();
            assert!(diff < 1e-4, "{diff}");
        }
    }

    #[test]
    fn an_empty_batch_keeps_the_output_width() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::zeros([0, 4], &device);
        let w = Tensor::<Flex, 2>::ones([4, 6], &device);
        assert_eq!(decode_products(&x, &[w]).remove(0).dims(), [0, 6]);
    }

    #[test]
    fn known_values_come_out_in_place() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::from_data([[1.0f32, 2.0]], &device);
        let w = Tensor::<Flex, 2>::from_data([[1.0f32, 0.0, 2.0], [0.5, 1.0, -1.0]], &device);
        let y: Vec<f32> = decode_products(&x, &[w]).remove(0).into_data().to_vec().expect("f32 values");
        assert_eq!(y, [2.0, 2.0, 0.0]);
    }

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
