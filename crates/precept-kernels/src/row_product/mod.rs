//! [`rows_times`]: matrix products for the few rows of a decoding step, on host memory.
//!
//! A general GEMM packs both operands into panels, which pays for itself on large products; a
//! decoding step multiplies 1 to 32 rows by weights that are read from memory once per step, so
//! packing them adds a second pass. These kernels stream each weight straight from its storage
//! into vector registers, hold a tile of outputs in registers, and reuse each weight tile from
//! cache for every row:
//! - [`Weight::Stored`] `[d_in, d_out]` weights are cut into bands of weight rows, each a
//!   contiguous stretch of memory whose partial products are then added in band order; the bands
//!   of all the call's stored weights are shared out so that each thread reads about as many
//!   values;
//! - a [`Weight::Transposed`] `[d_out, d_in]` weight (a tied embedding) is cut into blocks of
//!   output columns, each a contiguous stretch of rows, computed as dot products.
//!
//! Either layout may hold bf16 weights instead of f32 ones ([`Weight::StoredBf16`],
//! [`Weight::TransposedBf16`]): half the bytes to stream, summed in f32 all the same.
//!
//! All the weights of one call share one parallel region. The kernels (module `simd`) are
//! written once over pulp's vector types and run with the widest instruction set the CPU has;
//! without one ([`vectorised`] is false), plain loops compute the same sums (slowly: a program
//! should then keep the backend's own product).

mod simd;
mod simd_bf16;

use std::ops::Range;

use half::bf16;
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Output columns of a transposed weight handed to a thread at a time.
const TASK_COLUMNS: usize = 192;
/// Fewest weight values worth a thread of their own.
const MIN_SHARE_WORK: usize = 64 * 1024;

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
    /// `[d_in, d_out]` in bf16.
    StoredBf16(&'a [bf16]),
    /// `[d_out, d_in]` in bf16.
    TransposedBf16(&'a [bf16]),
}

impl Weight<'_> {
    /// How many values the weight holds.
    fn len(&self) -> usize {
        match self {
            Self::Stored(values) | Self::Transposed(values) => values.len(),
            Self::StoredBf16(values) | Self::TransposedBf16(values) => values.len(),
        }
    }

    /// Whether the weight is `[d_in, d_out]` (cut into bands of weight rows).
    fn is_stored(&self) -> bool {
        matches!(self, Self::Stored(_) | Self::StoredBf16(_))
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
            let values = weight.len();
            assert_eq!(values % d_in, 0, "a weight of {values} values is not made of rows of {d_in}");
            Shape { rows, d_in, d_out: values / d_in }
        })
        .collect();
    let threads = rayon::current_num_threads();
    let mut shares = band_shares(weights, &shapes, threads);
    for (index, shape) in shapes.iter().enumerate().filter(|&(i, _)| !weights[i].is_stored()) {
        shares.extend(column_blocks(*shape).map(|columns| vec![(index, Task::Columns(columns))]));
    }
    let parts: Vec<Vec<Vec<f32>>> = shares
        .par_iter()
        .map(|share| share.iter().map(|(index, task)| task.run(x, weights[*index], shapes[*index])).collect())
        .collect();
    let mut outs: Vec<Vec<f32>> = shapes.iter().map(|shape| vec![0.0; rows * shape.d_out]).collect();
    for ((index, task), part) in shares.iter().flatten().zip(parts.into_iter().flatten()) {
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

/// The stored weights' products cut into at most `threads` shares of about equal work, each a
/// list of bands: weights of unequal sizes, cut into equal numbers of bands each, would leave a
/// thread idle while another finishes the larger ones.
fn band_shares(weights: &[Weight<'_>], shapes: &[Shape], threads: usize) -> Vec<Vec<(usize, Task)>> {
    let stored: Vec<usize> =
        (0..weights.len()).filter(|&i| weights[i].is_stored() && shapes[i].rows > 0 && shapes[i].d_out > 0).collect();
    let work: usize = stored.iter().map(|&i| shapes[i].d_in * shapes[i].d_out).sum();
    let share_work = work.div_ceil(threads.max(1)).max(MIN_SHARE_WORK);
    let mut shares: Vec<Vec<(usize, Task)>> = vec![Vec::new()];
    let mut room = share_work;
    for index in stored {
        let Shape { d_in, d_out, .. } = shapes[index];
        let mut start = 0;
        while start < d_in {
            let rows = if shares.len() == threads { d_in - start } else { room.div_ceil(d_out).min(d_in - start) };
            if let Some(share) = shares.last_mut() {
                share.push((index, Task::Band(start..start + rows)));
            }
            start += rows;
            room = room.saturating_sub(rows * d_out);
            if room == 0 && shares.len() < threads {
                shares.push(Vec::new());
                room = share_work;
            }
        }
    }
    shares.retain(|share| !share.is_empty());
    shares
}

/// Output column blocks of a transposed weight's product, one task each.
fn column_blocks(Shape { rows, d_out, .. }: Shape) -> impl Iterator<Item = Range<usize>> {
    let len = if rows == 0 { 0 } else { d_out };
    let step = len.div_ceil(len.div_ceil(TASK_COLUMNS).max(1)).max(1);
    (0..len).step_by(step).map(move |start| start..(start + step).min(len))
}

impl Task {
    /// This task's part of `x·weight`.
    ///
    /// A band is `x[:, depth]·w[depth, :]`, `[rows, d_out]`; a column block is output columns
    /// `columns` of `x·eᵀ`, `[rows, columns.len()]`.
    fn run(&self, x: &[f32], weight: Weight<'_>, shape: Shape) -> Vec<f32> {
        let arch = Arch::new();
        match (self, weight) {
            (Task::Band(depth), stored) => {
                let (mut partial, depth) = (vec![0.0; shape.rows * shape.d_out], depth.clone());
                match stored {
                    Weight::Stored(w) => arch.dispatch(simd::WeightBand { x, w, partial: &mut partial, shape, depth }),
                    Weight::StoredBf16(w) => {
                        arch.dispatch(simd::WeightBand { x, w, partial: &mut partial, shape, depth })
                    }
                    _ => unreachable!("bands are cut from stored weights"),
                }
                partial
            }
            (Task::Columns(columns), transposed) => {
                let (mut block, columns) = (vec![0.0; shape.rows * columns.len()], columns.clone());
                match transposed {
                    Weight::Transposed(e) => {
                        arch.dispatch(simd::TransposedColumns { x, e, block: &mut block, shape, columns })
                    }
                    Weight::TransposedBf16(e) => {
                        arch.dispatch(simd::TransposedColumns { x, e, block: &mut block, shape, columns })
                    }
                    _ => unreachable!("column blocks are cut from transposed weights"),
                }
                block
            }
        }
    }
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
    fn bf16_weights_equal_naive_sums_of_the_rounded_weights() {
        for rows in ROWS {
            for [d_in, d_out] in SHAPES {
                let x = values(rows * d_in, 1);
                let w: Vec<bf16> = values(d_in * d_out, 7).into_iter().map(bf16::from_f32).collect();
                let stored = naive(&x, |k, c| w[k * d_out + c].to_f32(), [rows, d_in, d_out]);
                let transposed = naive(&x, |k, c| w[c * d_in + k].to_f32(), [rows, d_in, d_out]);
                for (layout, weight, expected) in
                    [("stored", Weight::StoredBf16(&w), stored), ("transposed", Weight::TransposedBf16(&w), transposed)]
                {
                    let out = rows_times(&x, [rows, d_in], &[weight]).remove(0);
                    let worst = worst_difference(&out, &expected);
                    assert!(worst < 1e-3, "{layout}, rows {rows}, {d_in}×{d_out}: {worst}");
                }
            }
        }
    }

    /// The 16-register kernels, which a CPU with AVX-512 would not otherwise run.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_kernels_equal_naive_sums_too() {
        let Some(simd) = pulp::x86::V3::try_new() else { return };
        for rows in ROWS {
            for [d_in, d_out] in SHAPES {
                let shape = Shape { rows, d_in, d_out };
                let (x, w) = (values(rows * d_in, 1), values(d_in * d_out, 7));
                let halves: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
                let rounded: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
                let mut outputs = [(); 4].map(|_| vec![0.0; rows * d_out]);
                let [stored, stored_bf16, transposed, transposed_bf16] = &mut outputs;
                Simd::vectorize(simd, simd::WeightBand { x: &x, w: &w, partial: stored, shape, depth: 0..d_in });
                let (depth, columns) = (0..d_in, 0..d_out);
                Simd::vectorize(simd, simd::WeightBand { x: &x, w: &halves, partial: stored_bf16, shape, depth });
                let columns_bf16 = columns.clone();
                Simd::vectorize(simd, simd::TransposedColumns { x: &x, e: &w, block: transposed, shape, columns });
                let (e, block) = (&halves, transposed_bf16);
                Simd::vectorize(simd, simd::TransposedColumns { x: &x, e, block, shape, columns: columns_bf16 });
                let expected = [
                    naive(&x, |k, c| w[k * d_out + c], [rows, d_in, d_out]),
                    naive(&x, |k, c| rounded[k * d_out + c], [rows, d_in, d_out]),
                    naive(&x, |k, c| w[c * d_in + k], [rows, d_in, d_out]),
                    naive(&x, |k, c| rounded[c * d_in + k], [rows, d_in, d_out]),
                ];
                for (kernel, (out, expected)) in outputs.iter().zip(&expected).enumerate() {
                    let worst = worst_difference(out, expected);
                    assert!(worst < 1e-3, "kernel {kernel}, rows {rows}, {d_in}×{d_out}: {worst}");
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
    fn threads_get_shares_of_about_equal_work_that_cover_every_weight_row_once() {
        let (q, kv) = (vec![0.0; 576 * 576], vec![0.0; 576 * 192]);
        let weights = [Weight::Stored(&q), Weight::Stored(&kv), Weight::Stored(&kv)];
        let shapes = [576, 192, 192].map(|d_out| Shape { rows: 1, d_in: 576, d_out });
        for threads in [1, 2, 3, 8] {
            let shares = band_shares(&weights, &shapes, threads);
            assert_eq!(shares.len(), threads);
            let work: Vec<usize> = shares
                .iter()
                .map(|share| share.iter().map(|(i, task)| shapes[*i].d_out * task_len(task)).sum())
                .collect();
            let (least, most) = (work.iter().min().unwrap(), work.iter().max().unwrap());
            assert!(most - least <= threads * 576, "{threads} threads: {work:?}");
            for (index, shape) in shapes.iter().enumerate() {
                let mut bands: Vec<Range<usize>> = shares
                    .iter()
                    .flatten()
                    .filter(|(i, _)| *i == index)
                    .map(|(_, task)| match task {
                        Task::Band(rows) => rows.clone(),
                        Task::Columns(_) => unreachable!(),
                    })
                    .collect();
                bands.sort_by_key(|rows| rows.start);
                assert_eq!(bands.first().map(|r| r.start), Some(0));
                assert!(bands.windows(2).all(|pair| pair[0].end == pair[1].start));
                assert_eq!(bands.last().map(|r| r.end), Some(shape.d_in));
            }
        }
    }

    fn task_len(task: &Task) -> usize {
        match task {
            Task::Band(rows) | Task::Columns(rows) => rows.len(),
        }
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
