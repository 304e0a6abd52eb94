//! Matrix products over strided views of host memory, for attention computed in place: each
//! head of a `[batch, seq, heads·head_dim]` buffer is a matrix with a row stride of the whole
//! width, read where it lies.

/// A matrix read in place: values, offset of its first entry, and `[row, column]` strides.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    /// The values the matrix lies in.
    pub values: &'a [f32],
    /// Index of its first entry.
    pub at: usize,
    /// Distance between consecutive rows and between consecutive columns.
    pub strides: [usize; 2],
}

impl View<'_> {
    /// The same entries read as the transpose.
    pub fn t(self) -> Self {
        Self { strides: [self.strides[1], self.strides[0]], ..self }
    }
}

/// `out ← scale·a·b` (or `out += scale·a·b` when `accumulate`), `a` `[m, k]`, `b` `[k, n]`,
/// `out` row-major `[m, n]`, on the calling thread.
///
/// # Panics
/// If a view's strides reach outside its values, or `out` is shorter than `m·n`.
pub(crate) fn product([m, n, k]: [usize; 3], a: View<'_>, b: View<'_>, out: &mut [f32], scale: f32, accumulate: bool) {
    let reach = |view: View<'_>, [rows, columns]: [usize; 2]| {
        rows == 0
            || columns == 0
            || view.at + (rows - 1) * view.strides[0] + (columns - 1) * view.strides[1] < view.values.len()
    };
    assert!(reach(a, [m, k]) && reach(b, [k, n]) && out.len() >= m * n, "views stay inside their values");
    if m == 0 || n == 0 || k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the assertion above keeps every index the strides reach inside `a`, `b` and `out`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.values.as_ptr().add(a.at),
            a.strides[1] as isize,
            a.strides[0] as isize,
            b.values.as_ptr().add(b.at),
            b.strides[1] as isize,
            b.strides[0] as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
