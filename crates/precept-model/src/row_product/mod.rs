//! [`rows_times`]: matrix products for the few rows of a decoding step, on host memory.
//!
//! A general GEMM packs both operands into panels, which pays for itself on large products; a
//! decoding step multiplies 1 to 32 rows by weights that are read from memory once per step, so
//! packing them adds a second pass. These kernels stream each weight straight from its storage
//! into vector registers, hold a tile of outputs in registers, and reuse each weight tile from
//! cache for every row:
//! - a [`Weight::Stored`] `[d_in, d_out]` weight is cut into bands of weight rows, one per thread,
//!   each a contiguous stretch of memory whose partial products are then added in band order;
//! - a [`Weight::Transposed`] `[d_out, d_in]` weight (a tied embedding) is cut into blocks of
//!   output columns, each a contiguous stretch of rows, computed as dot products.
//!
//! All the weights of one call share one parallel region. The kernels (module `simd`) are
//! written once over pulp's vector types and run with the widest instruction set the CPU has;
//! without one ([`vectorised`] is false), plain loops compute the same sums (slowly: a program
//! should then keep the backend's own product).

mod simd;

use std::ops::Range;

use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Output columns of a transposed weight handed to a thread at a time.
const TASK_COLUMNS: usize = 192;
/// Fewest weight rows worth a thread of their own.
const MIN_BAND_ROWS: usize = 64;

/// Whether this CPU has vector instructions for the kernels (AVX2 with FMA or AVX-512 on x86-64,
/// NEON on AArch64).
pub fn vectorised() -> bool {
    struct Vectorised;
    impl WithSimd for Vectorised {
        type Output = bool;
        fn with_simd<S: Simd>(self, _: S) -> bool {
            !S::IS_SCALAR
        }
    }
    Arch::new().dispatch(Vectorised)
}

/// A weight in host memory, row-major and contiguous.
#[derive(Clone, Copy, Debug)]
pub enum Weight<'a> {
    /// `[d_in, d_out]`: the product is `x·W`.
    Stored(&'a [f32]),
    /// `[d_out, d_in]`: the product is `x·Wᵀ`.
    Transposed(&'a [f32]),
}

impl Weight<'_> {
    fn values(&self) -> &[f32] {
        match self {
            Self::Stored(values) | Self::Transposed(values) => values,
        }
    }
}

/// `x·Wᵢ` for `x` `[rows, d_in]` and each weight, as `[rows, d_outᵢ]` row-major values.
///
/// The result does not depend on how rayon schedules the work (the number of threads sets the
/// bands, and so the order of the sums).
///
/// # Panics
/// When `x` is not `[rows, d_in]`, `d_in` is 0, or a weight's length is not a multiple of `d_in`.
pub fn rows_times(x: &[f32], [rows, d_in]: [usize; 2], weights: &[Weight<'_>]) -> Vec<Vec<f32>> {
    assert_eq!(x.len(), rows * d_in, "x is not [{rows}, {d_in}]");
    assert!(d_in > 0, "products over zero-width rows have no defined width");
    let shapes: Vec<Shape> = weights
        .iter()
        .map(|weight| {
            let values = weight.values().len();
            assert_eq!(values % d_in, 0, "a weight of {values} values is not made of rows of {d_in}");
            Shape { rows, d_in, d_out: values / d_in }
        })
        .collect();
    let threads = rayon::current_num_threads();
    let tasks: Vec<(usize, Task)> = weights
        .iter()
        .zip(&shapes)
        .enumerate()
        .flat_map(|(index, (weight, shape))| Task::split(weight, *shape, threads).map(move |task| (index, task)))
        .collect();
    let parts: Vec<Vec<f32>> =
        tasks.par_iter().map(|(index, task)| task.run(x, weights[*index], shapes[*index])).collect();
    let mut outs: Vec<Vec<f32>> = shapes.iter().map(|shape| vec![0.0; rows * shape.d_out]).collect();
    for ((index, task), part) in tasks.iter().zip(parts) {
        let (out, d_out) = (&mut outs[*index], shapes[*index].d_out);
        match task {
            Task::Band(_) => out.iter_mut().zip(part).for_each(|(o, p)| *o += p),
            Task::Columns(columns) => {
                for (row, values) in part.chunks_exact(columns.len()).enumerate() {
                    out[row * d_out + columns.start..row * d_out + columns.end].copy_from_slice(values);
                }
            }
        }
    }
    outs
}

/// One product's dimensions.
#[derive(Clone, Copy, Debug)]
struct Shape {
    rows: usize,
    d_in: usize,
    d_out: usize,
}

/// A thread's share of one product.
#[derive(Clone, Debug)]
enum Task {
    /// Weight rows `depth` of a stored weight: a `[rows, d_out]` partial product.
    Band(Range<usize>),
    /// Output columns of a transposed weight: a `[rows, columns.len()]` block.
    Columns(Range<usize>),
}

impl Task {
    /// The tasks that compute `weight`'s product.
    fn split(weight: &Weight<'_>, shape: Shape, threads: usize) -> impl Iterator<Item = Task> {
        let Shape { rows, d_in, d_out } = shape;
        let (len, parts) = match weight {
            _ if rows == 0 || d_out == 0 => (0, 1),
            Weight::Stored(_) => (d_in, threads.min(d_in.div_ceil(MIN_BAND_ROWS)).max(1)),
            Weight::Transposed(_) => (d_out, d_out.div_ceil(TASK_COLUMNS)),
        };
        let step = len.div_ceil(parts).max(1);
        let stored = matches!(weight, Weight::Stored(_));
        (0..len).step_by(step).map(move |start| {
            let range = start..(start + step).min(len);
            if stored {
                Task::Band(range)
            } else {
                Task::Columns(range)
            }
        })
    }

    /// This task's part of `x·weight`.
    fn run(&self, x: &[f32], weight: Weight<'_>, shape: Shape) -> Vec<f32> {
        match (self, weight) {
            (Task::Band(depth), Weight::Stored(w)) => weight_band(x, w, shape, depth.clone()),
            (Task::Columns(columns), Weight::Transposed(e)) => transposed_columns(x, e, shape, columns.clone()),
            _ => unreachable!("tasks are split by weight kind"),
        }
    }
}

/// `x[:, depth]·w[depth, :]`, `[rows, d_out]`.
fn weight_band(x: &[f32], w: &[f32], shape: Shape, depth: Range<usize>) -> Vec<f32> {
    let mut partial = vec![0.0; shape.rows * shape.d_out];
    Arch::new().dispatch(simd::WeightBand { x, w, partial: &mut partial, shape, depth });
    partial
}

/// Output columns `columns` of `x·eᵀ`, `[rows, columns.len()]`.
fn transposed_columns(x: &[f32], e: &[f32], shape: Shape, columns: Range<usize>) -> Vec<f32> {
    let mut block = vec![0.0; shape.rows * columns.len()];
    Arch::new().dispatch(simd::TransposedColumns { x, e, block: &mut block, shape, columns });
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[rows, d_out]` sums of `x[r, k]·w(k, c)` in f64.
    fn naive(x: &[f32], w: impl Fn(usize, usize) -> f32, [rows, d_in, d_out]: [usize; 3]) -> Vec<f32> {
        let mut out = vec![0.0; rows * d_out];
        for r in 0..rows {
            for c in 0..d_out {
                out[r * d_out + c] =
                    (0..d_in).map(|k| f64::from(x[r * d_in + k]) * f64::from(w(k, c))).sum::<f64>() as f32;
            }
        }
        out
    }

    /// Deterministic values in [-1, 1].
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn worst_difference(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    }

    /// Row counts around the kernels' tile heights; widths with ragged tails in both dimensions.
    const ROWS: [usize; 9] = [1, 2, 5, 6, 7, 8, 9, 16, 33];
    const SHAPES: [[usize; 2]; 5] = [[5, 48], [64, 200], [33, 1], [17, 7], [576, 192 + 47]];

    #[test]
    fn both_layouts_equal_naive_sums_for_every_row_count_and_ragged_widths() {
        for rows in ROWS {
            for [d_in, d_out] in SHAPES {
                let (x, w) = (values(rows * d_in, 1), values(d_in * d_out, 7));
                let stored = naive(&x, |k, c| w[k * d_out + c], [rows, d_in, d_out]);
                let transposed = naive(&x, |k, c| w[c * d_in + k], [rows, d_in, d_out]);
                for (layout, weight, expected) in
                    [("stored", Weight::Stored(&w), stored), ("transposed", Weight::Transposed(&w), transposed)]
                {
                    let out = rows_times(&x, [rows, d_in], &[weight]).remove(0);
                    let worst = worst_difference(&out, &expected);
                    assert!(worst < 1e-3, "{layout}, rows {rows}, {d_in}×{d_out}: {worst}");
                }
            }
        }
    }

    #[test]
    fn several_weights_in_one_call_equal_each_alone() {
        let (rows, d_in) = (3, 130);
        let x = values(rows * d_in, 5);
        let (a, b, c) = (values(d_in * 200, 1), values(64 * d_in, 2), values(d_in * 7, 3));
        let weights = [Weight::Stored(&a), Weight::Transposed(&b), Weight::Stored(&c)];
        let together = rows_times(&x, [rows, d_in], &weights);
        for (weight, product) in weights.iter().zip(&together) {
            assert_eq!(&rows_times(&x, [rows, d_in], &[*weight]).remove(0), product);
        }
        assert_eq!(together.iter().map(Vec::len).collect::<Vec<_>>(), [600, 192, 21]);
    }

    #[test]
    fn empty_products_are_empty() {
        assert_eq!(rows_times(&[], [0, 2], &[Weight::Stored(&[1.0; 6])]), [Vec::<f32>::new()]);
        assert_eq!(rows_times(&[1.0, 2.0], [1, 2], &[Weight::Transposed(&[])]), [Vec::<f32>::new()]);
    }

    #[test]
    #[should_panic(expected = "is not made of rows of 3")]
    fn weights_of_the_wrong_length_are_refused() {
        rows_times(&[0.0; 6], [2, 3], &[Weight::Stored(&[0.0; 5])]);
    }
}
