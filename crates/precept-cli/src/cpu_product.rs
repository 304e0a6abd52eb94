//! [`flex_rows_product`]: decoding-step products on the flex backend through precept-model's
//! host kernels ([`precept_model::row_product`]), which read the weights in place.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use burn_flex::FlexTensor;
use precept_model::row_product::{rows_times, Weight};

/// `x·wᵢ` for `x` `[rows, d_in]` and each `wᵢ` `[d_in, d_outᵢ]`, stored row-major or as a
/// transposed view of `[d_outᵢ, d_in]` storage; other layouts and dtypes take burn's product.
pub fn flex_rows_product(x: &Tensor<Flex, 2>, weights: &[Tensor<Flex, 2>]) -> Vec<Tensor<Flex, 2>> {
    let [rows, d_in] = x.dims();
    let device = x.device();
    let x_values = x.clone().into_primitive().tensor().to_contiguous();
    let stored: Vec<FlexTensor> = weights.iter().map(|w| w.clone().into_primitive().tensor()).collect();
    let transposed: Vec<FlexTensor> = stored.iter().map(|w| w.transpose(0, 1)).collect();
    let views: Vec<Option<Weight<'_>>> = stored
        .iter()
        .zip(&transposed)
        .map(|(w, t)| w.as_slice().map(Weight::Stored).or_else(|| t.as_slice().map(Weight::Transposed)))
        .collect();
    let Some(x_slice) = x_values.as_slice::<f32>() else {
        return weights.iter().map(|w| x.clone().matmul(w.clone())).collect();
    };
    let kernel_weights: Vec<Weight<'_>> = views.iter().flatten().copied().collect();
    let mut products = rows_times(x_slice, [rows, d_in], &kernel_weights).into_iter();
    views
        .iter()
        .zip(weights)
        .map(|(view, w)| match view.and_then(|_| products.next()) {
            Some(values) => Tensor::from_data(TensorData::new(values, [rows, w.dims()[1]]), &device),
            None => x.clone().matmul(w.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

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
            let products = flex_rows_product(&x, &weights);
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
    fn an_empty_batch_keeps_the_output_width() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::zeros([0, 4], &device);
        let w = Tensor::<Flex, 2>::ones([4, 6], &device);
        assert_eq!(flex_rows_product(&x, &[w]).remove(0).dims(), [0, 6]);
    }

    #[test]
    fn known_values_come_out_in_place() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::from_data([[1.0f32, 2.0]], &device);
        let w = Tensor::<Flex, 2>::from_data([[1.0f32, 0.0, 2.0], [0.5, 1.0, -1.0]], &device);
        let y: Vec<f32> = flex_rows_product(&x, &[w]).remove(0).into_data().to_vec().unwrap_or_default();
        assert_eq!(y, [2.0, 2.0, 0.0]);
    }
}
