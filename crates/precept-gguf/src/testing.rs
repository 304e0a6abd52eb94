//! A minimal GGUF v3 writer for tests: builds files byte by byte so every test fixture is made in
//! the test itself, and tiny complete models for import tests.

use crate::ggml_type::GgmlType;
use crate::value::{GgufArray, GgufValue};

/// Assembles a GGUF v3 file in memory.
#[derive(Default)]
pub struct GgufBuilder {
    kvs: Vec<(String, GgufValue)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl GgufBuilder {
    pub fn kv(mut self, key: &str, value: GgufValue) -> Self {
        self.kvs.push((key.into(), value));
        self
    }

    pub fn string(self, key: &str, value: &str) -> Self {
        self.kv(key, GgufValue::String(value.into()))
    }

    pub fn u32(self, key: &str, value: u32) -> Self {
        self.kv(key, GgufValue::U32(value))
    }

    pub fn strings(self, key: &str, values: &[&str]) -> Self {
        self.kv(key, GgufValue::Array(GgufArray::String(values.iter().map(|s| s.to_string()).collect())))
    }

    /// A tensor with ggml dims `dims` (fastest first) and raw `data`.
    pub fn tensor(mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> Self {
        self.tensors.push((name.into(), dims.to_vec(), ty, data));
        self
    }

    /// An F32 tensor.
    pub fn f32_tensor(self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, GgmlType::F32, data)
    }

    pub fn build(self) -> Vec<u8> {
        let align = self
            .kvs
            .iter()
            .find_map(|(k, v)| match v {
                GgufValue::U32(a) if k == "general.alignment" => Some(*a as usize),
                _ => None,
            })
            .unwrap_or(32);
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kvs.len() as u64).to_le_bytes());
        for (key, value) in &self.kvs {
            put_string(&mut out, key);
            out.extend(type_id(value).to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for (name, dims, ty, data) in &self.tensors {
            put_string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(ty.id().to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset = (offset + data.len() as u64).next_multiple_of(align as u64);
        }
        for (_, _, _, data) in &self.tensors {
            out.resize(out.len().next_multiple_of(align), 0);
            out.extend(data);
        }
        out
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn type_id(value: &GgufValue) -> u32 {
    match value {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => out.push(*v),
        GgufValue::I8(v) => out.extend(v.to_le_bytes()),
        GgufValue::U16(v) => out.extend(v.to_le_bytes()),
        GgufValue::I16(v) => out.extend(v.to_le_bytes()),
        GgufValue::U32(v) => out.extend(v.to_le_bytes()),
        GgufValue::I32(v) => out.extend(v.to_le_bytes()),
        GgufValue::U64(v) => out.extend(v.to_le_bytes()),
        GgufValue::I64(v) => out.extend(v.to_le_bytes()),
        GgufValue::F32(v) => out.extend(v.to_le_bytes()),
        GgufValue::F64(v) => out.extend(v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => put_string(out, s),
        GgufValue::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, array: &GgufArray) {
    let (elem_type, items): (u32, Vec<GgufValue>) = match array {
        GgufArray::U8(v) => (0, v.iter().map(|&x| GgufValue::U8(x)).collect()),
        GgufArray::I8(v) => (1, v.iter().map(|&x| GgufValue::I8(x)).collect()),
        GgufArray::U16(v) => (2, v.iter().map(|&x| GgufValue::U16(x)).collect()),
        GgufArray::I16(v) => (3, v.iter().map(|&x| GgufValue::I16(x)).collect()),
        GgufArray::U32(v) => (4, v.iter().map(|&x| GgufValue::U32(x)).collect()),
        GgufArray::I32(v) => (5, v.iter().map(|&x| GgufValue::I32(x)).collect()),
        GgufArray::F32(v) => (6, v.iter().map(|&x| GgufValue::F32(x)).collect()),
        GgufArray::Bool(v) => (7, v.iter().map(|&x| GgufValue::Bool(x)).collect()),
        GgufArray::String(v) => (8, v.iter().map(|x| GgufValue::String(x.clone())).collect()),
        GgufArray::Array(v) => (9, v.iter().map(|x| GgufValue::Array(x.clone())).collect()),
        GgufArray::U64(v) => (10, v.iter().map(|&x| GgufValue::U64(x)).collect()),
        GgufArray::I64(v) => (11, v.iter().map(|&x| GgufValue::I64(x)).collect()),
        GgufArray::F64(v) => (12, v.iter().map(|&x| GgufValue::F64(x)).collect()),
    };
    out.extend(elem_type.to_le_bytes());
    out.extend((items.len() as u64).to_le_bytes());
    // A nested array is written like a top-level one: element type, length, elements.
    items.iter().for_each(|item| put_value(out, item));
}
