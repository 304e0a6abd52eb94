//! GGUF metadata values and typed, error-reporting access to them.
//!
//! A GGUF file carries key/value metadata (`general.architecture`, `llama.block_count`,
//! `tokenizer.ggml.tokens`, …). [`GgufValue`] holds one value; arrays are stored per element
//! type ([`GgufArray`]) so a large token table costs about what it costs on disk.
//! [`GgufMetadata`] is the whole table with getters whose errors name the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result};

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// `GGUF_TYPE_UINT8`.
    U8(u8),
    /// `GGUF_TYPE_INT8`.
    I8(i8),
    /// `GGUF_TYPE_UINT16`.
    U16(u16),
    /// `GGUF_TYPE_INT16`.
    I16(i16),
    /// `GGUF_TYPE_UINT32`.
    U32(u32),
    /// `GGUF_TYPE_INT32`.
    I32(i32),
    /// `GGUF_TYPE_UINT64`.
    U64(u64),
    /// `GGUF_TYPE_INT64`.
    I64(i64),
    /// `GGUF_TYPE_FLOAT32`.
    F32(f32),
    /// `GGUF_TYPE_FLOAT64`.
    F64(f64),
    /// `GGUF_TYPE_BOOL`.
    Bool(bool),
    /// `GGUF_TYPE_STRING` (UTF-8).
    String(String),
    /// `GGUF_TYPE_ARRAY`.
    Array(GgufArray),
}

/// A homogeneous metadata array.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    /// Array of `u8`.
    U8(Vec<u8>),
    /// Array of `i8`.
    I8(Vec<i8>),
    /// Array of `u16`.
    U16(Vec<u16>),
    /// Array of `i16`.
    I16(Vec<i16>),
    /// Array of `u32`.
    U32(Vec<u32>),
    /// Array of `i32` (token types, for example).
    I32(Vec<i32>),
    /// Array of `u64`.
    U64(Vec<u64>),
    /// Array of `i64`.
    I64(Vec<i64>),
    /// Array of `f32` (SentencePiece scores, for example).
    F32(Vec<f32>),
    /// Array of `f64`.
    F64(Vec<f64>),
    /// Array of booleans.
    Bool(Vec<bool>),
    /// Array of strings (tokens, merges).
    String(Vec<String>),
    /// Array of arrays.
    Array(Vec<GgufArray>),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            // Integers wider than 2^53 lose precision; no metadata float is that large.
            Self::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The name of the value's GGUF type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "uint8",
            Self::I8(_) => "int8",
            Self::U16(_) => "uint16",
            Self::I16(_) => "int16",
            Self::U32(_) => "uint32",
            Self::I32(_) => "int32",
            Self::U64(_) => "uint64",
            Self::I64(_) => "int64",
            Self::F32(_) => "float32",
            Self::F64(_) => "float64",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
        }
    }
}

impl GgufArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Array(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The metadata table of one GGUF file.
#[derive(Debug, Clone, Default)]
pub struct GgufMetadata {
    path: PathBuf,
    entries: BTreeMap<String, GgufValue>,
}

impl GgufMetadata {
    /// A table for `path` (used in error messages) with the given entries.
    pub fn new(path: impl Into<PathBuf>, entries: BTreeMap<String, GgufValue>) -> Self {
        Self { path: path.into(), entries }
    }

    /// The file the metadata came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All entries, sorted by key.
    pub fn entries(&self) -> &BTreeMap<String, GgufValue> {
        &self.entries
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.entries.get(key)
    }

    /// An error about `key`.
    pub fn error(&self, key: &str, message: impl Into<String>) -> GgufError {
        GgufError::Metadata { path: self.path.clone(), key: key.into(), message: message.into() }
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &GgufValue) -> GgufError {
        self.error(key, format!("expected {expected}, found a {}", found.type_name()))
    }

    fn required<T>(&self, key: &str, value: Option<T>) -> Result<T> {
        value.ok_or_else(|| self.error(key, "is missing"))
    }

    /// A string entry; `None` when absent.
    pub fn str_opt(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(GgufValue::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    /// A required string entry.
    pub fn str(&self, key: &str) -> Result<&str> {
        self.required(key, self.str_opt(key)?)
    }

    /// A non-negative integer entry of any width; `None` when absent.
    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.wrong_type(key, "a non-negative integer", v)),
        }
    }

    /// A positive integer that fits comfortably in memory sizes (below 2^32); `None` when absent.
    pub fn count_opt(&self, key: &str) -> Result<Option<usize>> {
        match self.u64_opt(key)? {
            None => Ok(None),
            Some(n) if n > 0 && n < (1 << 32) => Ok(Some(n as usize)),
            Some(n) => Err(self.error(key, format!("{n} is out of range (expected 1 to 2^32 - 1)"))),
        }
    }

    /// A required positive count, see [`GgufMetadata::count_opt`].
    pub fn count(&self, key: &str) -> Result<usize> {
        self.required(key, self.count_opt(key)?)
    }

    /// A finite number entry; `None` when absent.
    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                Some(x) => Err(self.error(key, format!("{x} is not a finite number"))),
                None => Err(self.wrong_type(key, "a number", v)),
            },
        }
    }

    /// A boolean entry; `None` when absent.
    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(GgufValue::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, "a bool", other)),
        }
    }

    /// A required array entry.
    pub fn array(&self, key: &str) -> Result<&GgufArray> {
        match self.get(key) {
            None => Err(self.error(key, "is missing")),
            Some(GgufValue::Array(a)) => Ok(a),
            Some(other) => Err(self.wrong_type(key, "an array", other)),
        }
    }

    /// A required array of strings.
    pub fn strings(&self, key: &str) -> Result<&[String]> {
        match self.array(key)? {
            GgufArray::String(v) => Ok(v),
            _ => Err(self.error(key, "expected an array of strings")),
        }
    }

    /// An optional array of strings.
    pub fn strings_opt(&self, key: &str) -> Result<Option<&[String]>> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        self.strings(key).map(Some)
    }

    /// An optional array of integers of any width, widened to `i64`.
    pub fn ints_opt(&self, key: &str) -> Result<Option<Vec<i64>>> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        let ints = match self.array(key)? {
            GgufArray::U8(v) => v.iter().map(|&x| x.into()).collect(),
            GgufArray::I8(v) => v.iter().map(|&x| x.into()).collect(),
            GgufArray::U16(v) => v.iter().map(|&x| x.into()).collect(),
            GgufArray::I16(v) => v.iter().map(|&x| x.into()).collect(),
            GgufArray::U32(v) => v.iter().map(|&x| x.into()).collect(),
            GgufArray::I32(v) => v.iter().map(|&x| x.into()).collect(),
            GgufArray::I64(v) => v.clone(),
            GgufArray::U64(v) => v
                .iter()
                .map(|&x| i64::try_from(x).map_err(|_| self.error(key, format!("{x} is too large"))))
                .collect::<Result<_>>()?,
            _ => return Err(self.error(key, "expected an array of integers")),
        };
        Ok(Some(ints))
    }

    /// An optional array of numbers, as `f32`.
    pub fn floats_opt(&self, key: &str) -> Result<Option<Vec<f32>>> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        match self.array(key)? {
            GgufArray::F32(v) => Ok(Some(v.clone())),
            // Scores are stored as f32 by every converter; f64 is narrowed the same way.
            GgufArray::F64(v) => Ok(Some(v.iter().map(|&x| x as f32).collect())),
            _ => Err(self.error(key, "expected an array of floats")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, GgufValue)]) -> GgufMetadata {
        let map = entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        GgufMetadata::new("m.gguf", map)
    }

    #[test]
    fn integers_of_any_width_read_as_counts() {
        let m = table(&[("a", GgufValue::U32(30)), ("b", GgufValue::I64(7)), ("c", GgufValue::U8(3))]);
        assert_eq!((m.count("a").unwrap(), m.count("b").unwrap(), m.count("c").unwrap()), (30, 7, 3));
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let m = table(&[("n", GgufValue::String("x".into())), ("z", GgufValue::U32(0))]);
        assert_eq!(
            m.count("n").unwrap_err().to_string(),
            "m.gguf: metadata `n`: expected a non-negative integer, found a string"
        );
        assert_eq!(m.count("missing").unwrap_err().to_string(), "m.gguf: metadata `missing`: is missing");
        assert!(m.count("z").unwrap_err().to_string().contains("0 is out of range"));
        assert!(m.strings("n").unwrap_err().to_string().contains("expected an array, found a string"));
    }

    #[test]
    fn negative_integers_are_not_counts_and_non_finite_floats_are_rejected() {
        let m = table(&[("neg", GgufValue::I32(-1)), ("nan", GgufValue::F32(f32::NAN))]);
        assert!(m.u64_opt("neg").is_err());
        assert!(m.f64_opt("nan").unwrap_err().to_string().contains("not a finite number"));
    }

    #[test]
    fn integer_arrays_widen_to_i64() {
        let m = table(&[("t", GgufValue::Array(GgufArray::I32(vec![1, 3, -2])))]);
        assert_eq!(m.ints_opt("t").unwrap(), Some(vec![1, 3, -2]));
        assert_eq!(m.ints_opt("absent").unwrap(), None);
    }
}
