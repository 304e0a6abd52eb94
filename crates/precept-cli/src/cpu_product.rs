//! [`flex_rows_product`]: decoding-step products on the flex backend through precept-model's
//! host kernels ([`precept_model::row_product`]), which read the weights in place.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use precept_model::row_product::{rows_times_transposed, rows_times_weight};

/// `x·w` for `x` `[rows, d_in]` and `w` `[d_in, d_out]`, stored row-major or as a transposed
/// view of `[d_out, d_in]` storage; other layouts and dtypes take burn's own product.
pub fn flex_rows_product(x: Tensor<Flex, 2>, w: Tensor<Flex, 2>) -> Tensor<Flex, 2> {
    let [rows, d_in] = x.dims();
    let d_out = w.dims()[1];
    let device = x.device();
    let x_values = x.clone().into_primitive().tensor().to_contiguous();
    let weight = w.clone().into_primitive().tensor();
    let Some(x_slice) = x_values.as_slice::<f32>() else { return x.matmul(w) };
    let mut out = vec![0.0; rows * d_out];
    if let Some(w_slice) = weight.as_slice::<f32>() {
        rows_times_weight(x_slice, w_slice, &mut out, [rows, d_in, d_out]);
    } else if let Some(e_slice) = weight.transpose(0, 1).as_slice::<f32>() {
        rows_times_transposed(x_slice, e_slice, &mut out, [rows, d_in, d_out]);
    } else {
        return x.matmul(w);
    }
    Tensor::from_data(TensorData::new(out, [rows, d_out]), &device)
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
        for (x, w) in [(&x, &stored), (&x, &transposed), (&x, &narrowed), (&x_view, &stored)] {
            let expected = x.clone().matmul(w.clone());
            let actual = flex_rows_product(x.clone(), w.clone());
            assert_eq!(actual.dims(), expected.dims());
            let diff: f32 = (actual - expected).abs().max().into_scalar();
            assert!(diff < 1e-5, "{diff}");
        }
    }

    #[test]
    fn the_primitive_round_trip_keeps_values() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::from_data([[1.0f32, 2.0]], &device);
        let w = Tensor::<Flex, 2>::from_data([[1.0f32, 0.0, 2.0], [0.5, 1.0, -1.0]], &device);
        let y: Vec<f32> = flex_rows_product(x, w).into_data().to_vec().unwrap_or_default();
        assert_eq!(y, [2.0, 2.0, 0.0]);
    }
}
