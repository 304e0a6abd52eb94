//! Parsing of the GGUF header: magic, version, metadata key/values, tensor infos, data offset.
//!
//! Layout (little-endian, GGUF v2/v3): `"GGUF"`, `u32` version, `u64` tensor count, `u64`
//! key/value count, the key/values, the tensor infos, padding to `general.alignment` (default
//! 32), then tensor data. Every count and length read from the file is checked against the bytes
//! that remain before anything is allocated, so a corrupt or hostile header yields an error, never
//! a panic or a huge allocation.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result};
use crate::ggml_type::GgmlType;
use crate::value::{GgufArray, GgufMetadata, GgufValue};

/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays we accept; real files use at most one level.
const MAX_ARRAY_DEPTH: usize = 4;

/// Where one tensor lives and how it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The name in the file, such as `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml dimensions `ne`, fastest-varying first (the reverse of a PyTorch shape).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Number of elements.
    pub n_elements: u64,
    /// Number of bytes the data takes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The shape in PyTorch / safetensors order (slowest-varying first): `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        // Each dim was checked to be below 256 × the file length, so it fits a 64-bit usize.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// Everything in a GGUF file before the tensor data.
#[derive(Debug)]
pub(crate) struct Header {
    pub version: u32,
    pub metadata: GgufMetadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
}

/// Parses the header of the GGUF file `path`, whose full contents are `bytes`.
pub(crate) fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let mut c = Cursor { bytes, pos: 0, path };
    let magic = c.take(4, "the magic number")?;
    if magic != b"GGUF" {
        return Err(c.error(format!("not a GGUF file (starts with {magic:02x?}, expected \"GGUF\")")));
    }
    let version = c.u32("the version")?;
    match version {
        2 | 3 => {}
        1 => return Err(c.error("GGUF version 1 is not supported (only 2 and 3)")),
        v if matches!(v.swap_bytes(), 1..=3) => return Err(c.error("big-endian GGUF files are not supported")),
        v => return Err(c.error(format!("unknown GGUF version {v} (only 2 and 3 are supported)"))),
    }
    let tensor_count = c.u64("the tensor count")?;
    let kv_count = c.u64("the metadata count")?;
    // The smallest key/value is 13 bytes (8 length, 4 type, 1 value); a tensor info 24.
    c.bound(kv_count, 13, "metadata count")?;
    c.bound(tensor_count, 24, "tensor count")?;

    let mut entries = BTreeMap::new();
    for _ in 0..kv_count {
        let key = c.string("a metadata key")?;
        let value_type = c.u32_for(&key)?;
        let value = c.value(value_type, &key, 0)?;
        if entries.insert(key.clone(), value).is_some() {
            return Err(c.key_error(&key, "appears twice"));
        }
    }
    let metadata = GgufMetadata::new(path, entries);
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(GgufValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(other) => return Err(c.key_error("general.alignment", format!("{other:?} is not a power-of-two uint32"))),
    };

    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut names = HashSet::new();
    for _ in 0..tensor_count {
        let info = c.tensor_info(alignment)?;
        if !names.insert(info.name.clone()) {
            return Err(tensor_error(path, &info.name, "appears twice"));
        }
        tensors.push(info);
    }

    let data_offset = (c.pos as u64).next_multiple_of(alignment);
    let file_len = bytes.len() as u64;
    for t in &tensors {
        let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
        if end.is_none_or(|end| end > file_len) {
            let message = format!(
                "data is truncated: {} bytes at offset {} + {} but the file has {file_len} bytes",
                t.n_bytes, data_offset, t.offset
            );
            return Err(tensor_error(path, &t.name, message));
        }
    }
    Ok(Header { version, metadata, tensors, alignment, data_offset })
}

pub(crate) fn tensor_error(path: &Path, tensor: &str, message: impl Into<String>) -> GgufError {
    GgufError::Tensor { path: path.to_path_buf(), tensor: tensor.into(), message: message.into() }
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    fn error(&self, message: impl Into<String>) -> GgufError {
        GgufError::Format { path: self.path(), message: message.into() }
    }

    fn key_error(&self, key: &str, message: impl Into<String>) -> GgufError {
        GgufError::Metadata { path: self.path(), key: key.into(), message: message.into() }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Fails unless `count` items of at least `min_size` bytes each could fit in what remains.
    fn bound(&self, count: u64, min_size: u64, what: &str) -> Result<()> {
        if count.saturating_mul(min_size) > self.remaining() as u64 {
            return Err(self.error(format!(
                "{what} {count} is impossible: only {} bytes remain after byte {}",
                self.remaining(),
                self.pos
            )));
        }
        Ok(())
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "header is truncated: {what} needs {n} bytes at byte {} but the file has {}",
                self.pos,
                self.bytes.len()
            )));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn u32_for(&mut self, key: &str) -> Result<u32> {
        self.u32(&format!("the type of `{key}`"))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        self.bound(len, 1, &format!("length of {what}"))?;
        let raw = self.take(len as usize, what)?;
        String::from_utf8(raw.to_vec()).map_err(|e| self.error(format!("{what} is not UTF-8: {e}")))
    }

    fn value(&mut self, value_type: u32, key: &str, depth: usize) -> Result<GgufValue> {
        let what = format!("the value of `{key}`");
        Ok(match value_type {
            0 => GgufValue::U8(u8::from_le_bytes(self.array(&what)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array(&what)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(&what)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => GgufValue::Bool(self.array::<1>(&what)?[0] != 0),
            8 => GgufValue::String(self.string(&what)?),
            9 => GgufValue::Array(self.gguf_array(key, depth)?),
            10 => GgufValue::U64(u64::from_le_bytes(self.array(&what)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(&what)?)),
            other => return Err(self.key_error(key, format!("unknown value type {other}"))),
        })
    }

    /// Reads `count` fixed-size numbers of `N` bytes each.
    fn numbers<const N: usize, T>(&mut self, count: usize, what: &str, decode: fn([u8; N]) -> T) -> Result<Vec<T>> {
        // `count` was bounded by the remaining bytes, so `count * N` cannot overflow.
        let raw = self.take(count * N, what)?;
        // Every chunk of `chunks_exact(N)` has exactly N bytes, so the fallback is never taken.
        Ok(raw.chunks_exact(N).map(|c| decode(c.try_into().unwrap_or([0; N]))).collect())
    }

    fn gguf_array(&mut self, key: &str, depth: usize) -> Result<GgufArray> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.key_error(key, format!("arrays nested deeper than {MAX_ARRAY_DEPTH}")));
        }
        let elem_type = self.u32_for(key)?;
        let count = self.u64(&format!("the length of `{key}`"))?;
        let min_size = match elem_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            other => return Err(self.key_error(key, format!("unknown array element type {other}"))),
        };
        self.bound(count, min_size, &format!("length of `{key}`"))?;
        let n = count as usize;
        let what = format!("the elements of `{key}`");
        Ok(match elem_type {
            0 => GgufArray::U8(self.take(n, &what)?.to_vec()),
            1 => GgufArray::I8(self.numbers(n, &what, i8::from_le_bytes)?),
            2 => GgufArray::U16(self.numbers(n, &what, u16::from_le_bytes)?),
            3 => GgufArray::I16(self.numbers(n, &what, i16::from_le_bytes)?),
            4 => GgufArray::U32(self.numbers(n, &what, u32::from_le_bytes)?),
            5 => GgufArray::I32(self.numbers(n, &what, i32::from_le_bytes)?),
            6 => GgufArray::F32(self.numbers(n, &what, f32::from_le_bytes)?),
            7 => GgufArray::Bool(self.take(n, &what)?.iter().map(|&b| b != 0).collect()),
            10 => GgufArray::U64(self.numbers(n, &what, u64::from_le_bytes)?),
            11 => GgufArray::I64(self.numbers(n, &what, i64::from_le_bytes)?),
            12 => GgufArray::F64(self.numbers(n, &what, f64::from_le_bytes)?),
            8 => {
                let mut strings = Vec::with_capacity(n);
                for i in 0..n {
                    strings.push(self.string(&format!("element {i} of `{key}`"))?);
                }
                GgufArray::String(strings)
            }
            _ => {
                // Each inner array is its element type, length and elements, as at the top level.
                let mut arrays = Vec::with_capacity(n);
                for _ in 0..n {
                    arrays.push(self.gguf_array(key, depth + 1)?);
                }
                GgufArray::Array(arrays)
            }
        })
    }

    fn tensor_info(&mut self, alignment: u64) -> Result<TensorInfo> {
        let name = self.string("a tensor name")?;
        let err = |message: String| tensor_error(self.path, &name, message);
        let n_dims = self.u32(&format!("the rank of `{name}`"))?;
        if n_dims > MAX_DIMS {
            return Err(err(format!("has {n_dims} dimensions (at most {MAX_DIMS})")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64(&format!("the shape of `{name}`"))?);
        }
        let type_id = self.u32(&format!("the type of `{name}`"))?;
        let offset = self.u64(&format!("the offset of `{name}`"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| err(format!("unknown ggml type id {type_id}")))?;
        // No ggml type packs more than 8 elements per byte; 256 leaves room and cannot overflow.
        let limit = self.bytes.len() as u64 * 256;
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|_| d <= limit))
            .filter(|&n| n <= limit)
            .ok_or_else(|| err(format!("shape {dims:?} is absurdly large for a {} byte file", self.bytes.len())))?;
        if dims.first().is_some_and(|&d| d % ggml_type.block_len() as u64 != 0) {
            return Err(err(format!(
                "first dimension {} is not a multiple of the {ggml_type} block size {}",
                dims[0],
                ggml_type.block_len()
            )));
        }
        let n_bytes = ggml_type
            .bytes_for(n_elements)
            .ok_or_else(|| err(format!("shape {dims:?} does not fit {ggml_type} blocks")))?;
        if offset % alignment != 0 {
            return Err(err(format!("offset {offset} is not a multiple of the alignment {alignment}")));
        }
        Ok(TensorInfo { name, dims, ggml_type, offset, n_elements, n_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::GgufBuilder;

    fn parse(bytes: &[u8]) -> Result<Header> {
        parse_header(Path::new("m.gguf"), bytes)
    }

    fn small_file() -> Vec<u8> {
        GgufBuilder::default()
            .string("general.architecture", "llama")
            .u32("llama.block_count", 2)
            .strings("tokenizer.ggml.tokens", &["a", "b", "ab"])
            .f32_tensor("output_norm.weight", &[4], &[1.0, 2.0, 3.0, 4.0])
            .tensor("token_embd.weight", &[32, 3], GgmlType::Q8_0, vec![0; 3 * 34])
            .build()
    }

    #[test]
    fn metadata_of_every_value_type_round_trips() {
        let values = [
            GgufValue::U8(7),
            GgufValue::I8(-7),
            GgufValue::U16(700),
            GgufValue::I16(-700),
            GgufValue::U32(70_000),
            GgufValue::I32(-70_000),
            GgufValue::U64(1 << 40),
            GgufValue::I64(-(1 << 40)),
            GgufValue::F32(1.5),
            GgufValue::F64(-2.25),
            GgufValue::Bool(true),
            GgufValue::String("héllo".into()),
            GgufValue::Array(GgufArray::I32(vec![1, -2, 3])),
            GgufValue::Array(GgufArray::F64(vec![0.5])),
            GgufValue::Array(GgufArray::Bool(vec![true, false])),
            GgufValue::Array(GgufArray::String(vec!["x".into(), String::new()])),
            GgufValue::Array(GgufArray::Array(vec![GgufArray::U8(vec![1, 2]), GgufArray::U64(vec![9])])),
        ];
        let builder =
            values.iter().enumerate().fold(GgufBuilder::default(), |b, (i, v)| b.kv(&format!("k{i:02}"), v.clone()));
        let header = parse(&builder.build()).unwrap();
        let parsed: Vec<&GgufValue> = header.metadata.entries().values().collect();
        assert_eq!(parsed, values.iter().collect::<Vec<_>>());
        assert_eq!((header.version, header.tensors.len(), header.data_offset % 32), (3, 0, 0));
    }

    #[test]
    fn tensor_infos_give_shapes_sizes_and_aligned_offsets() {
        let header = parse(&small_file()).unwrap();
        let [norm, embd] = &header.tensors[..] else { panic!("two tensors expected") };
        assert_eq!(
            (norm.name.as_str(), norm.ggml_type, norm.n_bytes, norm.offset),
            ("output_norm.weight", GgmlType::F32, 16, 0)
        );
        assert_eq!((embd.shape(), embd.ggml_type, embd.n_bytes, embd.offset), (vec![3, 32], GgmlType::Q8_0, 102, 32));
        assert_eq!((header.alignment, header.data_offset % 32), (32, 0));
        assert_eq!(header.metadata.strings("tokenizer.ggml.tokens").unwrap(), ["a", "b", "ab"]);
    }

    #[test]
    fn general_alignment_moves_the_data_section() {
        let bytes = GgufBuilder::default().u32("general.alignment", 64).f32_tensor("t", &[1], &[1.0]).build();
        let header = parse(&bytes).unwrap();
        assert_eq!((header.alignment, header.data_offset % 64), (64, 0));
        let bad = GgufBuilder::default().u32("general.alignment", 48).build();
        assert!(parse(&bad).unwrap_err().to_string().contains("`general.alignment`: U32(48) is not a power-of-two"));
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_an_error_not_a_panic() {
        let bytes = small_file();
        for len in 0..bytes.len() {
            let err = parse(&bytes[..len]).expect_err("a truncated file must not parse");
            assert!(err.to_string().starts_with("m.gguf: "), "{err}");
        }
        let err = parse(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("tensor `token_embd.weight`: data is truncated"), "{err}");
    }

    #[test]
    fn bad_magic_old_versions_and_big_endian_files_are_rejected() {
        let mut bytes = small_file();
        bytes[..4].copy_from_slice(b"GGML");
        assert!(parse(&bytes).unwrap_err().to_string().contains("not a GGUF file"));
        let mut bytes = small_file();
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert!(parse(&bytes).unwrap_err().to_string().contains("version 1 is not supported"));
        bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
        assert!(parse(&bytes).unwrap_err().to_string().contains("big-endian"));
    }

    #[test]
    fn absurd_counts_and_lengths_fail_before_allocating() {
        let mut bytes = small_file();
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // metadata count
        assert!(parse(&bytes).unwrap_err().to_string().contains("metadata count 18446744073709551615 is impossible"));
        let mut bytes = small_file();
        bytes[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes()); // tensor count
        assert!(parse(&bytes).unwrap_err().to_string().contains("tensor count"));
        let mut huge_array = b"GGUF".to_vec();
        huge_array.extend(3u32.to_le_bytes());
        huge_array.extend(0u64.to_le_bytes());
        huge_array.extend(1u64.to_le_bytes());
        huge_array.extend(1u64.to_le_bytes());
        huge_array.push(b'k');
        huge_array.extend(9u32.to_le_bytes()); // array
        huge_array.extend(8u32.to_le_bytes()); // of strings
        huge_array.extend((u64::MAX / 2).to_le_bytes());
        assert!(parse(&huge_array).unwrap_err().to_string().contains("length of `k`"));
    }

    #[test]
    fn bad_tensor_infos_name_the_tensor() {
        let unknown = GgufBuilder::default().tensor("w", &[32], GgmlType::F32, vec![0; 128]).build();
        let mut bytes = unknown;
        // The type id follows the 24-byte preamble, the name (8 + 1), the rank (4) and one dim (8).
        let pos = 24 + 8 + 1 + 4 + 8;
        assert_eq!(&bytes[pos..pos + 4], &0u32.to_le_bytes());
        bytes[pos..pos + 4].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(parse(&bytes).unwrap_err().to_string(), "m.gguf: tensor `w`: unknown ggml type id 99");
        let partial_block = GgufBuilder::default().tensor("q", &[16], GgmlType::Q4_0, vec![0; 18]).build();
        assert!(parse(&partial_block)
            .unwrap_err()
            .to_string()
            .contains("tensor `q`: first dimension 16 is not a multiple of the Q4_0 block size 32"));
        let rank5 = GgufBuilder::default().tensor("r", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4]).build();
        assert!(parse(&rank5).unwrap_err().to_string().contains("tensor `r`: has 5 dimensions"));
        let huge = GgufBuilder::default().tensor("h", &[1 << 40, 1 << 30], GgmlType::F32, vec![]).build();
        assert!(parse(&huge).unwrap_err().to_string().contains("tensor `h`: shape"));
        let empty_but_huge = GgufBuilder::default().tensor("z", &[0, 1 << 62], GgmlType::F32, vec![]).build();
        assert!(parse(&empty_but_huge)
            .unwrap_err()
            .to_string()
            .contains("tensor `z`: shape [0, 4611686018427387904] is absurdly large"));
        let twice = GgufBuilder::default().f32_tensor("t", &[1], &[1.0]).f32_tensor("t", &[1], &[1.0]).build();
        assert!(parse(&twice).unwrap_err().to_string().contains("tensor `t`: appears twice"));
    }

    #[test]
    fn duplicate_keys_and_invalid_utf8_are_errors() {
        let twice = GgufBuilder::default().u32("a", 1).u32("a", 2).build();
        assert_eq!(parse(&twice).unwrap_err().to_string(), "m.gguf: metadata `a`: appears twice");
        let mut bad = GgufBuilder::default().string("k", "ok").build();
        let last = bad.len() - 1;
        bad[last] = 0xFF;
        assert!(parse(&bad).unwrap_err().to_string().contains("is not UTF-8"));
    }
}
