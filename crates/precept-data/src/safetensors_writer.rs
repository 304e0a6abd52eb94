//! Writing a safetensors file tensor by tensor, so memory stays at about one tensor.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;

use crate::error::DataError;

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    /// Checkpoint key.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
}

impl TensorEntry {
    /// Size of the tensor's data in bytes.
    pub fn byte_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

/// Writes `entries` to `path` atomically: the header, then each tensor's little-endian bytes as
/// `write_data(index, out)` produces them, in order.
///
/// The first error of `write_data` is returned as it is; a header that cannot be built or a
/// failed write is a [`DataError`] converted into the caller's error type `E`.
pub fn write_safetensors<E: From<DataError>>(
    path: &Path,
    entries: &[TensorEntry],
    mut write_data: impl FnMut(usize, &mut dyn Write) -> Result<(), E>,
) -> Result<(), E> {
    let st_error = |message: String| DataError::Safetensors { path: path.into(), message };
    let mut infos = Vec::with_capacity(entries.len());
    let mut offset = 0;
    for entry in entries {
        let len = entry.byte_len();
        infos.push((
            entry.name.clone(),
            TensorInfo { dtype: entry.dtype, shape: entry.shape.clone(), data_offsets: (offset, offset + len) },
        ));
        offset += len;
    }
    let format = HashMap::from([("format".to_string(), "pt".to_string())]);
    let header = Metadata::new(Some(format), infos).map_err(|e| st_error(e.to_string()))?;
    let mut header_bytes = serde_json::to_vec(&header).map_err(|e| st_error(e.to_string()))?;
    // The data section starts 8-byte aligned, as the safetensors crate writes it.
    header_bytes.resize(header_bytes.len().next_multiple_of(8), b' ');

    let mut failure = None;
    let written = crate::write_atomic_with(path, |file| {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&(header_bytes.len() as u64).to_le_bytes())?;
        out.write_all(&header_bytes)?;
        for index in 0..entries.len() {
            write_data(index, &mut out).map_err(|e| {
                failure = Some(e);
                io::Error::other("a tensor could not be produced")
            })?;
        }
        out.flush()
    });
    written.map_err(|error| failure.unwrap_or_else(|| DataError::Write { path: path.into(), error }.into()))
}

/// Writes `values` as little-endian bytes.
pub fn write_le<T: bytemuck::Pod>(out: &mut dyn Write, values: &[T]) -> io::Result<()> {
    if cfg!(target_endian = "little") {
        out.write_all(bytemuck::cast_slice(values))
    } else {
        let size = std::mem::size_of::<T>();
        bytemuck::cast_slice::<T, u8>(values).chunks_exact(size).try_for_each(|chunk| {
            let mut bytes = chunk.to_vec();
            bytes.reverse();
            out.write_all(&bytes)
        })
    }
}
