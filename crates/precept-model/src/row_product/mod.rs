//! Matrix products for the few rows of a decoding step, on host memory: [`rows_times_weight`]
//! (`x·W` with `W` stored `[d_in, d_out]`) and [`rows_times_transposed`] (`x·Eᵀ` with `E` stored
//! `[d_out, d_in]`, a tied embedding).
//!
//! A general GEMM packs both operands into panels, which pays for itself on large products; a
//! decoding step multiplies 1 to 32 rows by a weight that is read from memory once per step, so
//! packing it adds a second pass over it. These kernels stream the weight straight from its
//! storage into AVX-512 registers, hold a tile of outputs in registers for the whole sum, and
//! reuse each weight tile from cache for every row. Output column blocks are shared among
//! rayon's threads. Without AVX-512, plain loops compute the same sums (slowly: a program should
//! then keep the backend's own product).

#[cfg(target_arch = "x86_64")]
mod avx512;

use std::ops::Range;

use rayon::prelude::*;

/// Output columns handed to a thread at a time.
const TASK_COLUMNS: usize = 192;

/// Whether this CPU runs the vectorised kernels.
pub fn vectorised() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out = x·w` for `x` `[rows, d_in]`, `w` `[d_in, d_out]` and `out` `[rows, d_out]`, all
/// row-major and contiguous.
///
/// # Panics
/// When a slice's length does not match the dimensions.
pub fn rows_times_weight(x: &[f32], w: &[f32], out: &mut [f32], dims: [usize; 3]) {
    let shape = Shape::checked(x, w, out, dims);
    let Shape { rows, d_in, d_out } = shape;
    if rows == 0 || d_out == 0 {
        return;
    }
    // Each thread sums over its own band of weight rows, a contiguous stretch of memory; the
    // partial products are added in band order, so the result does not depend on scheduling.
    let bands = rayon::current_num_threads().min(d_in.div_ceil(MIN_BAND_ROWS)).max(1);
    let band_rows = d_in.div_ceil(bands);
    let partials: Vec<Vec<f32>> = (0..d_in.div_ceil(band_rows.max(1)))
        .into_par_iter()
        .map(|band| {
            let depth = band * band_rows..((band + 1) * band_rows).min(d_in);
            let mut partial = vec![0.0; rows * d_out];
            weight_band(x, w, &mut partial, shape, depth);
            partial
        })
        .collect();
    out.fill(0.0);
    for partial in partials {
        out.iter_mut().zip(partial).for_each(|(o, p)| *o += p);
    }
}

/// Fewest weight rows worth a thread of their own.
const MIN_BAND_ROWS: usize = 64;

/// `partial += x[:, depth]·w[depth, :]`.
fn weight_band(x: &[f32], w: &[f32], partial: &mut [f32], shape: Shape, depth: Range<usize>) {
    let Shape { rows, d_in, d_out } = shape;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if vectorised() {
        done = d_out / avx512::TILE_COLUMNS * avx512::TILE_COLUMNS;
        // SAFETY: AVX-512F is present; the slices match `shape` (checked by the caller),
        // `partial` is `[rows, d_out]`, `depth` lies within `0..d_in` and `done ≤ d_out`.
        unsafe { avx512::rows_times_weight(x, w, partial, shape, depth.clone(), done) };
    }
    for row in 0..rows {
        let out = &mut partial[row * d_out..][done..d_out];
        for k in depth.clone() {
            let (xk, w_row) = (x[row * d_in + k], &w[k * d_out..][done..d_out]);
            out.iter_mut().zip(w_row).for_each(|(o, &wk)| *o += xk * wk);
        }
    }
}

/// `out = x·eᵀ` for `x` `[rows, d_in]`, `e` `[d_out, d_in]` and `out` `[rows, d_out]`, all
/// row-major and contiguous.
///
/// # Panics
/// When a slice's length does not match the dimensions.
pub fn rows_times_transposed(x: &[f32], e: &[f32], out: &mut [f32], dims: [usize; 3]) {
    let shape = Shape::checked(x, e, out, dims);
    in_column_blocks(out, shape, |block, columns| {
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if vectorised() {
            done = columns.len() / avx512::DOT_COLUMNS * avx512::DOT_COLUMNS;
            // SAFETY: as in `rows_times_weight`.
            unsafe { avx512::rows_times_transposed(x, e, block, shape, columns.start, done) };
        }
        for row in 0..shape.rows {
            let x_row = &x[row * shape.d_in..][..shape.d_in];
            for column in done..columns.len() {
                let e_row = &e[(columns.start + column) * shape.d_in..][..shape.d_in];
                block[row * columns.len() + column] = x_row.iter().zip(e_row).map(|(a, b)| a * b).sum();
            }
        }
    });
}

/// The product's dimensions.
#[derive(Clone, Copy, Debug)]
struct Shape {
    rows: usize,
    d_in: usize,
    d_out: usize,
}

impl Shape {
    /// `[rows, d_in, d_out]`, checked against the operands' lengths.
    fn checked(x: &[f32], w: &[f32], out: &[f32], [rows, d_in, d_out]: [usize; 3]) -> Self {
        assert_eq!(x.len(), rows * d_in, "x is not [{rows}, {d_in}]");
        assert_eq!(w.len(), d_in * d_out, "the weight does not hold {d_in}×{d_out} values");
        assert_eq!(out.len(), rows * d_out, "out is not [{rows}, {d_out}]");
        Self { rows, d_in, d_out }
    }
}

/// Fills `out` block by block of output columns, in parallel: `fill(block, columns)` writes
/// `[rows, columns.len()]` values into a zeroed `block`.
fn in_column_blocks(out: &mut [f32], shape: Shape, fill: impl Fn(&mut [f32], Range<usize>) + Sync) {
    let Shape { rows, d_out, .. } = shape;
    if rows == 0 || d_out == 0 {
        return;
    }
    let blocks: Vec<(Range<usize>, Vec<f32>)> = (0..d_out.div_ceil(TASK_COLUMNS))
        .into_par_iter()
        .map(|task| {
            let columns = task * TASK_COLUMNS..(task * TASK_COLUMNS + TASK_COLUMNS).min(d_out);
            let mut block = vec![0.0; rows * columns.len()];
            fill(&mut block, columns.clone());
            (columns, block)
        })
        .collect();
    for (columns, block) in blocks {
        for (row, values) in block.chunks_exact(columns.len()).enumerate() {
            out[row * d_out + columns.start..row * d_out + columns.end].copy_from_slice(values);
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
    fn weight_products_equal_naive_sums_for_every_row_count_and_ragged_widths() {
        for rows in ROWS {
            for [d_in, d_out] in SHAPES {
                let (x, w) = (values(rows * d_in, 1), values(d_in * d_out, 7));
                let mut out = vec![f32::NAN; rows * d_out];
                rows_times_weight(&x, &w, &mut out, [rows, d_in, d_out]);
                let expected = naive(&x, |k, c| w[k * d_out + c], [rows, d_in, d_out]);
                let worst = worst_difference(&out, &expected);
                assert!(worst < 1e-3, "rows {rows}, {d_in}×{d_out}: {worst}");
            }
        }
    }

    #[test]
    fn transposed_products_equal_naive_sums_for_every_row_count_and_ragged_widths() {
        for rows in ROWS {
            for [d_in, d_out] in SHAPES {
                let (x, e) = (values(rows * d_in, 3), values(d_out * d_in, 11));
                let mut out = vec![f32::NAN; rows * d_out];
                rows_times_transposed(&x, &e, &mut out, [rows, d_in, d_out]);
                let expected = naive(&x, |k, c| e[c * d_in + k], [rows, d_in, d_out]);
                let worst = worst_difference(&out, &expected);
                assert!(worst < 1e-3, "rows {rows}, {d_in}×{d_out}: {worst}");
            }
        }
    }

    #[test]
    fn empty_products_write_nothing() {
        let mut out = [];
        rows_times_weight(&[], &[1.0; 6], &mut out, [0, 2, 3]);
        rows_times_transposed(&[1.0, 2.0], &[], &mut out, [1, 2, 0]);
    }

    #[test]
    #[should_panic(expected = "x is not [2, 3]")]
    fn operands_of_the_wrong_length_are_refused() {
        rows_times_weight(&[0.0; 5], &[0.0; 6], &mut [0.0; 4], [2, 3, 2]);
    }
}
