//! The kernels behind [`super::rows_times`], written once over pulp's [`Simd`] vectors and run
//! with the widest instruction set the CPU has (AVX-512, AVX2 with FMA, NEON, …). Tile sizes
//! follow the vector registers: 32 on AVX-512, 16 on the others.

use std::ops::Range;

use pulp::{Simd, WithSimd};

use super::Shape;

/// Weight rows summed per pass over a band's tiles with 16 vector registers (AVX2, NEON): few, so
/// that few rows of memory stream at once (on a 2-core AMD EPYC with AVX2, 4 beat 8 by a fifth at
/// one row and tied at 16 rows).
pub(super) const PASS_ROWS: usize = 4;
/// The same with 32 registers (AVX-512): on a 2-core AMD EPYC with AVX-512, 16 tied 4 and 8 at one
/// row and took 34–40 ms for 16 rows of SmolLM2's 30 layers against 40–41 (8) and 47–49 (4).
pub(super) const WIDE_PASS_ROWS: usize = 16;
/// Output columns per `x·Eᵀ` tile: four rows of `E`.
pub(super) const DOT_COLUMNS: usize = 4;
/// Bytes per cache line, the prefetch granularity.
pub(super) const LINE_BYTES: usize = 64;

/// `partial = x[:, depth]·w[depth, :]` for a `[d_in, d_out]` weight `w` of f32 or bf16
/// values (see [`super::rows_times`]'s stored layout).
pub(super) struct WeightBand<'a, W> {
    /// `[rows, d_in]` values.
    pub x: &'a [f32],
    /// `[d_in, d_out]` values.
    pub w: &'a [W],
    /// `[rows, d_out]` zeros on entry.
    pub partial: &'a mut [f32],
    /// The product's dimensions.
    pub shape: Shape,
    /// The weight rows of this band, within `0..d_in`.
    pub depth: Range<usize>,
}

impl WithSimd for WeightBand<'_, f32> {
    type Output = ();

    /// Runs in passes over a few weight rows at a time, adjacent in memory; each pass sweeps
    /// tiles of three vectors of columns left to right, so the weights stream in order, and a
    /// tile's weights are reused from L1 by every tile of rows of `x`. Within a pass the tile's
    /// lines of the next pass are prefetched into L2. Columns past the last whole tile are summed
    /// plainly.
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self { x, w, partial, shape, depth } = self;
        let Shape { rows, d_in, d_out } = shape;
        assert!(x.len() == rows * d_in && w.len() == d_in * d_out && partial.len() == rows * d_out);
        assert!(depth.end <= d_in, "band {depth:?} lies past {d_in} weight rows");
        let tile_columns = 3 * S::F32_LANES;
        let full = if S::IS_SCALAR { 0 } else { d_out / tile_columns * tile_columns };
        let (tile_rows, pass_depth) = if S::REGISTER_COUNT >= 32 { (8, WIDE_PASS_ROWS) } else { (4, PASS_ROWS) };
        for pass in depth.clone().step_by(pass_depth) {
            let pass_rows = pass_depth.min(depth.end - pass);
            for tile in (0..full).step_by(tile_columns) {
                let weights = Strided { at: w[pass * d_out + tile..].as_ptr(), stride: d_out };
                for row in (0..rows).step_by(tile_rows) {
                    let x_rows = Strided { at: x[row * d_in + pass..].as_ptr(), stride: d_in };
                    let out = Out { at: partial[row * d_out + tile..].as_mut_ptr(), stride: d_out };
                    // SAFETY: `weights` has `pass_rows` rows of `tile_columns` floats within `w`
                    // (`pass + pass_rows ≤ d_in`, `tile + tile_columns ≤ d_out`); `x_rows` has R
                    // rows of `pass_rows` floats within `x` and `out` R rows of `tile_columns`
                    // floats within `partial`, for the R ≤ `rows - row` chosen here.
                    unsafe {
                        match (rows - row).min(tile_rows) {
                            8 => weight_tile::<S, 8>(simd, x_rows, weights, pass_rows, out),
                            7 => weight_tile::<S, 7>(simd, x_rows, weights, pass_rows, out),
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
        for row in 0..rows {
            let out = &mut partial[row * d_out..][full..d_out];
            for k in depth.clone() {
                let (xk, w_row) = (x[row * d_in + k], &w[k * d_out..][full..d_out]);
                out.iter_mut().zip(w_row).for_each(|(o, &wk)| *o += xk * wk);
            }
        }
    }
}

/// `block = x·e[columns]ᵀ` for a `[d_out, d_in]` weight `e` of f32 or bf16 values (see
/// [`super::rows_times`]'s transposed layout).
pub(super) struct TransposedColumns<'a, W> {
    /// `[rows, d_in]` values.
    pub x: &'a [f32],
    /// `[d_out, d_in]` values.
    pub e: &'a [W],
    /// `[rows, columns.len()]` outputs.
    pub block: &'a mut [f32],
    /// The product's dimensions.
    pub shape: Shape,
    /// The output columns of this block, within `0..d_out`.
    pub columns: Range<usize>,
}

impl WithSimd for TransposedColumns<'_, f32> {
    type Output = ();

    /// Dot products in tiles of 4 rows of `e` by up to 4 rows of `x` (2 with 16 registers);
    /// columns past the last whole tile are summed plainly.
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self { x, e, block, shape, columns } = self;
        let Shape { rows, d_in, d_out } = shape;
        let width = columns.len();
        assert!(x.len() == rows * d_in && e.len() == d_out * d_in && block.len() == rows * width);
        assert!(columns.end <= d_out, "columns {columns:?} lie past {d_out}");
        let full = if S::IS_SCALAR { 0 } else { width / DOT_COLUMNS * DOT_COLUMNS };
        let tile_rows = if S::REGISTER_COUNT >= 32 { 4 } else { 2 };
        for column in (0..full).step_by(DOT_COLUMNS) {
            let e_rows = Strided { at: e[(columns.start + column) * d_in..].as_ptr(), stride: d_in };
            for row in (0..rows).step_by(tile_rows) {
                let x_rows = Strided { at: x[row * d_in..].as_ptr(), stride: d_in };
                let out = Out { at: block[row * width + column..].as_mut_ptr(), stride: width };
                // SAFETY: `e_rows` has 4 rows of `d_in` floats within `e` (`column + 4 ≤ full ≤
                // width`); `x_rows` has R rows of `d_in` floats within `x` and `out` R rows of 4
                // floats within `block`, for the R ≤ `rows - row` chosen here.
                unsafe {
                    match (rows - row).min(tile_rows) {
                        4 => dot_tile::<S, 4>(simd, x_rows, e_rows, d_in, out),
                        3 => dot_tile::<S, 3>(simd, x_rows, e_rows, d_in, out),
                        2 => dot_tile::<S, 2>(simd, x_rows, e_rows, d_in, out),
                        _ => dot_tile::<S, 1>(simd, x_rows, e_rows, d_in, out),
                    }
                }
            }
        }
        for row in 0..rows {
            let x_row = &x[row * d_in..][..d_in];
            for column in full..width {
                let e_row = &e[(columns.start + column) * d_in..][..d_in];
                block[row * width + column] = x_row.iter().zip(e_row).map(|(a, b)| a * b).sum();
            }
        }
    }
}

/// Rows of floats, `stride` floats apart.
#[derive(Clone, Copy)]
pub(super) struct Strided {
    pub at: *const f32,
    pub stride: usize,
}

/// Writable rows of floats, `stride` floats apart.
#[derive(Clone, Copy)]
pub(super) struct Out {
    pub at: *mut f32,
    pub stride: usize,
}

/// `out += x·weights` for R rows of `x` (`depth` floats each) and a `[depth, 3 vectors]` weight
/// tile, prefetching the tile's next `depth` rows into L2.
///
/// # Safety
/// `x` must point to R rows of `depth` readable floats, `weights` to `depth` rows of
/// `3 · S::F32_LANES` readable floats and `out` to R rows of as many readable and writable floats.
#[inline(always)]
unsafe fn weight_tile<S: Simd, const R: usize>(simd: S, x: Strided, weights: Strided, depth: usize, out: Out) {
    let lanes = S::F32_LANES;
    // SAFETY: reads and writes stay within the extents the contract names; prefetches may point
    // past them, which is harmless (they never fault), and are computed without `add`.
    unsafe {
        let mut acc = [[simd.splat_f32s(0.0); 3]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            let row = out.at.add(r * out.stride);
            *acc = [0, 1, 2].map(|j| load::<S>(row.add(j * lanes)));
        }
        let mut w_at = weights.at;
        for k in 0..depth {
            let w = [0, 1, 2].map(|j| load::<S>(w_at.add(j * lanes)));
            let ahead = w_at.wrapping_add(depth * weights.stride);
            for line in (0..3 * lanes * size_of::<f32>()).step_by(LINE_BYTES) {
                prefetch_l2(ahead.cast::<u8>().wrapping_add(line));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = simd.splat_f32s(*x.at.add(r * x.stride + k));
                for (acc, w) in acc.iter_mut().zip(w) {
                    *acc = simd.mul_add_f32s(xv, w, *acc);
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

/// `out[r][j] = x[r]·e[j]` for R rows of `x` and 4 rows of `e`, `depth` floats each: dot
/// products over whole vectors (the last one masked), summed across lanes at the end. The lines
/// of the next 4 rows of `e` are prefetched as it goes: a loop this wide leaves the processor
/// too few loads in flight to keep memory busy on its own.
///
/// # Safety
/// `x` must point to R rows and `e` to 4 rows of `depth` readable floats, `out` to R rows of 4
/// writable floats.
#[inline(always)]
unsafe fn dot_tile<S: Simd, const R: usize>(simd: S, x: Strided, e: Strided, depth: usize, out: Out) {
    let lanes = S::F32_LANES;
    let mut acc = [[simd.splat_f32s(0.0); DOT_COLUMNS]; R];
    let whole = depth / lanes * lanes;
    for k in (0..whole).step_by(lanes) {
        // SAFETY: floats `k..k + lanes` lie within each row, as `k + lanes ≤ whole ≤ depth`.
        unsafe { dot_step(simd, &mut acc, x, e, k, |at| load::<S>(at)) };
    }
    if whole < depth {
        let mask = simd.mask_between_m32s(0, (depth - whole) as u32);
        // SAFETY: the mask reads only floats `whole..depth` of each row.
        unsafe { dot_step(simd, &mut acc, x, e, whole, |at| simd.mask_load_ptr_f32s(mask, at)) };
    }
    for (r, acc) in acc.iter().enumerate() {
        for (j, acc) in acc.iter().enumerate() {
            // SAFETY: output `j < 4` of row `r < R`, within the contract's extents.
            unsafe { *out.at.add(r * out.stride + j) = simd.reduce_sum_f32s(*acc) };
        }
    }
}

/// One vector's step of [`dot_tile`]: `acc[r][j] += x[r][k..]·e[j][k..]`, the vectors read by
/// `load`, with the same lines of the next 4 rows of `e` prefetched.
///
/// # Safety
/// `load` must be safe to call on `x`'s R rows and `e`'s 4 rows from float `k`.
#[inline(always)]
unsafe fn dot_step<S: Simd, const R: usize>(
    simd: S,
    acc: &mut [[S::f32s; DOT_COLUMNS]; R],
    x: Strided,
    e: Strided,
    k: usize,
    load: impl Fn(*const f32) -> S::f32s,
) {
    // SAFETY: the rows' starts lie within the extents the callers' contracts name; prefetches
    // never fault and are computed without `add`.
    unsafe {
        let e_at = e.at.add(k);
        let e_rows = [0, 1, 2, 3].map(|j| load(e_at.add(j * e.stride)));
        let next = e_at.wrapping_add(DOT_COLUMNS * e.stride);
        for j in 0..DOT_COLUMNS {
            prefetch_l1(next.wrapping_add(j * e.stride).cast());
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let xv = load(x.at.add(r * x.stride + k));
            for (acc, e_row) in acc.iter_mut().zip(e_rows) {
                *acc = simd.mul_add_f32s(xv, e_row, *acc);
            }
        }
    }
}

/// One vector of floats from `at`, without alignment.
///
/// # Safety
/// `at` must point to `S::F32_LANES` readable floats.
#[inline(always)]
pub(super) unsafe fn load<S: Simd>(at: *const f32) -> S::f32s {
    // SAFETY: as the contract says.
    unsafe { at.cast::<S::f32s>().read_unaligned() }
}

/// Asks for the cache line at `at` in L1; does nothing where there is no prefetch instruction.
#[inline(always)]
pub(super) fn prefetch_l1(at: *const u8) {
    // SAFETY: a prefetch never faults, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Asks for the cache line at `at` in L2; does nothing where there is no prefetch instruction.
#[inline(always)]
pub(super) fn prefetch_l2(at: *const u8) {
    // SAFETY: a prefetch never faults, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(at.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}
