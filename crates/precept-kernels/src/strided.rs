//! Matrix products over strided views of host memory, for attention computed in place: each
//! head of a `[batch, seq, heads·head_dim]` buffer is a matrix with a row stride of the whole
//! width, read where it lies.

/// A matrix read in place: values, offset of its first entry, and `[row, column]` strides.
#[derive(Clone, Copy)]
pub struct View<'a> {
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

/// A row-major output matrix: its values and the distance between consecutive rows.
pub struct Target<'a> {
    /// The values the matrix lies in, from its first entry.
    pub values: &'a mut [f32],
    /// Distance between consecutive rows (at least the matrix's width).
    pub row_stride: usize,
}

/// How a product meets its target.
#[derive(Clone, Copy)]
pub enum Write {
    /// `out ← scale·a·b`.
    Set(f32),
    /// `out += scale·a·b`.
    Add(f32),
}

/// `a·b` for `a` `[m, k]` and `b` `[k, n]` into the `[m, n]` target, on the calling thread.
///
/// # Panics
/// If a view's strides reach outside its values, or the target's do.
pub fn product([m, n, k]: [usize; 3], a: View<'_>, b: View<'_>, out: Target<'_>, write: Write) {
    let reach = |view: View<'_>, [rows, columns]: [usize; 2]| {
        rows == 0
            || columns == 0
            || view.at + (rows - 1) * view.strides[0] + (columns - 1) * view.strides[1] < view.values.len()
    };
    let rows_apart = m == 1 || n <= out.row_stride;
    let out_fits = m == 0 || n == 0 || (rows_apart && (m - 1) * out.row_stride + n <= out.values.len());
    assert!(reach(a, [m, k]) && reach(b, [k, n]) && out_fits, "views stay inside their values");
    let (scale, accumulate) = match write {
        Write::Set(scale) => (scale, false),
        Write::Add(scale) => (scale, true),
    };
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.values.chunks_mut(out.row_stride).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    // SAFETY: the assertion above keeps every index the strides reach inside `a`, `b` and `out`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.values.as_mut_ptr(),
            1,
            out.row_stride as isize,
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
