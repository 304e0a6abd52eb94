//! [`GgufFile`]: a memory-mapped GGUF file with its parsed header.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::dequant::dequantize;
use crate::error::{GgufError, Result};
use crate::ggml_type::GgmlType;
use crate::reader::{parse_header, tensor_error, TensorInfo};
use crate::value::GgufMetadata;

/// An open GGUF file: metadata and tensor infos parsed, tensor data mapped but not read.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    data: Mmap,
    version: u32,
    metadata: GgufMetadata,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
}

impl GgufFile {
    /// Maps `path` and parses its header, checking that every tensor's data lies inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| GgufError::io(path, e))?;
        let len = file.metadata().map_err(|e| GgufError::io(path, e))?.len();
        if len < 24 {
            // Also avoids mapping an empty file, which some platforms refuse.
            return Err(GgufError::Format {
                path: path.into(),
                message: format!("{len} bytes is too short for a GGUF header"),
            });
        }
        // SAFETY: the map is read-only; a concurrent writer truncating the file is outside what
        // any model reader can defend against (llama.cpp and gguf-py map the same way).
        let data = unsafe { Mmap::map(&file) }.map_err(|e| GgufError::io(path, e))?;
        let header = parse_header(path, &data)?;
        Ok(Self {
            path: path.to_path_buf(),
            data,
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            alignment: header.alignment,
            data_offset: header.data_offset,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The metadata key/values.
    pub fn metadata(&self) -> &GgufMetadata {
        &self.metadata
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Alignment of tensor data in bytes (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The raw bytes of `tensor`'s data.
    pub fn tensor_bytes(&self, tensor: &TensorInfo) -> Result<&[u8]> {
        let start = self.data_offset.checked_add(tensor.offset);
        let range = start.and_then(|s| Some(s..s.checked_add(tensor.n_bytes)?));
        // Bounds were checked at open for tensors of this file; this guards foreign infos.
        match range {
            Some(r) if r.end <= self.data.len() as u64 => Ok(&self.data[r.start as usize..r.end as usize]),
            _ => Err(tensor_error(&self.path, &tensor.name, "data lies outside the file")),
        }
    }

    /// Fails unless [`dequantize`] decodes `tensor`'s type.
    pub fn check_supported(&self, tensor: &TensorInfo) -> Result<()> {
        if tensor.ggml_type.is_supported() {
            return Ok(());
        }
        let supported: Vec<&str> = GgmlType::SUPPORTED.iter().map(|t| t.name()).collect();
        Err(tensor_error(
            &self.path,
            &tensor.name,
            format!("ggml type {} cannot be dequantised (supported: {})", tensor.ggml_type, supported.join(", ")),
        ))
    }

    /// `tensor`'s data decoded to `f32`, in ggml order (`dims[0]` fastest), which is row-major in
    /// [`TensorInfo::shape`].
    pub fn tensor_f32(&self, tensor: &TensorInfo) -> Result<Vec<f32>> {
        self.check_supported(tensor)?;
        if tensor.ggml_type.bytes_for(tensor.n_elements) != Some(tensor.n_bytes) {
            return Err(tensor_error(&self.path, &tensor.name, "byte size does not match its shape"));
        }
        let bytes = self.tensor_bytes(tensor)?;
        let mut out = vec![0.0; tensor.n_elements as usize];
        dequantize(tensor.ggml_type, bytes, &mut out);
        Ok(out)
    }
}
