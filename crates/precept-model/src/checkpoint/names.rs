//! Checkpoint key of the parameter being visited, tracked from burn's module traversal.

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
