//! [`flex_rows_product`]: decoding-step products on the flex backend through precept-model's
//! host kernels ([`precept_model::row_product`]), which read the weights in place, or bf16
//! copies of them ([`set_decode_weights`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use burn_flex::FlexTensor;
use half::bf16;
use precept_model::row_product::{rows_times, Weight};
use rayon::prelude::*;

/// Whether decoding steps read bf16 copies of the weights.
static DECODE_BF16: AtomicBool = AtomicBool::new(false);

/// bf16 copies of weights, keyed by the address and length of their f32 storage.
static BF16_COPIES: Mutex<Option<HashMap<(usize, usize), Bf16Copy>>> = Mutex::new(None);

/// A weight's bf16 copy, with the weight it was made from.
///
/// Holding the source keeps its storage alive and shared, so the address cannot be reused by
/// another tensor, nor the values changed in place (burn writes in place only into storage held
/// once), while the copy exists.
struct Bf16Copy {
    source: FlexTensor,
    values: Arc<[bf16]>,
}

/// Makes decoding steps read bf16 copies of the weights (`true`) or the f32 weights themselves.
///
/// bf16 halves the bytes a step streams from memory, which bounds decoding speed on CPUs; the
/// products are still summed in f32, but the weights keep 8 of their 24 significant bits, so
/// logits shift slightly. Prefill and training keep the f32 weights.
pub fn set_decode_weights(bf16: bool) {
    DECODE_BF16.store(bf16, Ordering::Relaxed);
}

/// `x·wᵢ` for `x` `[rows, d_in]` and each `wᵢ` `[d_in, d_outᵢ]`, stored row-major or as a
/// transposed view of `[d_outᵢ, d_in]` storage; other layouts and dtypes take burn's product.
pub fn flex_rows_product(x: &Tensor<Flex, 2>, weights: &[Tensor<Flex, 2>]) -> Vec<Tensor<Flex, 2>> {
    rows_product(x, weights, DECODE_BF16.load(Ordering::Relaxed))
}

/// [`flex_rows_product`], reading bf16 copies of the weights when `bf16` is set.
fn rows_product(x: &Tensor<Flex, 2>, weights: &[Tensor<Flex, 2>], bf16: bool) -> Vec<Tensor<Flex, 2>> {
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
    let copies: Vec<Option<Arc<[bf16]>>> = match bf16 {
        true => views.iter().zip(&stored).map(|(view, w)| view.map(|view| bf16_copy(w, view))).collect(),
        false => vec![None; views.len()],
    };
    let kernel_weights: Vec<Weight<'_>> = views
        .iter()
        .zip(&copies)
        .filter_map(|(view, copy)| match (view, copy) {
            (Some(Weight::Stored(_)), Some(copy)) => Some(Weight::StoredBf16(copy)),
            (Some(Weight::Transposed(_)), Some(copy)) => Some(Weight::TransposedBf16(copy)),
            (view, _) => *view,
        })
        .collect();
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

/// The bf16 copy of `weight`, whose f32 storage `view` shows, made on first use.
///
/// Copies whose weights nothing else holds any more (a model that was dropped) are let go
/// whenever a new copy is made.
fn bf16_copy(weight: &FlexTensor, view: Weight<'_>) -> Arc<[bf16]> {
    let values = match view {
        Weight::Stored(values) | Weight::Transposed(values) => values,
        Weight::StoredBf16(_) | Weight::TransposedBf16(_) => unreachable!("views of f32 storage"),
    };
    let key = (values.as_ptr() as usize, values.len());
    let mut guard = BF16_COPIES.lock().unwrap_or_else(PoisonError::into_inner);
    let copies = guard.get_or_insert_with(HashMap::new);
    if let Some(copy) = copies.get(&key) {
        return copy.values.clone();
    }
    copies.retain(|_, copy| !copy.source.is_unique());
    let converted: Arc<[bf16]> = values.par_iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>().into();
    copies.insert(key, Bf16Copy { source: weight.clone(), values: converted.clone() });
    converted
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
    fn bf16_copies_give_burns_product_of_the_rounded_weights_and_are_made_once() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::random([2, 64], Distribution::Default, &device);
        let stored = Tensor::<Flex, 2>::random([64, 96], Distribution::Default, &device);
        let transposed = Tensor::<Flex, 2>::random([80, 64], Distribution::Default, &device).transpose();
        let weights = [stored, transposed];
        let first = rows_product(&x, &weights, true);
        for (actual, w) in first.iter().zip(&weights) {
            let rounded = w.clone().cast(burn::tensor::FloatDType::BF16).cast(burn::tensor::FloatDType::F32);
            let diff: f32 = (actual.clone() - x.clone().matmul(rounded)).abs().max().into_scalar();
            assert!(diff < 1e-4, "{diff}");
        }
        let again = rows_product(&x, &weights, true);
        for (a, b) in first.into_iter().zip(again) {
            assert_eq!(a.into_data(), b.into_data());
        }
        let key = |w: &Tensor<Flex, 2>| {
            let values = w.clone().into_primitive().tensor();
            let slice = values.as_slice::<f32>().map(|s| (s.as_ptr() as usize, s.len()));
            slice.unwrap_or_else(|| {
                let t = values.transpose(0, 1);
                t.as_slice::<f32>().map(|s| (s.as_ptr() as usize, s.len())).unwrap_or_default()
            })
        };
        let keys: Vec<_> = weights.iter().map(key).collect();
        let cached = |k| BF16_COPIES.lock().unwrap().as_ref().is_some_and(|copies| copies.contains_key(&k));
        assert!(keys.iter().all(|&k| cached(k)));
        // Once the weights are dropped, the next copy made lets theirs go.
        drop(weights);
        let other = Tensor::<Flex, 2>::random([64, 32], Distribution::Default, &device);
        rows_product(&x, &[other], true);
        assert!(keys.iter().all(|&k| !cached(k)));
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
