//! Checkpoint key of the parameter being visited, tracked from burn's module traversal.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::model::LlamaForCausalLM;

/// The stack of (field name, container type) entered so far while walking a module.
#[derive(Debug, Default)]
pub(crate) struct TensorPath {
    stack: Vec<(String, String)>,
}

impl TensorPath {
    /// Called from `enter_module`.
    pub fn enter(&mut self, name: &str, container: &str) {
        self.stack.push((name.to_owned(), container.to_owned()));
    }

    /// Called from `exit_module`.
    pub fn exit(&mut self) {
        self.stack.pop();
    }

    /// The checkpoint key, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub fn key(&self) -> String {
        let names: Vec<&str> = self.stack.iter().map(|(name, _)| name.as_str()).collect();
        names.join(".")
    }

    /// Whether the current parameter is stored transposed relative to checkpoints: projection
    /// weights (`[d_in, d_out]` here, `[d_out, d_in]` there) and LoRA factors.
    pub fn is_transposed(&self) -> bool {
        match self.stack.last() {
            Some((name, container)) => match container.as_str() {
                "Struct:Linear" | "Struct:Projection" => name == "weight",
                "Struct:Lora" => name == "a" || name == "b",
                _ => false,
            },
            None => false,
        }
    }

    /// Whether the current parameter belongs to a LoRA adapter.
    pub fn is_adapter(&self) -> bool {
        self.stack.iter().any(|(name, container)| name == "lora" && container == "Struct:Projection")
    }

    /// The key of the model's own tensors; `None` inside adapters.
    pub fn base_key(&self) -> Option<String> {
        (!self.is_adapter()).then(|| self.key())
    }

    /// The PEFT key of an adapter tensor, e.g.
    /// `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`; `None` outside adapters.
    pub fn peft_key(&self) -> Option<String> {
        let key = self.key();
        let module = key.strip_suffix(".lora.a").map(|m| (m, "A")).or(key.strip_suffix(".lora.b").map(|m| (m, "B")));
        module.map(|(module, factor)| format!("base_model.model.{module}.lora_{factor}.weight"))
    }
}

/// Chooses which parameters a walk reads or writes, and under which key.
pub(crate) type KeyOf = fn(&TensorPath) -> Option<String>;

/// A parameter's checkpoint key and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterKey {
    /// The model's own key, or the PEFT key for adapter tensors.
    pub key: String,
    /// Shape as the module holds it.
    pub shape: Vec<usize>,
}

/// The key and shape of every float parameter of `model`; keys name optimiser state in
/// training checkpoints.
pub fn parameter_keys<B: Backend>(model: &LlamaForCausalLM<B>) -> HashMap<ParamId, ParameterKey> {
    let mut visitor = KeyVisitor { path: TensorPath::default(), keys: HashMap::new() };
    model.visit(&mut visitor);
    visitor.keys
}

struct KeyVisitor {
    path: TensorPath,
    keys: HashMap<ParamId, ParameterKey>,
}

impl<B: Backend> ModuleVisitor<B> for KeyVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let key = self.path.peft_key().unwrap_or_else(|| self.path.key());
        self.keys.insert(param.id, ParameterKey { key, shape: param.lazy_shape().dims::<D>().to_vec() });
    }
}
