//! Rotary position embeddings in Hugging Face's half-split layout.
//!
//! Hugging Face Llama checkpoints rotate the pair `(x[i], x[i + d/2])`; burn's `RotaryEncoding`
//! rotates interleaved pairs `(x[2i], x[2i+1])`, so this module computes its own tables.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::{Llama3RopeScaling, LlamaConfig};

/// Precomputed `cos` and `sin` tables, shape `[max_positions, head_dim]`.
///
/// Plain tensors, not parameters: derived from the config, never trained or saved.
#[derive(Module, Debug)]
pub struct RotaryEmbedding<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

/// Inverse frequencies `theta^(-2i/d)`, rescaled for Llama 3 when configured.
pub fn inverse_frequencies(config: &LlamaConfig) -> Vec<f64> {
    let d = config.head_dim;
    let base: Vec<f64> = (0..d / 2).map(|i| config.rope_theta.powf(-((2 * i) as f64) / d as f64)).collect();
    match &config.rope_scaling {
        None => base,
        Some(scaling) => base.into_iter().map(|f| llama3_rescale(f, scaling)).collect(),
    }
}

/// Llama 3's frequency rescaling: long wavelengths divided by `factor`, short ones kept,
/// a smooth blend between (transformers' `_compute_llama3_parameters`).
fn llama3_rescale(inv_freq: f64, s: &Llama3RopeScaling) -> f64 {
    let old_len = s.original_max_position_embeddings as f64;
    let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
    if wavelen < old_len / s.high_freq_factor {
        inv_freq
    } else if wavelen > old_len / s.low_freq_factor {
        inv_freq / s.factor
    } else {
        let smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * inv_freq / s.factor + smooth * inv_freq
    }
}

impl<B: Backend> RotaryEmbedding<B> {
    /// Builds the tables for positions `0..config.max_position_embeddings`.
    pub fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let inv_freq = inverse_frequencies(config);
        let (positions, d) = (config.max_position_embeddings, config.head_dim);
        let mut cos = Vec::with_capacity(positions * d);
        let mut sin = Vec::with_capacity(positions * d);
        for p in 0..positions {
            // Angles in float32 like transformers, so long positions round the same way.
            let angles: Vec<f32> = inv_freq.iter().map(|f| (p as f32) * (*f as f32)).collect();
            for _half in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        let table = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [positions, d]), device);
        Self { cos: table(cos), sin: table(sin) }
    }

    /// Number of positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates queries or keys by their positions.
    ///
    /// # Shapes
    /// - x: `[batch, heads, seq, head_dim]`
    /// - positions: `[batch, seq]`, each below [`Self::max_positions`]
    pub fn apply(&self, x: Tensor<B, 4>, positions: &Tensor<B, 2, Int>) -> Tensor<B, 4> {
        let [batch, _heads, seq, head_dim] = x.dims();
        let flat = positions.clone().reshape([batch * seq]);
        let gather = |table: &Tensor<B, 2>| table.clone().select(0, flat.clone()).reshape([batch, 1, seq, head_dim]);
        let (cos, sin) = (gather(&self.cos), gather(&self.sin));
        x.clone() * cos + rotate_half(x) * sin
    }
}

/// `[x1, x2] -> [-x2, x1]` on the last dimension.
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, s, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..s, 0..d / 2]);
    let x2 = x.slice([0..b, 0..h, 0..s, d / 2..d]);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn position_zero_is_the_identity_and_norms_are_preserved() {
        let device = Default::default();
        let config = LlamaConfig::tiny();
        let rope = RotaryEmbedding::<Flex>::new(&config, &device);
        let x = Tensor::<Flex, 4>::random([1, 2, 3, 8], burn::tensor::Distribution::Default, &device);
        let positions = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![0i64, 5, 77], [1, 3]), &device);
        let y = rope.apply(x.clone(), &positions);
        let first = |t: Tensor<Flex, 4>| t.slice([0..1, 0..2, 0..1, 0..8]);
        first(y.clone()).into_data().assert_approx_eq::<f32>(&first(x.clone()).into_data(), Default::default());
        let norms = |t: Tensor<Flex, 4>| t.square().sum_dim(3).into_data();
        norms(y).assert_approx_eq::<f32>(&norms(x), Default::default());
    }

    // Python: half = d//2; rotated = [x[i]*cos(p*f[i]) - x[i+half]*sin(p*f[i]) for i < half] + ...
    #[test]
    fn rotation_pairs_dimension_i_with_i_plus_half() {
        let device = Default::default();
        let config = LlamaConfig { head_dim: 4, ..LlamaConfig::tiny() }.with_rope_theta(100.0);
        let rope = RotaryEmbedding::<Flex>::new(&config, &device);
        let x = Tensor::<Flex, 4>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 0.0], [1, 1, 1, 4]), &device);
        let positions = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![1i64], [1, 1]), &device);
        let y = rope.apply(x, &positions).into_data().to_vec::<f32>().unwrap();
        // f[0] = 1, so dim 0 -> cos(1) and dim 2 (its pair) -> sin(1); dims 1 and 3 untouched.
        let expected = [1f32.cos(), 0.0, 1f32.sin(), 0.0];
        for (a, b) in y.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn llama3_scaling_divides_long_wavelengths_and_keeps_short_ones() {
        let s = Llama3RopeScaling::new(8.0, 1.0, 4.0, 8192);
        assert_eq!(llama3_rescale(1.0, &s), 1.0);
        let long = 2.0 * std::f64::consts::PI / 10000.0;
        assert!((llama3_rescale(long, &s) - long / 8.0).abs() < 1e-15);
    }
}
