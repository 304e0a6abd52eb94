//! The key/value cache, passed explicitly to the forward pass.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// Cached keys and values of one layer, shape `[batch, kv_heads, len, head_dim]` each.
#[derive(Debug, Clone, Default)]
pub struct LayerKv<B: Backend> {
    keys: Option<Tensor<B, 4>>,
    values: Option<Tensor<B, 4>>,
}

impl<B: Backend> LayerKv<B> {
    /// Appends this step's keys and values and returns the whole cached sequence.
    pub fn append(&mut self, keys: Tensor<B, 4>, values: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let join = |old: Option<Tensor<B, 4>>, new| match old {
            Some(old) => Tensor::cat(vec![old, new], 2),
            None => new,
        };
        let keys = join(self.keys.take(), keys);
        let values = join(self.values.take(), values);
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        (keys, values)
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Keeps only the batch rows listed in `rows` (`[kept]`, indices into the current batch).
    pub fn retain_rows(&mut self, rows: &Tensor<B, 1, Int>) {
        for cached in [&mut self.keys, &mut self.values] {
            *cached = cached.take().map(|t| t.select(0, rows.clone()));
        }
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One [`LayerKv`] per decoder layer.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    /// The per-layer caches, in layer order.
    pub layers: Vec<LayerKv<B>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: (0..num_layers).map(|_| LayerKv::default()).collect() }
    }

    /// Keeps only the batch rows at the given indices (rows that finished generating are dropped).
    pub fn retain_rows(&mut self, rows: &[usize]) {
        let Some(device) = self.layers.iter().find_map(|l| l.keys.as_ref().map(|k| k.device())) else {
            return;
        };
        let indices: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let indices = Tensor::<B, 1, Int>::from_data(TensorData::new(indices, [rows.len()]), &device);
        for layer in &mut self.layers {
            layer.retain_rows(&indices);
        }
    }

    /// Number of cached positions (the same in every layer).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerKv::len)
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
