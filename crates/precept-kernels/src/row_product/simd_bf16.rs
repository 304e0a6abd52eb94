//! The bf16 kernels behind [`super::rows_times`]: the same products as module `simd`, reading
//! weights of half the bytes.
//!
//! A bf16 value is the top half of an f32, so a vector of `u32` lanes read from bf16 storage
//! holds two weights per lane: shifting left by 16 gives the even-indexed ones as f32, masking
//! the low half away gives the odd-indexed ones. The products are summed in f32 in that split
//! order (evens, then odds, per vector of lanes) and put back in column order once at the end, so
//! no shuffle runs in the inner loops.

use half::bf16;
use pulp::{Simd, WithSimd};

use super::simd::{
    load, prefetch_l1, prefetch_l2, Out, Strided, TransposedColumns, WeightBand, DOT_COLUMNS, LINE_BYTES, PASS_ROWS,
    WIDE_PASS_ROWS,
};
use super::Shape;

/// Vectors of `u32` lanes (each two bf16 weights) per row of a weight tile.
const TILE_VECTORS: usize = 2;

impl WithSimd for WeightBand<'_, bf16> {
    type Output = ();

    /// Passes over a few weight rows at a time, sweeping tiles of `2 · 2·lanes` columns, as the
    /// f32 kernel does; each tile's outputs are kept in split order until the band is done.
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self { x, w, partial, shape, depth } = self;
        let Shape { rows, d_in, d_out } = shape;
        assert!(x.len() == rows * d_in && w.len() == d_in * d_out && partial.len() == rows * d_out);
        assert!(depth.end <= d_in, "band {depth:?} lies past {d_in} weight rows");
        let pair_columns = 2 * S::F32_LANES;
        let tile_columns = TILE_VECTORS * pair_columns;
        let full = if S::IS_SCALAR { 0 } else { d_out / tile_columns * tile_columns };
        let (tile_rows, pass_depth) = if S::REGISTER_COUNT >= 32 { (6, WIDE_PASS_ROWS) } else { (2, PASS_ROWS) };
        for pass in depth.clone().step_by(pass_depth) {
            let pass_rows = pass_depth.min(depth.end - pass);
            for tile in (0..full).step_by(tile_columns) {
                let weights = Pairs { at: w[pass * d_out + tile..].as_ptr(), stride: d_out };
                for row in (0..rows).step_by(tile_rows) {
                    let x_rows = Strided { at: x[row * d_in + pass..].as_ptr(), stride: d_in };
                    let out = Out { at: partial[row * d_out + tile..].as_mut_ptr(), stride: d_out };
                    // SAFETY: `weights` has `pass_rows` rows of `tile_columns` bf16 values within
                    // `w`; `x_rows` has R rows of `pass_rows` floats within `x` and `out` R rows
                    // of `tile_columns` floats within `partial`, for the R ≤ `rows - row` here.
                    unsafe {
                        match (rows - row).min(tile_rows) {
                            6 => weight_tile::<S, 6>(simd, x_rows, weights, pass_rows, out),
                            5 => weight_tile::<S, 5>(simd, x_rows, weights, pass_rows, out),
                            4 => weight_tile::<S, 4>(simd, x_rows, weights, pass_rows, out),
                            3 => weight_tile::<S, 3>(simd, x_rows, weights, pass_rows, out),
                            2 => weight_tile::<S, 2>(simd, x_rows, weights, pass_rows, out),
                            _ => weight_tile::<S, 1>(simd, x_rows, weights, pass_rows, out),
                        }
                    }
                }
            }
        }
        for row in partial.chunks_exact_mut(d_out) {
            row[..full].chunks_exact_mut(pair_columns).for_each(unsplit);
        }
        for row in 0..rows {
            let out = &mut partial[row * d_out..][full..d_out];
            for k in depth.clone() {
                let (xk, w_row) = (x[row * d_in + k], &w[k * d_out..][full..d_out]);
                out.iter_mut().zip(w_row).for_each(|(o, wk)| *o += xk * wk.to_f32());
            }
        }
    }
}

impl WithSimd for TransposedColumns<'_, bf16> {
    type Output = ();

    /// Dot products in tiles of 4 rows of `e` by up to 4 rows of `x` (2 with 16 registers), `x`
    /// put in split order once so that it meets `e`'s weights lane for lane; the depth past the
    /// last whole vector pair and the columns past the last whole tile are summed plainly.
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self { x, e, block, shape, columns } = self;
        let Shape { rows, d_in, d_out } = shape;
        let width = columns.len();
        assert!(x.len() == rows * d_in && e.len() == d_out * d_in && block.len() == rows * width);
        assert!(columns.end <= d_out, "columns {columns:?} lie past {d_out}");
        let pair_columns = 2 * S::F32_LANES;
        let whole = if S::IS_SCALAR { 0 } else { d_in / pair_columns * pair_columns };
        let mut x_split = x.to_vec();
        for row in x_split.chunks_exact_mut(d_in) {
            row[..whole].chunks_exact_mut(pair_columns).for_each(split);
        }
        let full = if S::IS_SCALAR { 0 } else { width / DOT_COLUMNS * DOT_COLUMNS };
        let tile_rows = if S::REGISTER_COUNT >= 32 { 4 } else { 2 };
        for column in (0..full).step_by(DOT_COLUMNS) {
            let e_rows = Pairs { at: e[(columns.start + column) * d_in..].as_ptr(), stride: d_in };
            for row in (0..rows).step_by(tile_rows) {
                let x_rows = Strided { at: x_split[row * d_in..].as_ptr(), stride: d_in };
                let out = Out { at: block[row * width + column..].as_mut_ptr(), stride: width };
                // SAFETY: `e_rows` has 4 rows of `d_in` bf16 values within `e`; `x_rows` has R
                // rows of `d_in ≥ whole` floats within `x_split` and `out` R rows of 4 floats
                // within `block`, for the R ≤ `rows - row` chosen here.
                unsafe {
                    match (rows - row).min(tile_rows) {
                        4 => dot_tile::<S, 4>(simd, x_rows, e_rows, whole, out),
                        3 => dot_tile::<S, 3>(simd, x_rows, e_rows, whole, out),
                        2 => dot_tile::<S, 2>(simd, x_rows, e_rows, whole, out),
                        _ => dot_tile::<S, 1>(simd, x_rows, e_rows, whole, out),
                    }
                }
            }
        }
        for row in 0..rows {
            let x_row = &x[row * d_in..][..d_in];
            for column in 0..width {
                let e_row = &e[(columns.start + column) * d_in..][..d_in];
                let from = if column < full { whole } else { 0 };
                let rest: f32 = x_row[from..].iter().zip(&e_row[from..]).map(|(a, b)| a * b.to_f32()).sum();
                block[row * width + column] += rest;
            }
        }
    }
}

/// Rows of bf16 values, `stride` values apart.
#[derive(Clone, Copy)]
struct Pairs {
    at: *const bf16,
    stride: usize,
}

/// Most values a vector pair holds (two AVX-512 vectors of f32).
const MAX_PAIR_COLUMNS: usize = 32;

/// Reorders `2·lanes` values from column order to split order: the even-indexed ones, then the
/// odd-indexed ones.
fn split(values: &mut [f32]) {
    let mut copy = [0.0; MAX_PAIR_COLUMNS];
    copy[..values.len()].copy_from_slice(values);
    let half = values.len() / 2;
    for (i, pair) in copy[..values.len()].chunks_exact(2).enumerate() {
        (values[i], values[half + i]) = (pair[0], pair[1]);
    }
}

/// Undoes [`split`].
fn unsplit(values: &mut [f32]) {
    let mut copy = [0.0; MAX_PAIR_COLUMNS];
    copy[..values.len()].copy_from_slice(values);
    let (evens, odds) = copy[..values.len()].split_at(values.len() / 2);
    for (i, (even, odd)) in evens.iter().zip(odds).enumerate() {
        (values[2 * i], values[2 * i + 1]) = (*even, *odd);
    }
}

/// The even- and odd-indexed weights of the `2 · S::F32_LANES` bf16 values at `at`, as f32.
///
/// # Safety
/// `at` must point to `2 · S::F32_LANES` readable bf16 values.
#[inline(always)]
unsafe fn load_pairs<S: Simd>(simd: S, at: *const bf16) -> [S::f32s; 2] {
    // SAFETY: as the contract says; `u32s` holds `S::F32_LANES` lanes of two bf16 values each.
    let bits = unsafe { at.cast::<S::u32s>().read_unaligned() };
    let evens = simd.wrapping_dyn_shl_u32s(bits, simd.splat_u32s(16));
    let odds = simd.and_u32s(bits, simd.splat_u32s(0xFFFF_0000));
    [simd.transmute_f32s_u32s(evens), simd.transmute_f32s_u32s(odds)]
}

/// `out += x·weights` for R rows of `x` (`depth` floats each) and a `[depth, TILE_VECTORS ·
/// 2·lanes]` bf16 weight tile, `out` in split order, prefetching the tile's next `depth` rows.
///
/// # Safety
/// `x` must point to R rows of `depth` readable floats, `weights` to `depth` rows of
/// `TILE_VECTORS · 2 · S::F32_LANES` readable bf16 values and `out` to R rows of as many
/// readable and writable floats.
#[inline(always)]
unsafe fn weight_tile<S: Simd, const R: usize>(simd: S, x: Strided, weights: Pairs, depth: usize, out: Out) {
    const ACC: usize = 2 * TILE_VECTORS;
    let lanes = S::F32_LANES;
    // SAFETY: reads and writes stay within the extents the contract names; prefetches may point
    // past them, which is harmless (they never fault), and are computed without `add`.
    unsafe {
        let mut acc = [[simd.splat_f32s(0.0); ACC]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            let row = out.at.add(r * out.stride);
            *acc = std::array::from_fn(|j| load::<S>(row.add(j * lanes)));
        }
        let mut w_at = weights.at;
        for k in 0..depth {
            let w: [[S::f32s; 2]; TILE_VECTORS] = std::array::from_fn(|v| load_pairs(simd, w_at.add(v * 2 * lanes)));
            let ahead = w_at.wrapping_add(depth * weights.stride);
            for line in (0..TILE_VECTORS * 2 * lanes * size_of::<bf16>()).step_by(LINE_BYTES) {
                prefetch_l2(ahead.cast::<u8>().wrapping_add(line));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = simd.splat_f32s(*x.at.add(r * x.stride + k));
                for (acc, w) in acc.iter_mut().zip(w.iter().flatten()) {
                    *acc = simd.mul_add_f32s(xv, *w, *acc);
                }
            }
            w_at = w_at.add(weights.stride);
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = out.at.add(r * out.stride);
            for (j, acc) in acc.iter().enumerate() {
                row.add(j * lanes).cast::<S::f32s>().write_unaligned(*acc);
            }
        }
    }
}

/// `out[r][j] = x[r][..whole]·e[j][..whole]` for R rows of `x` in split order and 4 rows of `e`,
/// prefetching the same lines of the next 4 rows of `e` into L1.
///
/// # Safety
/// `x` must point to R rows of `whole` readable floats and `e` to 4 rows of `whole` readable bf16
/// values, `whole` a multiple of `2 · S::F32_LANES`; `out` to R rows of 4 writable floats.
#[inline(always)]
unsafe fn dot_tile<S: Simd, const R: usize>(simd: S, x: Strided, e: Pairs, whole: usize, out: Out) {
    let lanes = S::F32_LANES;
    let mut acc = [[simd.splat_f32s(0.0); DOT_COLUMNS]; R];
    // SAFETY: every read lies within the first `whole` values of a row the contract names;
    // prefetches never fault and are computed without `add`.
    unsafe {
        for k in (0..whole).step_by(2 * lanes) {
            let x_pairs: [[S::f32s; 2]; R] = std::array::from_fn(|r| {
                let at = x.at.add(r * x.stride + k);
                [load::<S>(at), load::<S>(at.add(lanes))]
            });
            let e_at = e.at.add(k);
            let next = e_at.wrapping_add(DOT_COLUMNS * e.stride);
            for j in 0..DOT_COLUMNS {
                prefetch_l1(next.wrapping_add(j * e.stride).cast());
                let [evens, odds] = load_pairs(simd, e_at.add(j * e.stride));
                for (acc, [x_evens, x_odds]) in acc.iter_mut().zip(x_pairs) {
                    acc[j] = simd.mul_add_f32s(x_odds, odds, simd.mul_add_f32s(x_evens, evens, acc[j]));
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (j, acc) in acc.iter().enumerate() {
                *out.at.add(r * out.stride + j) = simd.reduce_sum_f32s(*acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsplit_undoes_split() {
        let original: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let mut values = original.clone();
        split(&mut values);
        assert_eq!(values[..4], [0.0, 2.0, 4.0, 6.0]);
        assert_eq!(values[8..12], [1.0, 3.0, 5.0, 7.0]);
        unsplit(&mut values);
        assert_eq!(values, original);
    }
}
