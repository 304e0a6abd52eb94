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
    ///
    /// The sine table carries the sign of `rotate_half` (`[-sin, sin]` over the two halves), so
    /// a rotation is `x·cos + swap_halves(x)·sin`.
    pub fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let inv_freq = inverse_frequencies(config);
        let (positions, d) = (config.max_position_embeddings, config.head_dim);
        let mut cos = Vec::with_capacity(positions * d);
        let mut sin = Vec::with_capacity(positions * d);
        for p in 0..positions {
            // Angles in float32 like transformers, so long positions round the same way.
            let angles: Vec<f32> = inv_freq.iter().map(|f| (p as f32) * (*f as f32)).collect();
            for sign in [-1.0f32, 1.0] {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| sign * a.sin()));
            }
        }
        let table = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [positions, d]), device);
        Self { cos: table(cos), sin: table(sin) }
    }

    /// Number of positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// The rotation for `heads` heads at `positions` (`[batch, seq]`, each below
    /// [`Self::max_positions`]), laid out like a projection's output so that applying it is two
    /// same-shape products; computed once per forward pass and shared by every layer.
    pub fn angles(&self, positions: &Tensor<B, 2, Int>, heads: usize) -> RotaryAngles<B> {
        let [batch, seq] = positions.dims();
        let head_dim = self.cos.dims()[1];
        let flat = positions.clone().reshape([batch * seq]);
        let gather = |table: &Tensor<B, 2>| {
            table.clone().select(0, flat.clone()).reshape([batch, seq, 1, head_dim]).repeat_dim(2, heads).reshape([
                batch,
                seq,
                heads * head_dim,
            ])
        };
        RotaryAngles { cos: gather(&self.cos), sin: gather(&self.sin), head_dim }
    }
}

/// Rotation factors for one head count, `[batch, seq, heads·head_dim]`.
#[derive(Debug, Clone)]
pub struct RotaryAngles<B: Backend> {
    cos: Tensor<B, 3>,
    sin: Tensor<B, 3>,
    head_dim: usize,
}

impl<B: Backend> RotaryAngles<B> {
    /// Rotates every head of a query or key projection.
    ///
    /// # Shapes
    /// - x: `[batch, seq, heads·head_dim]` → same
    pub fn apply(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x.clone() * self.cos.clone() + swap_halves(x, self.head_dim) * self.sin.clone()
    }
}

/// `[x1, x2] -> [x2, x1]` within each head.
fn swap_halves<B: Backend>(x: Tensor<B, 3>, head_dim: usize) -> Tensor<B, 3> {
    let [b, s, width] = x.dims();
    let heads = x.reshape([b, s, width / head_dim, head_dim]);
    let first = heads.clone().narrow(3, 0, head_dim / 2);
    let second = heads.narrow(3, head_dim / 2, head_dim / 2);
    Tensor::cat(vec![second, first], 3).reshape([b, s, width])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn position_zero_is_the_identity_and_norms_are_preserved() {
        let _rng = crate::lock_backend_rng();
        let device = Default::default();
        let config = LlamaConfig::tiny();
        let rope = RotaryEmbedding::<Flex>::new(&config, &device);
        let x = Tensor::<Flex, 3>::random([1, 3, 16], burn::tensor::Distribution::Default, &device);
        let positions = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![0i64, 5, 77], [1, 3]), &device);
        let y = rope.angles(&positions, 2).apply(x.clone());
        let first = |t: Tensor<Flex, 3>| t.slice([0..1, 0..1, 0..16]);
        first(y.clone()).into_data().assert_approx_eq::<f32>(&first(x.clone()).into_data(), Default::default());
        let norms = |t: Tensor<Flex, 3>| t.reshape([1, 3, 2, 8]).square().sum_dim(3).into_data();
        norms(y).assert_approx_eq::<f32>(&norms(x), Default::default());
    }

    // Python: half = d//2; rotated = [x[i]*cos(p*f[i]) - x[i+half]*sin(p*f[i]) for i < half] + ...
    #[test]
    fn rotation_pairs_dimension_i_with_i_plus_half() {
        let device = Default::default();
        let config = LlamaConfig { head_dim: 4, ..LlamaConfig::tiny() }.with_rope_theta(100.0);
        let rope = RotaryEmbedding::<Flex>::new(&config, &device);
        let x = Tensor::<Flex, 3>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 0.0], [1, 1, 4]), &device);
        let positions = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![1i64], [1, 1]), &device);
        let y = rope.angles(&positions, 1).apply(x).into_data().to_vec::<f32>().unwrap();
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
