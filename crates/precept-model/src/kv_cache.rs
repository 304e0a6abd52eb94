//! The key/value cache, passed explicitly to the forward pass: tensors on the model's device, or
//! buffers in host memory ([`HostKv`]) that grow in place, for the CPU.

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use precept_kernels::host_attention::{HostKv, HostRowKv, HostShape};

use crate::attention::LayerInputs;
use crate::backend::{grouped_attention, split_heads, Heads};
use crate::host::{from_host, host_values};

/// Cached keys and values of one layer.
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    store: LayerStore<B>,
}

/// Where a layer's keys and values are kept.
#[derive(Debug, Clone)]
enum LayerStore<B: Backend> {
    /// `[batch, kv_heads, len, head_dim]` each, extended by concatenation.
    Tensors { keys: Option<Tensor<B, 4>>, values: Option<Tensor<B, 4>> },
    /// Host buffers, extended in place.
    Host(HostKv),
}

impl<B: Backend> Default for LayerKv<B> {
    fn default() -> Self {
        Self { store: LayerStore::Tensors { keys: None, values: None } }
    }
}

impl<B: Backend> LayerKv<B> {
    /// Appends this call's keys and values to the cache and attends over all of it: in place on
    /// a host cache, through burn's attention on a cache of tensors.
    ///
    /// # Shapes
    /// - q: `[batch, seq, heads·head_dim]`; k, v: `[batch, seq, kv_heads·head_dim]`
    /// - output: `[batch, seq, heads·head_dim]`
    pub fn attend(
        &mut self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        heads: Heads,
        shared: &LayerInputs<B>,
    ) -> Tensor<B, 3> {
        let [batch, seq, width] = q.dims();
        match &mut self.store {
            LayerStore::Host(host) => {
                let device = q.device();
                host.append(&host_values(k), &host_values(v), [batch, seq]);
                let shape = HostShape { batch, seq, heads: heads.heads };
                let out = host.attend(&host_values(q), shape, shared.host_mask());
                from_host(out, [batch, seq, width], &device)
            }
            LayerStore::Tensors { keys, values } => {
                let join = |old: Option<Tensor<B, 4>>, new| match old {
                    Some(old) => Tensor::cat(vec![old, new], 2),
                    None => new,
                };
                let joined_keys = join(keys.take(), split_heads(k, heads));
                let joined_values = join(values.take(), split_heads(v, heads));
                *keys = Some(joined_keys.clone());
                *values = Some(joined_values.clone());
                grouped_attention(q, joined_keys, joined_values, heads, shared.grouped_mask())
            }
        }
    }

    /// The host buffers, when this cache keeps them.
    pub fn host_mut(&mut self) -> Option<&mut HostKv> {
        match &mut self.store {
            LayerStore::Host(host) => Some(host),
            LayerStore::Tensors { .. } => None,
        }
    }

    /// Whether the keys and values are kept in host memory.
    pub fn is_on_host(&self) -> bool {
        matches!(self.store, LayerStore::Host(_))
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        match &self.store {
            LayerStore::Tensors { keys, .. } => keys.as_ref().map_or(0, |k| k.dims()[2]),
            LayerStore::Host(host) => host.len(),
        }
    }

    /// Keeps only the batch rows listed in `rows` (indices into the current batch, repeats
    /// allowed); `indices` holds the same as a tensor, needed by a cache of tensors only.
    fn retain_rows(&mut self, rows: &[usize], indices: Option<&Tensor<B, 1, Int>>) {
        match &mut self.store {
            LayerStore::Tensors { keys, values } => {
                let Some(indices) = indices else { return };
                for cached in [keys, values] {
                    *cached = cached.take().map(|t| t.select(0, indices.clone()));
                }
            }
            LayerStore::Host(host) => host.retain_rows(rows),
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
    /// An empty cache of tensors for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: (0..num_layers).map(|_| LayerKv::default()).collect() }
    }

    /// An empty cache in host memory for `num_layers` layers of `kv_heads` heads of `head_dim`.
    pub fn on_host(num_layers: usize, kv_heads: usize, head_dim: usize) -> Self {
        let layer = || LayerKv { store: LayerStore::Host(HostKv::new(kv_heads, head_dim)) };
        Self { layers: (0..num_layers).map(|_| layer()).collect() }
    }

    /// Keeps only the batch rows at the given indices (rows that finished generating are dropped;
    /// a repeated index copies its row).
    pub fn retain_rows(&mut self, rows: &[usize], device: &B::Device) {
        let indices = self.layers.iter().any(|layer| !layer.is_on_host()).then(|| {
            let indices: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            Tensor::<B, 1, Int>::from_data(TensorData::new(indices, [rows.len()]), device)
        });
        for layer in &mut self.layers {
            layer.retain_rows(rows, indices.as_ref());
        }
    }

    /// Row `row`'s keys and values in every layer without the positions in `skip` (its
    /// padding), when the cache is in host memory; `None` for a cache of tensors.
    pub fn host_row(&self, row: usize, skip: Range<usize>) -> Option<RowKv> {
        let layers = self.layers.iter().map(|layer| match &layer.store {
            LayerStore::Host(host) => Some(host.row_without(row, skip.clone())),
            LayerStore::Tensors { .. } => None,
        });
        Some(RowKv { layers: layers.collect::<Option<_>>()? })
    }

    /// Makes each host layer a cache of `len` positions whose rows begin with the first `keep`
    /// positions of the given rows (the rest to be hidden by the attention mask); layers of
    /// tensors are left as they are.
    ///
    /// # Panics
    /// If a row comes from a model with fewer layers, or as [`HostKv::seeded`].
    pub fn seed_host_rows(&mut self, rows: &[(&RowKv, usize)], len: usize) {
        for (index, layer) in self.layers.iter_mut().enumerate() {
            if let LayerStore::Host(host) = &mut layer.store {
                let rows: Vec<(&HostRowKv, usize)> =
                    rows.iter().map(|&(row, keep)| (&row.layers[index], keep)).collect();
                *host = host.seeded(&rows, len);
            }
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

/// One batch row's keys and values in every layer, taken out of a host cache
/// ([`KvCache::host_row`]) to seed a later one ([`KvCache::seed_host_rows`]).
#[derive(Debug, Clone)]
pub struct RowKv {
    layers: Vec<HostRowKv>,
}

impl RowKv {
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, HostRowKv::len)
    }

    /// Whether the row holds no positions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(HostRowKv::bytes).sum()
    }
}
