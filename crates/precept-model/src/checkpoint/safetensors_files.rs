//! Memory-mapped access to the tensors of a single or sharded safetensors checkpoint.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{ModelError, Result};

/// The safetensors files of one checkpoint, memory-mapped, and which file holds which key.
#[derive(Debug)]
pub struct SafetensorsFiles {
    files: Vec<(PathBuf, Mmap)>,
    /// Tensor key → index into `files`.
    index: BTreeMap<String, usize>,
}

/// The index file of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

impl SafetensorsFiles {
    /// Opens `model.safetensors`, or every shard listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join(SINGLE_FILE);
        let index_path = dir.join(INDEX_FILE);
        let paths = if single.is_file() {
            vec![single]
        } else if index_path.is_file() {
            shard_paths(&index_path)?
        } else {
            return Err(ModelError::MissingFile { dir: dir.to_path_buf(), file: SINGLE_FILE.into() });
        };
        Self::open_files(paths)
    }

    /// Opens one safetensors file.
    pub fn open_file(path: &Path) -> Result<Self> {
        Self::open_files(vec![path.to_path_buf()])
    }

    fn open_files(paths: Vec<PathBuf>) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = BTreeMap::new();
        for path in paths {
            let file = File::open(&path).map_err(|e| ModelError::io(&path, e))?;
            // SAFETY: the map is read-only; a concurrent writer truncating the file is outside
            // what any checkpoint reader can defend against (the same holds for transformers).
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
            let parsed = SafeTensors::deserialize(&mmap)
                .map_err(|e| ModelError::Safetensors { path: path.clone(), message: e.to_string() })?;
            for name in parsed.names() {
                index.insert(name.to_string(), files.len());
            }
            files.push((path, mmap));
        }
        Ok(Self { files, index })
    }

    /// All tensor keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Number of decoder layers the checkpoint holds: one more than the largest `N` of its
    /// `model.layers.N.*` keys, 0 when it has none.
    pub fn layer_count(&self) -> usize {
        let layer = |key: &str| key.strip_prefix("model.layers.")?.split('.').next()?.parse::<usize>().ok();
        self.index.keys().filter_map(|key| layer(key)).max().map_or(0, |n| n.saturating_add(1))
    }

    /// The checkpoint as messages name it: its file name, or its number of shards.
    pub fn describe(&self) -> String {
        match self.files.as_slice() {
            [(path, _)] => path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into()),
            files => format!("the checkpoint's {} shards", files.len()),
        }
    }

    /// The file that holds `key`, or the folder's main file for error messages.
    pub fn path_of(&self, key: &str) -> &Path {
        let i = self.index.get(key).copied().unwrap_or(0);
        &self.files[i].0
    }

    /// Reads tensor `key` as float32, checking that its shape is `expected`.
    pub fn read_f32(&self, key: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let Some(&i) = self.index.get(key) else {
            return Err(ModelError::MissingTensor { path: self.files[0].0.clone(), key: key.into() });
        };
        let (path, mmap) = &self.files[i];
        let parsed = SafeTensors::deserialize(mmap)
            .map_err(|e| ModelError::Safetensors { path: path.clone(), message: e.to_string() })?;
        let view =
            parsed.tensor(key).map_err(|e| ModelError::Safetensors { path: path.clone(), message: e.to_string() })?;
        if view.shape() != expected {
            return Err(ModelError::TensorShape {
                path: path.clone(),
                key: key.into(),
                found: view.shape().to_vec(),
                expected: expected.to_vec(),
            });
        }
        let bytes = view.data();
        Ok(match view.dtype() {
            Dtype::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(bytes),
            Dtype::F16 => bytemuck::pod_collect_to_vec::<u8, f16>(bytes).into_iter().map(f32::from).collect(),
            Dtype::BF16 => bytemuck::pod_collect_to_vec::<u8, bf16>(bytes).into_iter().map(f32::from).collect(),
            other => {
                return Err(ModelError::TensorDtype {
                    path: path.clone(),
                    key: key.into(),
                    dtype: format!("{other:?}"),
                })
            }
        })
    }
}

/// The distinct shard files named by an index's `weight_map`, in order of first appearance.
fn shard_paths(index_path: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| ModelError::io(index_path, e))?;
    let json_error = |message: String| ModelError::Json { path: index_path.to_path_buf(), message };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| json_error(e.to_string()))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| json_error("field `weight_map` is missing or not an object".into()))?;
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let mut paths: Vec<PathBuf> = Vec::new();
    for (key, file) in map {
        let name = file.as_str().ok_or_else(|| json_error(format!("field `weight_map.{key}` is not a string")))?;
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(json_error(format!("field `weight_map.{key}`: shard `{name}` is outside the folder")));
        }
        let path = dir.join(name);
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    Ok(paths)
}
