//! The AVX-512 kernels behind [`super::rows_times`].

use std::arch::x86_64::{
    __m128, __m512, _mm256_add_ps, _mm256_castpd_ps, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm512_add_ps,
    _mm512_castps512_ps256, _mm512_castps_pd, _mm512_extractf64x4_pd, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_shuffle_ps, _mm512_storeu_ps, _mm512_unpackhi_ps,
    _mm512_unpacklo_ps, _mm_add_ps, _mm_prefetch, _mm_storeu_ps, _MM_HINT_T0, _MM_HINT_T1,
};

use std::ops::Range;

use super::Shape;

/// Output columns per `x·W` tile: three 16-float vectors.
pub(super) const TILE_COLUMNS: usize = 48;
/// Rows per `x·W` tile (8 × 3 = 24 accumulators).
const TILE_ROWS: usize = 8;
/// Weight rows summed per pass over a block's tiles.
const PASS_ROWS: usize = 8;

/// Output columns per `x·Eᵀ` tile: four rows of `E`.
pub(super) const DOT_COLUMNS: usize = 4;
/// Rows per `x·Eᵀ` tile (4 × 4 = 16 accumulators).
const DOT_ROWS: usize = 4;

/// `partial[:, ..full] += x[:, depth]·w[depth, ..full]`, `full` a multiple of 48.
///
/// The sum runs in passes over 8 weight rows at a time, adjacent in memory; each pass sweeps
/// the 48-column tiles left to right, so the weights stream in order, and a tile's 8 × 48
/// weights are reused from L1 by every 8-row tile of `x`. Within a pass the tile's lines of the
/// next pass are prefetched into L2.
///
/// # Safety
/// AVX-512F must be available; `x`, `w` and `partial` must hold `[rows, d_in]`, `[d_in, d_out]`
/// and `[rows, d_out]` values, with `depth` within `0..d_in` and `full ≤ d_out`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn rows_times_weight(
    x: &[f32],
    w: &[f32],
    partial: &mut [f32],
    shape: Shape,
    depth: Range<usize>,
    full: usize,
) {
    let Shape { rows, d_in, d_out } = shape;
    for pass in depth.clone().step_by(PASS_ROWS) {
        let pass_rows = PASS_ROWS.min(depth.end - pass);
        for tile in (0..full).step_by(TILE_COLUMNS) {
            let weights = Strided { at: w[pass * d_out + tile..].as_ptr(), stride: d_out };
            for row in (0..rows).step_by(TILE_ROWS) {
                let x_rows = Strided { at: x[row * d_in + pass..].as_ptr(), stride: d_in };
                let out = Out { at: partial[row * d_out + tile..].as_mut_ptr(), stride: d_out };
                // SAFETY: `weights` has `pass_rows` rows of 48 readable floats, `x_rows` R rows
                // of `pass_rows` floats and `out` R rows of 48 writable floats, R ≤ `rows - row`.
                unsafe {
                    match rows - row {
                        8.. => weight_tile::<8>(x_rows, weights, pass_rows, out),
                        7 => weight_tile::<7>(x_rows, weights, pass_rows, out),
                        6 => weight_tile::<6>(x_rows, weights, pass_rows, out),
                        5 => weight_tile::<5>(x_rows, weights, pass_rows, out),
                        4 => weight_tile::<4>(x_rows, weights, pass_rows, out),
                        3 => weight_tile::<3>(x_rows, weights, pass_rows, out),
                        2 => weight_tile::<2>(x_rows, weights, pass_rows, out),
                        _ => weight_tile::<1>(x_rows, weights, pass_rows, out),
                    }
                }
            }
        }
    }
}

/// Columns `0..full` (a multiple of 4) of `block`, the output columns from `first` of `x·eᵀ`.
///
/// # Safety
/// AVX-512F must be available; `x`, `e` and `block` must hold `[rows, d_in]`, `[d_out, d_in]` and
/// `[rows, width]` values with `first + width ≤ d_out` and `full ≤ width`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn rows_times_transposed(
    x: &[f32],
    e: &[f32],
    block: &mut [f32],
    shape: Shape,
    first: usize,
    full: usize,
) {
    let Shape { rows, d_in, .. } = shape;
    let width = block.len() / rows;
    for column in (0..full).step_by(DOT_COLUMNS) {
        let e_rows = Strided { at: e[(first + column) * d_in..].as_ptr(), stride: d_in };
        for row in (0..rows).step_by(DOT_ROWS) {
            let x_rows = Strided { at: x[row * d_in..].as_ptr(), stride: d_in };
            let out = Out { at: block[row * width + column..].as_mut_ptr(), stride: width };
            // SAFETY: `e_rows` has 4 rows and `x_rows` R rows of `d_in` readable floats, `out`
            // R rows of 4 writable floats, with R ≤ `rows - row`.
            unsafe {
                match rows - row {
                    4.. => dot_tile::<4>(x_rows, e_rows, d_in, out),
                    3 => dot_tile::<3>(x_rows, e_rows, d_in, out),
                    2 => dot_tile::<2>(x_rows, e_rows, d_in, out),
                    _ => dot_tile::<1>(x_rows, e_rows, d_in, out),
                }
            }
        }
    }
}

/// Rows of floats, `stride` floats apart.
#[derive(Clone, Copy)]
struct Strided {
    at: *const f32,
    stride: usize,
}

/// Writable rows of floats, `stride` floats apart.
#[derive(Clone, Copy)]
struct Out {
    at: *mut f32,
    stride: usize,
}

/// `out += x·weights` for R rows of `x` (`depth` floats each) and a `[depth, 48]` weight tile,
/// prefetching the tile's next `depth` rows into L2.
///
/// # Safety
/// AVX-512F must be available; `x` must point to R rows of `depth` readable floats, `weights` to
/// `depth` rows of 48 readable floats and `out` to R rows of 48 readable and writable floats.
#[target_feature(enable = "avx512f")]
unsafe fn weight_tile<const R: usize>(x: Strided, weights: Strided, depth: usize, out: Out) {
    // SAFETY: reads and writes stay within the extents the contract names; prefetches may point
    // past them, which is harmless (they never fault), and are computed without `add`.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 3]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            let row = out.at.add(r * out.stride);
            acc[0] = _mm512_loadu_ps(row);
            acc[1] = _mm512_loadu_ps(row.add(16));
            acc[2] = _mm512_loadu_ps(row.add(32));
        }
        let mut w_at = weights.at;
        for k in 0..depth {
            let w0 = _mm512_loadu_ps(w_at);
            let w1 = _mm512_loadu_ps(w_at.add(16));
            let w2 = _mm512_loadu_ps(w_at.add(32));
            let ahead = w_at.wrapping_add(depth * weights.stride).cast::<i8>();
            _mm_prefetch::<_MM_HINT_T1>(ahead);
            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64));
            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(128));
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.at.add(r * x.stride + k));
                acc[0] = _mm512_fmadd_ps(xv, w0, acc[0]);
                acc[1] = _mm512_fmadd_ps(xv, w1, acc[1]);
                acc[2] = _mm512_fmadd_ps(xv, w2, acc[2]);
            }
            w_at = w_at.add(weights.stride);
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = out.at.add(r * out.stride);
            _mm512_storeu_ps(row, acc[0]);
            _mm512_storeu_ps(row.add(16), acc[1]);
            _mm512_storeu_ps(row.add(32), acc[2]);
        }
    }
}

/// `out[r][j] = x[r]·e[j]` for R rows of `x` and 4 rows of `e`, `depth` floats each: dot
/// products over 16-float chunks (the last one masked), summed across lanes at the end. The
/// lines of the next 4 rows of `e` are prefetched as it goes: a loop this wide leaves the
/// processor too few loads in flight to keep memory busy on its own.
///
/// # Safety
/// AVX-512F must be available; `x` must point to R rows and `e` to 4 rows of `depth` readable
/// floats, `out` to R rows of 4 writable floats.
#[target_feature(enable = "avx512f")]
unsafe fn dot_tile<const R: usize>(x: Strided, e: Strided, depth: usize, out: Out) {
    let mut acc = [[_mm512_setzero_ps(); DOT_COLUMNS]; R];
    // SAFETY: every load reads floats `k..k + 16` of a row (masked to `k..depth` for the last
    // chunk) and every store one of the R × 4 outputs, all within the contract's extents.
    unsafe {
        let mut k = 0;
        while k < depth {
            let mask = if depth - k >= 16 { u16::MAX } else { (1u16 << (depth - k)) - 1 };
            let e_at = e.at.add(k);
            let e0 = _mm512_maskz_loadu_ps(mask, e_at);
            let e1 = _mm512_maskz_loadu_ps(mask, e_at.add(e.stride));
            let e2 = _mm512_maskz_loadu_ps(mask, e_at.add(2 * e.stride));
            let e3 = _mm512_maskz_loadu_ps(mask, e_at.add(3 * e.stride));
            // The same lines of the next 4 rows of `e`, which the next tile reads.
            let next = e_at.wrapping_add(DOT_COLUMNS * e.stride).cast::<i8>();
            for j in 0..DOT_COLUMNS {
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(4 * j * e.stride));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm512_maskz_loadu_ps(mask, x.at.add(r * x.stride + k));
                acc[0] = _mm512_fmadd_ps(xv, e0, acc[0]);
                acc[1] = _mm512_fmadd_ps(xv, e1, acc[1]);
                acc[2] = _mm512_fmadd_ps(xv, e2, acc[2]);
                acc[3] = _mm512_fmadd_ps(xv, e3, acc[3]);
            }
            k += 16;
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm_storeu_ps(out.at.add(r * out.stride), sum_each(acc));
        }
    }
}

/// `[Σ a[0], Σ a[1], Σ a[2], Σ a[3]]`, each sum across a vector's 16 lanes, in 8 shuffles and
/// adds instead of four separate reductions.
#[target_feature(enable = "avx512f")]
fn sum_each(a: &[__m512; 4]) -> __m128 {
    // Per 128-bit lane: [a0₀+a0₂, a1₀+a1₂, a0₁+a0₃, a1₁+a1₃], and the same for a2, a3.
    let pair01 = _mm512_add_ps(_mm512_unpacklo_ps(a[0], a[1]), _mm512_unpackhi_ps(a[0], a[1]));
    let pair23 = _mm512_add_ps(_mm512_unpacklo_ps(a[2], a[3]), _mm512_unpackhi_ps(a[2], a[3]));
    // Per 128-bit lane: the lane's partial sums [a0, a1, a2, a3].
    let lanes = _mm512_add_ps(_mm512_shuffle_ps::<0x44>(pair01, pair23), _mm512_shuffle_ps::<0xEE>(pair01, pair23));
    let halves = _mm256_add_ps(
        _mm512_castps512_ps256(lanes),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(lanes))),
    );
    _mm_add_ps(_mm256_castps256_ps128(halves), _mm256_extractf128_ps::<1>(halves))
}
